"""softmax and sigmoid on whole arrays, with the kernels' vectorised math."""
cimport numpy as cnp
from cython cimport floating

from _arrays cimport typenum_of
from _elementwise cimport cyrnn_ftz_begin, cyrnn_ftz_end, softmax_columns, sigmoid_array

cnp.import_array()


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
    """Softmax over axis 0 of a C-contiguous float32/float64 array (new array)."""
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
    """Elementwise logistic function of a C-contiguous float32/float64 array."""
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        return _sigmoid[float](0, x)
    return _sigmoid[double](0, x)
