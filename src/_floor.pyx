"""The BLAS-only floor: the GEMM calls of the RNN/LSTM kernels, timed alone.

GemmFloor replays exactly the GEMMs that _rnn/_lstm issue for a given shape
(input projection, one recurrent GEMM per step, output layer; backward: one
recurrent GEMM per step, then dx and the weight gradients), on preallocated
buffers and with nothing in between. No implementation of this design on this
BLAS can be faster, which makes it the yardstick of benchmarks/.
"""
cimport numpy as cnp
from cython cimport floating

from _blas cimport (gemm, gemm_abt, abt_work, gemm_atb, atb_work, transpose_weights_once,
                    gemm_atb_pretransposed)

import numpy as np

cnp.import_array()


cdef void _replay(floating* W, floating* X, floating* G, floating* A, floating* Wy,
                  floating* Y, floating* dG, floating* dX, floating* dW, floating* h,
                  floating* work, floating* Wa_t, Py_ssize_t gates, Py_ssize_t n_x, Py_ssize_t n_a, Py_ssize_t n_y,
                  Py_ssize_t m, Py_ssize_t T, bint backward) noexcept nogil:
    cdef Py_ssize_t Tm = T * m, width = n_a + n_x, rows = gates * n_a, t
    if not backward:
        gemm(False, False, rows, Tm, n_x, <floating>1, W + n_a, width, X, Tm, <floating>0, G, Tm)
        for t in range(T):
            gemm(False, False, rows, m, n_a, <floating>1, W, width,
                 A + (t - 1) * m if t else h, Tm if t else m, <floating>1, G + t * m, Tm)
        gemm(False, False, n_y, Tm, n_a, <floating>1, Wy, n_a, A, Tm, <floating>0, Y, Tm)
    else:
        for t in range(T - 1, -1, -1):
            gemm_atb_pretransposed(Wa_t, n_a, m, rows, <floating>1, W, width, dG + t * m, Tm,
                                   <floating>0, h, m, work)
        gemm_atb(n_x, Tm, rows, <floating>1, W + n_a, width, dG, Tm, <floating>0, dX, Tm, work)
        gemm_abt(rows, n_a, m, <floating>1, dG, Tm, h, m, <floating>0, dW, width, work)
        gemm_abt(rows, n_a, Tm - m, <floating>1, dG + m, Tm, A, Tm, <floating>1, dW, width, work)
        gemm_abt(rows, n_x, Tm, <floating>1, dG, Tm, X, Tm, <floating>0, dW + n_a, width, work)


cdef class GemmFloor:
    """GemmFloor(cell, n_x, n_a, n_y, m, T, dtype); .forward() / .backward() run the GEMMs.

    cell is "rnn" or "lstm" (four stacked gates). For the RNN the weights are
    laid out as one (n_a, n_a + n_x) block; the GEMM shapes are the kernels'.
    """
    cdef object buffers
    cdef Py_ssize_t gates, n_x, n_a, n_y, m, T
    cdef bint single

    def __init__(self, cell, Py_ssize_t n_x, Py_ssize_t n_a, Py_ssize_t n_y, Py_ssize_t m,
                 Py_ssize_t T, dtype=np.float64):
        self.gates = 4 if cell == "lstm" else 1
        self.n_x, self.n_a, self.n_y, self.m, self.T = n_x, n_a, n_y, m, T
        dtype = np.dtype(dtype)
        self.single = dtype == np.float32
        rows = self.gates * n_a
        rng = np.random.default_rng(0)

        def buf(*shape):
            return np.ascontiguousarray(rng.uniform(-0.5, 0.5, shape), dtype=dtype)

        self.buffers = [buf(rows, n_a + n_x), buf(n_x, T, m), buf(rows, T, m), buf(n_a, T, m),
                        buf(n_y, n_a), buf(n_y, T, m), buf(rows, T, m), buf(n_x, T, m),
                        buf(rows, n_a + n_x), buf(n_a, m),
                        buf(max(<size_t>1, abt_work(rows, n_a, m), abt_work(rows, n_a, T * m - m),
                                abt_work(rows, n_x, T * m),
                                atb_work(n_a, m, rows, not self.single),
                                atb_work(n_x, T * m, rows, not self.single)))]
        # the kernels' one-off copy of W[:, :n_a]ᵀ (not a GEMM, so made here, untimed)
        W_a_t = np.ascontiguousarray(self.buffers[0][:, :n_a].T)
        self.buffers.append(W_a_t if transpose_weights_once(n_a, m, rows, T, not self.single)
                            else None)

    cdef void _run(self, bint backward):
        cdef list b = self.buffers
        cdef void* p[12]
        cdef int k
        for k in range(11):
            p[k] = cnp.PyArray_DATA(b[k])
        p[11] = NULL if b[11] is None else cnp.PyArray_DATA(b[11])
        with nogil:
            if self.single:
                _replay(<float*>p[0], <float*>p[1], <float*>p[2], <float*>p[3], <float*>p[4],
                        <float*>p[5], <float*>p[6], <float*>p[7], <float*>p[8], <float*>p[9],
                        <float*>p[10], <float*>p[11],
                        self.gates, self.n_x, self.n_a, self.n_y, self.m, self.T, backward)
            else:
                _replay(<double*>p[0], <double*>p[1], <double*>p[2], <double*>p[3],
                        <double*>p[4], <double*>p[5], <double*>p[6], <double*>p[7],
                        <double*>p[8], <double*>p[9], <double*>p[10], <double*>p[11],
                        self.gates, self.n_x, self.n_a, self.n_y, self.m, self.T, backward)

    def forward(self):
        self._run(False)

    def backward(self):
        self._run(True)
