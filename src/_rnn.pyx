"""Basic RNN kernels: forward and backward through time, without the GIL.

Buffers are time-major, (rows, T, m) C-contiguous: one step is a (rows × m)
matrix with row stride T·m, which BLAS takes as is, and the input projection of
all steps is one GEMM. The kernel entry points trust their callers: the fast
paths below take only kernel-ready inputs, and cyrnn/_checked.py has checked
shapes, dtypes and alignment of everything else. The public RNN functions are
at the end of this file.
"""
cimport numpy as cnp
from cython cimport floating

from _blas cimport (gemm, gemm_abt, abt_work, gemm_atb, atb_work, transpose_weights_once,
                    gemm_atb_pretransposed)
from _arrays cimport (new_array, new_zeros, typenum_of, elem_stride, is_time_major_view,
                     ready, float_typenum, use_pool, freeze, steps_per_block,
                     holds_gil_worth_releasing)
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from _elementwise cimport (cyrnn_ftz_begin, cyrnn_ftz_end, rnn_forward_step,
                           rnn_backward_step, softmax_columns, row_sums,
                           gather_time_major, scatter_batch_major)

cnp.import_array()
use_pool()


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
    cdef cnp.ndarray a = new_array(tn, n_a, m, T) if (fresh_states or T > 1) else A.reshape(n_a, m, T)
    cdef floating* px = <floating*>cnp.PyArray_DATA(x)
    cdef floating* pX = <floating*>cnp.PyArray_DATA(X)
    cdef floating* pA = <floating*>cnp.PyArray_DATA(A)
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
        if pa != pA:
            scatter_batch_major(n_a, m, T, pA, Tm, pa)
        # y = softmax(Wya @ a + by), per column: from the batch-major a, so y
        # needs no layout change of its own
        gemm(False, False, n_y, Tm, n_a, <floating>1, pWya, n_a, pa, Tm, <floating>0, py, Tm)
        softmax_columns(n_y, Tm, py, Tm, pby)
        cyrnn_ftz_end(csr)
    if fresh_states:  # A (and a gathered X) become the caches: read-only from here on
        freeze(A)
        if gather_x:
            freeze(X)
    return a, y, A, X


def forward(x, a0, Wax, Waa, Wya, ba, by, bint fresh_states=True):
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


cdef dict _backward(floating dummy, cnp.ndarray da, cnp.ndarray A, cnp.ndarray a0,
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
    cdef floating* work
    cdef floating* Waa_t = NULL
    cdef unsigned int csr
    if T_da == 0:
        return {"dx": dx, "da0": da0, "dWax": dWax, "dWaa": dWaa, "dba": dba}
    with nogil:
        csr = cyrnn_ftz_begin()
        work = <floating*>malloc(max(atb_work(n_a, m, n_a, sizeof(floating) == 8),
                                     atb_work(n_x, Tdm, n_a, sizeof(floating) == 8),
                                     abt_work(n_a, n_x, Tdm), abt_work(n_a, n_a, m),
                                     abt_work(n_a, n_a, Tdm - m)) * sizeof(floating) + 1)
        if transpose_weights_once(n_a, m, n_a, T_da, sizeof(floating) == 8):
            Waa_t = <floating*>malloc(n_a * n_a * sizeof(floating))
            if Waa_t != NULL:  # a 2-D transpose is gather's n = 1 case
                gather_time_major(1, n_a, n_a, pWaa, 0, n_a, 1, Waa_t)
        gather_time_major(n_a, m, T_da, pda, s0, s1, s2, pdZ)
        for t in range(T_da - 1, -1, -1):
            # dz⟨t⟩ = (da[:, t] + da_next) * (1 - a⟨t⟩²)
            rnn_backward_step(n_a, m, pdZ + t * m, Tdm,
                              NULL if t == T_da - 1 else pda0, m, pA + t * m, Tm)
            # da_next = Waa.T @ dz⟨t⟩   (after the last step this is da0)
            gemm_atb_pretransposed(Waa_t, n_a, m, n_a, <floating>1, pWaa, n_a, pdZ + t * m, Tdm,
                                   <floating>0, pda0, m, work)
        free(Waa_t)
        # dX = Wax.T @ dZ ; dWax = dZ @ X.T ; dWaa = dZ @ A_prev.T ; dba = dZ.sum(1)
        gemm_atb(n_x, Tdm, n_a, <floating>1, pWax, n_x, pdZ, Tdm, <floating>0, pdX, Tdm, work)
        gemm_abt(n_a, n_x, Tdm, <floating>1, pdZ, Tdm, pX, Tm, <floating>0, pdWax, n_x, work)
        gemm_abt(n_a, n_a, m, <floating>1, pdZ, Tdm, pa0, m, <floating>0, pdWaa, n_a, work)
        gemm_abt(n_a, n_a, Tdm - m, <floating>1, pdZ + m, Tdm, pA, Tm,
                 <floating>1, pdWaa, n_a, work)
        free(work)
        row_sums(n_a, Tdm, pdZ, Tdm, pdba)
        if pdx != pdX:
            scatter_batch_major(n_x, m, T_da, pdX, Tdm, pdx)
        cyrnn_ftz_end(csr)
    return {"dx": dx, "da0": da0, "dWax": dWax, "dWaa": dWaa, "dba": dba}


def backward(da, A, a0, X, Wax, Waa):
    """Backpropagate da (n_a, m, T_da) through the first T_da steps.

    A (n_a, T, m) and X (n_x, T, m) are the time-major states and inputs of the
    forward pass (T >= T_da), a0 (n_a, m) its initial state; all C-contiguous
    except da (any aligned strides), one dtype. Returns rnn_backward's gradient dict.
    """
    if cnp.PyArray_TYPE(da) == cnp.NPY_FLOAT:
        return _backward[float](0, da, A, a0, X, Wax, Waa)
    return _backward[double](0, da, A, a0, X, Wax, Waa)


cdef void _cell_outputs(Py_ssize_t n_x, Py_ssize_t n_a, Py_ssize_t n_y, Py_ssize_t m,
                        const floating* xt, const floating* a_prev, const floating* Wax,
                        const floating* Waa, const floating* Wya, const floating* ba,
                        const floating* by, floating* a, floating* y) noexcept nogil:
    cdef unsigned int csr = cyrnn_ftz_begin()
    # a = tanh(Wax @ xt + Waa @ a_prev + ba)
    gemm(False, False, n_a, m, n_x, <floating>1, Wax, n_x, xt, m, <floating>0, a, m)
    gemm(False, False, n_a, m, n_a, <floating>1, Waa, n_a, a_prev, m, <floating>1, a, m)
    rnn_forward_step(n_a, m, a, m, ba)
    # y = softmax(Wya @ a + by)
    gemm(False, False, n_y, m, n_a, <floating>1, Wya, n_a, a, m, <floating>0, y, m)
    softmax_columns(n_y, m, y, m, by)
    cyrnn_ftz_end(csr)


cdef tuple _cell_forward(floating dummy, cnp.ndarray xt, cnp.ndarray a_prev, cnp.ndarray Wax,
                         cnp.ndarray Waa, cnp.ndarray Wya, cnp.ndarray ba, cnp.ndarray by):
    cdef int tn = typenum_of(dummy)
    cdef Py_ssize_t n_x = xt.shape[0], m = xt.shape[1], n_a = a_prev.shape[0]
    cdef Py_ssize_t n_y = Wya.shape[0]
    cdef cnp.ndarray a = new_array(tn, n_a, m)
    cdef cnp.ndarray y = new_array(tn, n_y, m)
    cdef floating* pa = <floating*>cnp.PyArray_DATA(a)
    cdef floating* py = <floating*>cnp.PyArray_DATA(y)
    cdef floating* px = <floating*>cnp.PyArray_DATA(xt)
    cdef floating* pap = <floating*>cnp.PyArray_DATA(a_prev)
    cdef floating* pWax = <floating*>cnp.PyArray_DATA(Wax)
    cdef floating* pWaa = <floating*>cnp.PyArray_DATA(Waa)
    cdef floating* pWya = <floating*>cnp.PyArray_DATA(Wya)
    cdef floating* pba = <floating*>cnp.PyArray_DATA(ba)
    cdef floating* pby = <floating*>cnp.PyArray_DATA(by)
    if holds_gil_worth_releasing(<double>m * (n_a * (n_x + n_a) + n_y * n_a)):
        with nogil:
            _cell_outputs(n_x, n_a, n_y, m, px, pap, pWax, pWaa, pWya, pba, pby, pa, py)
    else:
        _cell_outputs(n_x, n_a, n_y, m, px, pap, pWax, pWaa, pWya, pba, pby, pa, py)
    return a, y


def cell_forward(xt, a_prev, Wax, Waa, Wya, ba, by):
    """One step: (a_next, yt_pred). All arrays C-contiguous, one dtype."""
    if cnp.PyArray_TYPE(xt) == cnp.NPY_FLOAT:
        return _cell_forward[float](0, xt, a_prev, Wax, Waa, Wya, ba, by)
    return _cell_forward[double](0, xt, a_prev, Wax, Waa, Wya, ba, by)


cdef tuple _ready_parameters(object parameters, int tn, Py_ssize_t n_x, Py_ssize_t n_a):
    """(Wax, Waa, Wya, ba, by) when all are in kernel-ready form for (n_x, n_a), else None."""
    if type(parameters) is not dict:
        return None
    cdef dict p = <dict>parameters
    Wax, Waa, Wya = p.get("Wax"), p.get("Waa"), p.get("Wya")
    ba, by = p.get("ba"), p.get("by")
    if not (ready(Wax, tn, 2, n_a, n_x) and ready(Waa, tn, 2, n_a, n_a)
            and ready(Wya, tn, 2, -1, n_a) and ready(ba, tn, 2, n_a, 1)):
        return None
    if not ready(by, tn, 2, (<cnp.ndarray>Wya).shape[0], 1):
        return None
    return Wax, Waa, Wya, ba, by


cdef tuple fast_cell_forward(xt, a_prev, parameters):
    """cell_forward when every input is already kernel-ready, else None."""
    cdef int tn = float_typenum(xt)
    if tn < 0 or not ready(xt, tn, 2, -1) or not ready(a_prev, tn, 2, -1, (<cnp.ndarray>xt).shape[1]):
        return None
    w = _ready_parameters(parameters, tn, (<cnp.ndarray>xt).shape[0], (<cnp.ndarray>a_prev).shape[0])
    if w is None:
        return None
    Wax, Waa, Wya, ba, by = w
    if tn == cnp.NPY_FLOAT:
        return _cell_forward[float](0, xt, a_prev, Wax, Waa, Wya, ba, by)
    return _cell_forward[double](0, xt, a_prev, Wax, Waa, Wya, ba, by)


cdef class RNNCacheBuffers:
    """The buffers behind cyrnn._caches.RNNStepCaches, as C fields: the fast path
    makes the cache object without running Python code (~0.2 us at tiny sizes)."""
    cdef readonly Py_ssize_t _T
    cdef readonly object A, a0, X, x, parameters, Wax, Waa

    def __init__(self, A, a0, X, x, parameters, Wax, Waa):
        self.fill(A, a0, X, x, parameters, Wax, Waa)

    cdef fill(self, A, a0, X, x, parameters, Wax, Waa):
        self._T = A.shape[1]
        self.A, self.a0, self.X, self.x = A, a0, X, x
        self.parameters, self.Wax, self.Waa = parameters, Wax, Waa

    def __reduce__(self):
        return type(self), (self.A, self.a0, self.X, self.x, self.parameters, self.Wax,
                            self.Waa)


cdef object _step_caches_type = None


cdef object step_caches_type():
    """cyrnn._caches.RNNStepCaches, looked up on first use (that module imports this one)."""
    global _step_caches_type
    if _step_caches_type is None:
        from cyrnn._caches import RNNStepCaches
        _step_caches_type = RNNStepCaches
    return _step_caches_type


cdef tuple fast_forward(x, a0, parameters):
    """The (a, y, caches) of rnn_forward when every input is kernel-ready, else None."""
    cdef int tn = float_typenum(x)
    if tn < 0 or not ready(x, tn, 3, -1) or not ready(a0, tn, 2, -1, (<cnp.ndarray>x).shape[1]):
        return None
    w = _ready_parameters(parameters, tn, (<cnp.ndarray>x).shape[0], (<cnp.ndarray>a0).shape[0])
    if w is None:
        return None
    if (<cnp.ndarray>x).shape[1] * (<cnp.ndarray>x).shape[2] > 2**31 - 1:
        return None  # the validating path raises the error
    Wax, Waa, Wya, ba, by = w
    if tn == cnp.NPY_FLOAT:
        a, y, A, X = _forward[float](0, x, a0, Wax, Waa, Wya, ba, by, True)
    else:
        a, y, A, X = _forward[double](0, x, a0, Wax, Waa, Wya, ba, by, True)
    cdef RNNCacheBuffers steps = RNNCacheBuffers.__new__(step_caches_type())
    steps.fill(A, a0, X, x, parameters, Wax, Waa)
    return a, y, (steps, x)


cdef void _cell_gradients(Py_ssize_t n_x, Py_ssize_t n_a, Py_ssize_t m, const floating* da_next,
                          const floating* a_next, const floating* a_prev, const floating* xt,
                          const floating* Wax, const floating* Waa, floating* dxt,
                          floating* da_prev, floating* dWax, floating* dWaa, floating* dba,
                          floating* dz, floating* work) noexcept nogil:
    # dz = da_next * (1 - a_next²)
    memcpy(dz, da_next, n_a * m * sizeof(floating))
    rnn_backward_step(n_a, m, dz, m, <floating*>NULL, m, a_next, m)
    # dxt = Wax.T @ dz ; da_prev = Waa.T @ dz ; dWax = dz @ xt.T ; dWaa = dz @ a_prev.T
    gemm_atb(n_x, m, n_a, <floating>1, Wax, n_x, dz, m, <floating>0, dxt, m, work)
    gemm_atb(n_a, m, n_a, <floating>1, Waa, n_a, dz, m, <floating>0, da_prev, m, work)
    gemm_abt(n_a, n_x, m, <floating>1, dz, m, xt, m, <floating>0, dWax, n_x, work)
    gemm_abt(n_a, n_a, m, <floating>1, dz, m, a_prev, m, <floating>0, dWaa, n_a, work)
    row_sums(n_a, m, dz, m, dba)


cdef dict _cell_backward(floating dummy, cnp.ndarray da_next, cnp.ndarray a_next,
                         cnp.ndarray a_prev, cnp.ndarray xt, cnp.ndarray Wax, cnp.ndarray Waa):
    cdef int tn = typenum_of(dummy)
    cdef Py_ssize_t n_a = a_next.shape[0], m = a_next.shape[1], n_x = xt.shape[0]
    cdef cnp.ndarray dxt = new_array(tn, n_x, m)
    cdef cnp.ndarray da_prev = new_array(tn, n_a, m)
    cdef cnp.ndarray dWax = new_array(tn, n_a, n_x)
    cdef cnp.ndarray dWaa = new_array(tn, n_a, n_a)
    cdef cnp.ndarray dba = new_array(tn, n_a, 1)
    cdef floating* pan = <floating*>cnp.PyArray_DATA(a_next)
    cdef floating* pap = <floating*>cnp.PyArray_DATA(a_prev)
    cdef floating* px = <floating*>cnp.PyArray_DATA(xt)
    cdef floating* pWax = <floating*>cnp.PyArray_DATA(Wax)
    cdef floating* pWaa = <floating*>cnp.PyArray_DATA(Waa)
    cdef floating* pdxt = <floating*>cnp.PyArray_DATA(dxt)
    cdef floating* pdap = <floating*>cnp.PyArray_DATA(da_prev)
    cdef floating* pdWax = <floating*>cnp.PyArray_DATA(dWax)
    cdef floating* pdWaa = <floating*>cnp.PyArray_DATA(dWaa)
    cdef floating* pdba = <floating*>cnp.PyArray_DATA(dba)
    cdef size_t nbytes = n_a * m * sizeof(floating)
    cdef size_t scratch_bytes = nbytes + sizeof(floating) * max(
        abt_work(n_a, n_x, m), abt_work(n_a, n_a, m),
        atb_work(n_x, m, n_a, sizeof(floating) == 8), atb_work(n_a, m, n_a, sizeof(floating) == 8))
    # notebook-sized scratch lives on the stack: malloc/free were 3% of the call
    cdef double small_scratch[512]
    cdef floating* pdz = <floating*>small_scratch
    if scratch_bytes > sizeof(small_scratch):
        pdz = <floating*>malloc(scratch_bytes)
        if pdz == NULL:
            raise MemoryError()
    cdef floating* work = pdz + n_a * m
    if holds_gil_worth_releasing(2.0 * n_a * m * (n_x + n_a)):
        with nogil:
            _cell_gradients(n_x, n_a, m, <floating*>cnp.PyArray_DATA(da_next), pan, pap, px,
                            pWax, pWaa, pdxt, pdap, pdWax, pdWaa, pdba, pdz, work)
    else:
        _cell_gradients(n_x, n_a, m, <floating*>cnp.PyArray_DATA(da_next), pan, pap, px,
                        pWax, pWaa, pdxt, pdap, pdWax, pdWaa, pdba, pdz, work)
    if pdz != <floating*>small_scratch:
        free(pdz)
    return {"dxt": dxt, "da_prev": da_prev, "dWax": dWax, "dWaa": dWaa, "dba": dba}


def cell_backward(da_next, a_next, a_prev, xt, Wax, Waa):
    """One step's gradient dict. All arrays C-contiguous, one dtype."""
    if cnp.PyArray_TYPE(da_next) == cnp.NPY_FLOAT:
        return _cell_backward[float](0, da_next, a_next, a_prev, xt, Wax, Waa)
    return _cell_backward[double](0, da_next, a_next, a_prev, xt, Wax, Waa)


cdef dict fast_cell_backward(da_next, cache):
    """cell_backward when the cache and da_next are kernel-ready, else None."""
    cdef int tn = float_typenum(da_next)
    if tn < 0 or type(cache) is not tuple or len(<tuple>cache) != 4:
        return None
    a_next, a_prev, xt, parameters = <tuple>cache
    if not ready(da_next, tn, 2, -1):
        return None
    cdef Py_ssize_t n_a = (<cnp.ndarray>da_next).shape[0], m = (<cnp.ndarray>da_next).shape[1]
    if not (ready(a_next, tn, 2, n_a, m) and ready(a_prev, tn, 2, n_a, m)
            and ready(xt, tn, 2, -1, m)):
        return None
    cdef Py_ssize_t n_x = (<cnp.ndarray>xt).shape[0]
    if type(parameters) is not dict:
        return None
    Wax, Waa = (<dict>parameters).get("Wax"), (<dict>parameters).get("Waa")
    if not (ready(Wax, tn, 2, n_a, n_x) and ready(Waa, tn, 2, n_a, n_a)):
        return None
    if tn == cnp.NPY_FLOAT:
        return _cell_backward[float](0, da_next, a_next, a_prev, xt, Wax, Waa)
    return _cell_backward[double](0, da_next, a_next, a_prev, xt, Wax, Waa)


cdef dict fast_backward(da, caches):
    """backward on cyrnn's own caches when da is kernel-ready, else None."""
    cdef int tn = float_typenum(da)
    if tn < 0 or type(caches) is not tuple or len(<tuple>caches) != 2:
        return None
    if type((<tuple>caches)[0]) is not step_caches_type():
        return None
    cdef RNNCacheBuffers steps = (<tuple>caches)[0]
    A = steps.A
    if cnp.PyArray_TYPE(<cnp.ndarray>A) != tn:
        return None
    cdef Py_ssize_t n_a = A.shape[0], T = A.shape[1], m = A.shape[2]
    if not ready(da, tn, 3, n_a, m) or (<cnp.ndarray>da).shape[2] > T:
        return None
    if tn == cnp.NPY_FLOAT:
        return _backward[float](0, da, A, steps.a0, steps.X, steps.Wax, steps.Waa)
    return _backward[double](0, da, A, steps.a0, steps.X, steps.Wax, steps.Waa)


# ------------------------------------------------------------------ batch chunks
# As in _lstm.pyx: fixed batch chunks, each running the whole sequence in blocks
# of steps (see steps_per_block) with an O((n_x + n_a + n_y)·block) workspace,
# for inference and multi-threading.

cdef int _chunk_forward(floating* x, Py_ssize_t sx0, Py_ssize_t sx1, Py_ssize_t sx2,
                        const floating* a0, const floating* Wax, const floating* Waa,
                        const floating* Wya, const floating* ba, const floating* by,
                        floating* a_out, floating* y_out, floating* A_tm,
                        Py_ssize_t n_x, Py_ssize_t n_a, Py_ssize_t n_y, Py_ssize_t m,
                        Py_ssize_t T, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    cdef Py_ssize_t ms = j1 - j0, Tm = T * m, tb_max = steps_per_block(j1 - j0, T)
    cdef Py_ssize_t cols = tb_max * ms, t0, tb, bc, tt, i, j
    cdef floating* ws = <floating*>malloc(((n_x + n_a + n_y) * cols + n_a * ms)
                                          * sizeof(floating) + 1)
    if ws == NULL:
        return -1
    # one block of steps, time-major: inputs Xb, states Zb, predictions Yb
    # (rows × tb × ms); the state carried from block to block
    cdef floating* Xb = ws
    cdef floating* Zb = Xb + n_x * cols
    cdef floating* Yb = Zb + n_a * cols
    cdef floating* state = Yb + n_y * cols
    for i in range(n_a):
        memcpy(state + i * ms, a0 + i * m + j0, ms * sizeof(floating))
    t0 = 0
    while t0 < T:
        tb = min(tb_max, T - t0)
        bc = tb * ms
        gather_time_major(n_x, ms, tb, x + j0 * sx1 + t0 * sx2, sx0, sx1, sx2, Xb)
        # Zb = Wax @ Xb (the block's steps in one GEMM), then step by step
        # Zb[:, tt] += Waa @ a_prev and a = tanh(Zb[:, tt] + ba) in place
        gemm(False, False, n_a, bc, n_x, <floating>1, Wax, n_x, Xb, bc, <floating>0, Zb, bc)
        for tt in range(tb):
            gemm(False, False, n_a, ms, n_a, <floating>1, Waa, n_a,
                 state if tt == 0 else Zb + (tt - 1) * ms, ms if tt == 0 else bc,
                 <floating>1, Zb + tt * ms, bc)
            rnn_forward_step(n_a, ms, Zb + tt * ms, bc, ba)
        # Yb = softmax(Wya @ Zb + by)
        gemm(False, False, n_y, bc, n_a, <floating>1, Wya, n_a, Zb, bc, <floating>0, Yb, bc)
        softmax_columns(n_y, bc, Yb, bc, by)
        for i in range(n_a):
            for tt in range(tb):
                for j in range(ms):
                    a_out[(i * m + j0 + j) * T + t0 + tt] = Zb[i * bc + tt * ms + j]
        for i in range(n_y):
            for tt in range(tb):
                for j in range(ms):
                    y_out[(i * m + j0 + j) * T + t0 + tt] = Yb[i * bc + tt * ms + j]
        for i in range(n_a):
            if A_tm != NULL:
                for tt in range(tb):
                    memcpy(A_tm + i * Tm + (t0 + tt) * m + j0, Zb + i * bc + tt * ms,
                           ms * sizeof(floating))
            memcpy(state + i * ms, Zb + i * bc + (tb - 1) * ms, ms * sizeof(floating))
        t0 += tb
    free(ws)
    return 0


cdef int _chunks(floating dummy, cnp.ndarray x, cnp.ndarray a0, cnp.ndarray Wax,
                 cnp.ndarray Waa, cnp.ndarray Wya, cnp.ndarray ba, cnp.ndarray by,
                 cnp.ndarray a, cnp.ndarray y, object A, Py_ssize_t chunk,
                 Py_ssize_t first, Py_ssize_t last) except -1:
    cdef Py_ssize_t n_x = x.shape[0], m = x.shape[1], T = x.shape[2], n_a = a0.shape[0]
    cdef Py_ssize_t n_y = Wya.shape[0], k, status = 0
    cdef floating* pA = NULL if A is None else <floating*>cnp.PyArray_DATA(A)
    cdef floating* px = <floating*>cnp.PyArray_DATA(x)
    cdef Py_ssize_t sx0 = elem_stride(x, 0), sx1 = elem_stride(x, 1), sx2 = elem_stride(x, 2)
    cdef unsigned int csr
    with nogil:
        csr = cyrnn_ftz_begin()
        for k in range(first, last):
            if _chunk_forward(px, sx0, sx1, sx2, <floating*>cnp.PyArray_DATA(a0),
                              <floating*>cnp.PyArray_DATA(Wax), <floating*>cnp.PyArray_DATA(Waa),
                              <floating*>cnp.PyArray_DATA(Wya), <floating*>cnp.PyArray_DATA(ba),
                              <floating*>cnp.PyArray_DATA(by), <floating*>cnp.PyArray_DATA(a),
                              <floating*>cnp.PyArray_DATA(y), pA,
                              n_x, n_a, n_y, m, T, k * chunk, min(m, (k + 1) * chunk)) != 0:
                status = -1
                break
        cyrnn_ftz_end(csr)
    if status != 0:
        raise MemoryError("could not allocate the per-thread workspace")
    return 0


def forward_chunks(x, a0, Wax, Waa, Wya, ba, by, a, y, A, Py_ssize_t chunk,
                   Py_ssize_t first, Py_ssize_t last):
    """Run batch chunks first..last-1 of the RNN over all steps, writing a, y
    (n, m, T) and, unless None, the time-major hidden states A. Releases the GIL
    throughout; safe to run disjoint chunk ranges from several threads at once."""
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        _chunks[float](0, x, a0, Wax, Waa, Wya, ba, by, a, y, A, chunk, first, last)
    else:
        _chunks[double](0, x, a0, Wax, Waa, Wya, ba, by, a, y, A, chunk, first, last)


# ------------------------------------------------------------------ public functions
# Each tries its fast path (kernel-ready inputs only) and hands anything else to
# cyrnn/_checked.py, which converts what it can and raises the errors. Compiled,
# these entry points cost ~0.1 us less per call than Python wrappers (about a
# tenth of a cell function's time at the notebook's sizes).

def rnn_cell_forward(xt, a_prev, parameters):
    """One step of the basic RNN.

    Parameters
    ----------
    xt : array, shape (n_x, m)
        Input at this step.
    a_prev : array, shape (n_a, m)
        Hidden state of the previous step.
    parameters : dict
        ``Wax`` (n_a, n_x), ``Waa`` (n_a, n_a), ``Wya`` (n_y, n_a),
        ``ba`` (n_a, 1), ``by`` (n_y, 1). Other keys are ignored.

    Returns
    -------
    a_next : ndarray, shape (n_a, m)
        ``tanh(Wax @ xt + Waa @ a_prev + ba)``
    yt_pred : ndarray, shape (n_y, m)
        ``softmax(Wya @ a_next + by)``
    cache : tuple
        ``(a_next, a_prev, xt, parameters)``, for `rnn_cell_backward`.
    """
    out = fast_cell_forward(xt, a_prev, parameters)
    if out is None:
        from cyrnn import _checked
        return _checked.rnn_cell_forward(xt, a_prev, parameters)
    a_next, yt_pred = out
    return a_next, yt_pred, (a_next, a_prev, xt, parameters)


def rnn_forward(x, a0, parameters, *, cache=True, n_threads=1):
    """The basic RNN over all time steps.

    Parameters
    ----------
    x : array, shape (n_x, m, T_x)
        Inputs, time last. Any memory layout; read without copying when it is
        a transposed view of a C-contiguous (n_x, T_x, m) array.
    a0 : array, shape (n_a, m)
        Initial hidden state.
    parameters : dict
        As for `rnn_cell_forward`.
    cache : bool, keyword-only
        False for inference: no caches are kept (``None`` is returned in their
        place) and nothing is allocated beyond the outputs and a workspace of
        O((n_x + n_a + n_y)·block) per thread (see "Memory" in the README).
    n_threads : int or None, keyword-only
        Split the batch over this many native threads (None: all cores), each
        running the whole sequence on its part with single-threaded BLAS.
        Results do not depend on it (see cyrnn/_parallel.py).

    Returns
    -------
    a : ndarray, shape (n_a, m, T_x)
        Hidden states of every step.
    y_pred : ndarray, shape (n_y, m, T_x)
        Predictions of every step.
    caches : tuple or None
        ``(steps, x)``; ``steps[t]`` is step t's ``(a_next, a_prev, xt,
        parameters)``, made on access (see `RNNStepCaches`). None when
        ``cache=False``.
    """
    if cache is True and n_threads == 1:
        out = fast_forward(x, a0, parameters)
        if out is not None:
            return out
    from cyrnn import _checked
    return _checked.rnn_forward(x, a0, parameters, cache=cache, n_threads=n_threads)


def rnn_cell_backward(da_next, cache):
    """Backward pass of one RNN step (without the output layer).

    Parameters
    ----------
    da_next : array, shape (n_a, m)
        Gradient of the loss with respect to this step's hidden state.
    cache : tuple
        ``(a_next, a_prev, xt, parameters)`` from `rnn_cell_forward`.

    Returns
    -------
    dict
        ``dxt`` (n_x, m), ``da_prev`` (n_a, m), ``dWax`` (n_a, n_x),
        ``dWaa`` (n_a, n_a), ``dba`` (n_a, 1).
    """
    grads = fast_cell_backward(da_next, cache)
    if grads is None:
        from cyrnn import _checked
        return _checked.rnn_cell_backward(da_next, cache)
    return grads


def rnn_backward(da, caches):
    """Backpropagation through time for the basic RNN.

    Parameters
    ----------
    da : array, shape (n_a, m, T)
        Upstream gradients of the hidden states. T may be smaller than the
        number of forward steps; then steps ``0 .. T-1`` are used.
    caches : tuple
        ``(steps, x)`` from `rnn_forward` (cyrnn's or `cyrnn.reference`'s).

    Returns
    -------
    dict
        ``dx`` (n_x, m, T), ``da0`` (n_a, m), ``dWax`` (n_a, n_x),
        ``dWaa`` (n_a, n_a), ``dba`` (n_a, 1).
    """
    grads = fast_backward(da, caches)
    if grads is None:
        from cyrnn import _checked
        return _checked.rnn_backward(da, caches)
    return grads
