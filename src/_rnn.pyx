"""Basic RNN kernels: forward and backward through time, without the GIL.

Buffers are time-major, (rows, T, m) C-contiguous: one step is a (rows × m)
matrix with row stride T·m, which BLAS takes as is, and the input projection of
all steps is one GEMM. The Python layer (cyrnn/_api.py) has already checked
shapes, dtypes and alignment; the entry points here trust it.
"""
cimport numpy as cnp
from cython cimport floating

from _blas cimport gemm
from _arrays cimport new_array, new_zeros, typenum_of, elem_stride, is_time_major_view
from _elementwise cimport (cyrnn_ftz_begin, cyrnn_ftz_end, rnn_forward_step,
                           rnn_backward_step, softmax_columns, row_sums,
                           gather_time_major, scatter_batch_major)

cnp.import_array()


cdef tuple _forward(floating dummy, cnp.ndarray x, cnp.ndarray a0, cnp.ndarray Wax,
                    cnp.ndarray Waa, cnp.ndarray Wya, cnp.ndarray ba, cnp.ndarray by,
                    bint fresh_states):
    cdef int tn = typenum_of(dummy)
    cdef Py_ssize_t n_x = x.shape[0], m = x.shape[1], T = x.shape[2]
    cdef Py_ssize_t n_a = a0.shape[0], n_y = Wya.shape[0]
    cdef Py_ssize_t Tm = T * m, t
    cdef Py_ssize_t sx0 = elem_stride(x, 0), sx1 = elem_stride(x, 1), sx2 = elem_stride(x, 2)
    cdef bint gather_x = not is_time_major_view(x)
    cdef cnp.ndarray X = new_array(tn, n_x, T, m) if gather_x else x.transpose(0, 2, 1)
    # A doubles as the pre-activation buffer: Z = Wax·X, then a⟨t⟩ = tanh(Z⟨t⟩) in place.
    cdef cnp.ndarray A = new_array(tn, n_a, T, m)
    cdef cnp.ndarray y = new_array(tn, n_y, m, T)
    cdef cnp.ndarray Y = new_array(tn, n_y, T, m) if T > 1 else y
    cdef cnp.ndarray a = new_array(tn, n_a, m, T) if (fresh_states or T > 1) else A.reshape(n_a, m, T)
    cdef floating* px = <floating*>cnp.PyArray_DATA(x)
    cdef floating* pX = <floating*>cnp.PyArray_DATA(X)
    cdef floating* pA = <floating*>cnp.PyArray_DATA(A)
    cdef floating* pY = <floating*>cnp.PyArray_DATA(Y)
    cdef floating* pa0 = <floating*>cnp.PyArray_DATA(a0)
    cdef floating* pWax = <floating*>cnp.PyArray_DATA(Wax)
    cdef floating* pWaa = <floating*>cnp.PyArray_DATA(Waa)
    cdef floating* pWya = <floating*>cnp.PyArray_DATA(Wya)
    cdef floating* pba = <floating*>cnp.PyArray_DATA(ba)
    cdef floating* pby = <floating*>cnp.PyArray_DATA(by)
    cdef floating* pa = <floating*>cnp.PyArray_DATA(a)
    cdef floating* py = <floating*>cnp.PyArray_DATA(y)
    cdef floating* prev
    cdef unsigned int csr
    with nogil:
        csr = cyrnn_ftz_begin()
        if gather_x:
            gather_time_major(n_x, m, T, px, sx0, sx1, sx2, pX)
        # Z = Wax @ X  (all steps in one GEMM)
        gemm(False, False, n_a, Tm, n_x, <floating>1, pWax, n_x, pX, Tm, <floating>0, pA, Tm)
        for t in range(T):
            prev = pa0 if t == 0 else pA + (t - 1) * m
            # Z[:, t] += Waa @ a[:, t-1]
            gemm(False, False, n_a, m, n_a, <floating>1, pWaa, n_a, prev,
                 m if t == 0 else Tm, <floating>1, pA + t * m, Tm)
            # a[:, t] = tanh(Z[:, t] + ba)
            rnn_forward_step(n_a, m, pA + t * m, Tm, pba)
        # Y = softmax(Wya @ A + by), per column
        gemm(False, False, n_y, Tm, n_a, <floating>1, pWya, n_a, pA, Tm, <floating>0, pY, Tm)
        softmax_columns(n_y, Tm, pY, Tm, pby)
        if pa != pA:
            scatter_batch_major(n_a, m, T, pA, Tm, pa)
        if py != pY:
            scatter_batch_major(n_y, m, T, pY, Tm, py)
        cyrnn_ftz_end(csr)
    return a, y, A, X


def rnn_forward(x, a0, Wax, Waa, Wya, ba, by, bint fresh_states=True):
    """Run the RNN over all steps of x (n_x, m, T).

    All arrays share one dtype (float32 or float64); parameters and a0 are
    C-contiguous; x may have any aligned strides. Returns (a, y, A, X): the
    outputs a (n_a, m, T) and y (n_y, m, T), and the time-major hidden states A
    (n_a, T, m) and inputs X (n_x, T, m) that backward needs. With
    fresh_states=False and T == 1, a shares memory with A.
    """
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        return _forward[float](0, x, a0, Wax, Waa, Wya, ba, by, fresh_states)
    return _forward[double](0, x, a0, Wax, Waa, Wya, ba, by, fresh_states)


cdef tuple _backward(floating dummy, cnp.ndarray da, cnp.ndarray A, cnp.ndarray a0,
                     cnp.ndarray X, cnp.ndarray Wax, cnp.ndarray Waa):
    cdef int tn = typenum_of(dummy)
    cdef Py_ssize_t n_a = da.shape[0], m = da.shape[1], T_da = da.shape[2]
    cdef Py_ssize_t T = A.shape[1], n_x = X.shape[0]
    cdef Py_ssize_t Tm = T * m, Tdm = T_da * m, t
    cdef Py_ssize_t s0 = elem_stride(da, 0), s1 = elem_stride(da, 1), s2 = elem_stride(da, 2)
    # dZ starts as the upstream da, time-major; each step turns its slice into dz⟨t⟩.
    cdef cnp.ndarray dZ = new_array(tn, n_a, T_da, m)
    cdef cnp.ndarray dx = new_array(tn, n_x, m, T_da)
    cdef cnp.ndarray dX = new_array(tn, n_x, T_da, m) if T_da > 1 else dx
    cdef cnp.ndarray da0 = new_zeros(tn, n_a, m)
    cdef cnp.ndarray dWax = new_zeros(tn, n_a, n_x)
    cdef cnp.ndarray dWaa = new_zeros(tn, n_a, n_a)
    cdef cnp.ndarray dba = new_zeros(tn, n_a, 1)
    cdef floating* pda = <floating*>cnp.PyArray_DATA(da)
    cdef floating* pdZ = <floating*>cnp.PyArray_DATA(dZ)
    cdef floating* pdx = <floating*>cnp.PyArray_DATA(dx)
    cdef floating* pdX = <floating*>cnp.PyArray_DATA(dX)
    cdef floating* pda0 = <floating*>cnp.PyArray_DATA(da0)
    cdef floating* pA = <floating*>cnp.PyArray_DATA(A)
    cdef floating* pa0 = <floating*>cnp.PyArray_DATA(a0)
    cdef floating* pX = <floating*>cnp.PyArray_DATA(X)
    cdef floating* pWax = <floating*>cnp.PyArray_DATA(Wax)
    cdef floating* pWaa = <floating*>cnp.PyArray_DATA(Waa)
    cdef floating* pdWax = <floating*>cnp.PyArray_DATA(dWax)
    cdef floating* pdWaa = <floating*>cnp.PyArray_DATA(dWaa)
    cdef floating* pdba = <floating*>cnp.PyArray_DATA(dba)
    cdef unsigned int csr
    if T_da == 0:
        return dx, da0, dWax, dWaa, dba
    with nogil:
        csr = cyrnn_ftz_begin()
        gather_time_major(n_a, m, T_da, pda, s0, s1, s2, pdZ)
        for t in range(T_da - 1, -1, -1):
            # dz⟨t⟩ = (da[:, t] + da_next) * (1 - a⟨t⟩²)
            rnn_backward_step(n_a, m, pdZ + t * m, Tdm,
                              NULL if t == T_da - 1 else pda0, m, pA + t * m, Tm)
            # da_next = Waa.T @ dz⟨t⟩   (after the last step this is da0)
            gemm(True, False, n_a, m, n_a, <floating>1, pWaa, n_a, pdZ + t * m, Tdm,
                 <floating>0, pda0, m)
        # dX = Wax.T @ dZ ; dWax = dZ @ X.T ; dWaa = dZ @ A_prev.T ; dba = dZ.sum(1)
        gemm(True, False, n_x, Tdm, n_a, <floating>1, pWax, n_x, pdZ, Tdm, <floating>0, pdX, Tdm)
        gemm(False, True, n_a, n_x, Tdm, <floating>1, pdZ, Tdm, pX, Tm, <floating>0, pdWax, n_x)
        gemm(False, True, n_a, n_a, m, <floating>1, pdZ, Tdm, pa0, m, <floating>0, pdWaa, n_a)
        gemm(False, True, n_a, n_a, Tdm - m, <floating>1, pdZ + m, Tdm, pA, Tm,
             <floating>1, pdWaa, n_a)
        row_sums(n_a, Tdm, pdZ, Tdm, pdba)
        if pdx != pdX:
            scatter_batch_major(n_x, m, T_da, pdX, Tdm, pdx)
        cyrnn_ftz_end(csr)
    return dx, da0, dWax, dWaa, dba


def rnn_backward(da, A, a0, X, Wax, Waa):
    """Backpropagate da (n_a, m, T_da) through the first T_da steps.

    A (n_a, T, m) and X (n_x, T, m) are the time-major states and inputs of the
    forward pass (T >= T_da), a0 (n_a, m) its initial state; all C-contiguous
    except da (any aligned strides), one dtype. Returns (dx, da0, dWax, dWaa, dba).
    """
    if cnp.PyArray_TYPE(da) == cnp.NPY_FLOAT:
        return _backward[float](0, da, A, a0, X, Wax, Waa)
    return _backward[double](0, da, A, a0, X, Wax, Waa)
