# Array plumbing shared by the kernel modules: allocation through NumPy's C API
# (np.empty costs ~10x more from Python at tiny sizes) and raw data pointers.
cimport numpy as cnp
from cython cimport floating

from cpython.ref cimport PyObject

cdef extern from *:
    """
    /* The recycling pool's NumPy handler, set by each module at import (see
       use_pool); until then large arrays use NumPy's own allocator. */
    static PyObject *cyrnn_pool_capsule = NULL;
    static double cyrnn_pool_min_bytes = 1e300;
    static void cyrnn_set_pool(PyObject *capsule, double min_bytes)
    {
        Py_XINCREF(capsule);
        cyrnn_pool_capsule = capsule;
        cyrnn_pool_min_bytes = min_bytes;
    }
    """
    PyObject* cyrnn_pool_capsule
    double cyrnn_pool_min_bytes
    void cyrnn_set_pool(object capsule, double min_bytes)


cdef inline void use_pool():
    """Allocate this module's large arrays from cyrnn._pool (call once at import)."""
    from cyrnn._pool import HANDLER, MIN_BYTES
    cyrnn_set_pool(HANDLER, MIN_BYTES)


cdef inline int typenum_of(floating dummy) noexcept:
    if floating is float:
        return cnp.NPY_FLOAT
    else:
        return cnp.NPY_DOUBLE


cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)


cdef inline cnp.ndarray new_array(int typenum, Py_ssize_t d0, Py_ssize_t d1, Py_ssize_t d2=-1):
    """Uninitialised C-contiguous array of 2 dims, or 3 when d2 >= 0. Large ones
    come from cyrnn's recycling pool (see cyrnn_pool.h)."""
    cdef cnp.npy_intp dims[3]
    dims[0] = d0
    dims[1] = d1
    dims[2] = d2
    cdef int nd = 3 if d2 >= 0 else 2
    cdef double nbytes = <double>d0 * d1 * (d2 if d2 >= 0 else 1) * 8
    if nbytes < cyrnn_pool_min_bytes:
        return cnp.PyArray_EMPTY(nd, dims, typenum, 0)
    old = PyDataMem_SetHandler(<object>cyrnn_pool_capsule)
    try:
        return cnp.PyArray_EMPTY(nd, dims, typenum, 0)
    finally:
        PyDataMem_SetHandler(old)


cdef inline cnp.ndarray block_view(cnp.ndarray base, Py_ssize_t offset, Py_ssize_t d0,
                                   Py_ssize_t d1):
    """Writeable C-contiguous (d0, d1) view of base's buffer from element `offset`
    on, keeping base alive (base: C-contiguous, holding offset + d0·d1 elements).
    Through the C API: NumPy slicing from Python costs ~0.1 us per view."""
    cdef cnp.npy_intp dims[2]
    dims[0] = d0
    dims[1] = d1
    cdef cnp.ndarray view = cnp.PyArray_SimpleNewFromData(
        2, dims, cnp.PyArray_TYPE(base),
        <char*>cnp.PyArray_DATA(base) + offset * cnp.PyArray_ITEMSIZE(base))
    cnp.set_array_base(view, base)
    return view


cdef inline cnp.ndarray new_zeros(int typenum, Py_ssize_t d0, Py_ssize_t d1, Py_ssize_t d2=-1):
    cdef cnp.npy_intp dims[3]
    dims[0] = d0
    dims[1] = d1
    dims[2] = d2
    return cnp.PyArray_ZEROS(3 if d2 >= 0 else 2, dims, typenum, 0)


cdef inline Py_ssize_t elem_stride(cnp.ndarray a, int axis) noexcept:
    """Stride of `axis` in elements (the Python layer guarantees alignment)."""
    return cnp.PyArray_STRIDES(a)[axis] // cnp.PyArray_ITEMSIZE(a)


cdef inline bint is_time_major_view(cnp.ndarray x) noexcept:
    """True when x (n, m, T) is a transposed view of a C-contiguous (n, T, m)
    buffer, so kernels can read it without a copy (always so for T == 1)."""
    cdef Py_ssize_t m = x.shape[1], T = x.shape[2]
    if x.shape[0] > 1 and elem_stride(x, 0) != T * m:
        return False
    if m > 1 and elem_stride(x, 1) != 1:
        return False
    if T > 1 and elem_stride(x, 2) != m:
        return False
    return True


cdef inline bint ready(object obj, int typenum, int ndim, Py_ssize_t d0, Py_ssize_t d1=-1,
                       Py_ssize_t d2=-1) noexcept:
    """True when obj is an exact ndarray of `typenum` with `ndim` dims, shape
    (d0, d1, d2) (a negative size matches any), C-contiguous and aligned: the
    layout kernels take without any conversion. Used by the fast paths, which
    hand everything else to the validating Python layer."""
    if type(obj) is not cnp.ndarray:
        return False
    cdef cnp.ndarray a = <cnp.ndarray>obj
    if cnp.PyArray_TYPE(a) != typenum or cnp.PyArray_NDIM(a) != ndim:
        return False
    if not cnp.PyArray_ISCARRAY_RO(a):
        return False
    cdef cnp.npy_intp* dims = cnp.PyArray_DIMS(a)
    if d0 >= 0 and dims[0] != d0:
        return False
    if ndim > 1 and d1 >= 0 and dims[1] != d1:
        return False
    if ndim > 2 and d2 >= 0 and dims[2] != d2:
        return False
    return True


cdef inline int float_typenum(object obj) noexcept:
    """NPY_DOUBLE or NPY_FLOAT when obj is an exact ndarray of that dtype, else -1."""
    if type(obj) is not cnp.ndarray:
        return -1
    cdef int tn = cnp.PyArray_TYPE(<cnp.ndarray>obj)
    return tn if (tn == cnp.NPY_DOUBLE or tn == cnp.NPY_FLOAT) else -1


cdef inline void freeze(cnp.ndarray a) noexcept:
    """Make a kernel-made buffer read-only (cache buffers are never written again)."""
    cnp.PyArray_CLEARFLAGS(a, cnp.NPY_ARRAY_WRITEABLE)


# Releasing and retaking the GIL costs ~0.05 us uncontended and, when another
# thread holds it, a wait of up to the switch interval (5 ms); below ~16k
# multiply-adds (a few us) the cell functions keep it (rnn_cell_backward at the
# notebook's sizes: -6%).
cdef inline bint holds_gil_worth_releasing(double multiply_adds) noexcept nogil:
    return multiply_adds >= 16384
