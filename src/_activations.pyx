"""softmax and sigmoid on whole arrays, with the kernels' vectorised math.

The public functions take kernel-ready arrays directly; anything else goes
through cyrnn/_checked.py first (as in _rnn.pyx).
"""
cimport numpy as cnp
from cython cimport floating

from _arrays cimport typenum_of, float_typenum
from _elementwise cimport cyrnn_ftz_begin, cyrnn_ftz_end, softmax_columns, sigmoid_array

from cyrnn._validation import activation_input

cnp.import_array()


cdef inline bint kernel_ready(object x, int min_ndim) noexcept:
    """x is an exact float32/float64 ndarray, C-contiguous and aligned, ndim >= min_ndim."""
    return (float_typenum(x) >= 0 and cnp.PyArray_NDIM(<cnp.ndarray>x) >= min_ndim
            and cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>x))


cdef object _softmax(floating dummy, cnp.ndarray x):
    """x C-contiguous with ndim >= 1; softmax over axis 0 into a new array."""
    cdef cnp.ndarray out = cnp.PyArray_NewCopy(x, cnp.NPY_CORDER)
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t ncols = x.size // n if n > 0 else 0
    cdef floating* p = <floating*>cnp.PyArray_DATA(out)
    cdef unsigned int csr
    with nogil:
        csr = cyrnn_ftz_begin()
        softmax_columns(n, ncols, p, ncols, <const floating*>NULL)
        cyrnn_ftz_end(csr)
    return out


def softmax(x):
    """Softmax over axis 0: each column of the result sums to 1.

    Stable per column (each column's own max is subtracted), so one column far
    below another does not give NaN as the course's helper does.

    Parameters
    ----------
    x : array_like, ndim >= 1, real

    Returns
    -------
    ndarray of x's shape; float32 for float32 input, else float64.
    """
    if not kernel_ready(x, 1):
        x = activation_input(x, 1)
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        return _softmax[float](0, x)
    return _softmax[double](0, x)


cdef object _sigmoid(floating dummy, cnp.ndarray x):
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(x.ndim, x.shape, typenum_of(dummy), 0)
    cdef floating* px = <floating*>cnp.PyArray_DATA(x)
    cdef floating* po = <floating*>cnp.PyArray_DATA(out)
    cdef Py_ssize_t n = x.size
    cdef unsigned int csr
    with nogil:
        csr = cyrnn_ftz_begin()
        sigmoid_array(n, px, po)
        cyrnn_ftz_end(csr)
    return out


def sigmoid(x):
    """Logistic function 1 / (1 + exp(-x)), elementwise, without overflow.

    Parameters
    ----------
    x : array_like, real

    Returns
    -------
    ndarray of x's shape; float32 for float32 input, else float64.
    """
    if not kernel_ready(x, 0):
        x = activation_input(x, 0)
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        return _sigmoid[float](0, x)
    return _sigmoid[double](0, x)
