"""LSTM kernels: forward and backward through time, without the GIL.

The four gates are stacked in the order (f, i, c~, o) into one weight matrix
W (4·n_a, n_a + n_x), whose first n_a columns act on a⟨t-1⟩ and the rest on
x⟨t⟩, as in the notebook's concat = [a_prev; x]. Buffers are time-major,
(rows, T, m) C-contiguous (see _rnn.pyx). The kernel entry points trust their
callers (the fast paths below, cyrnn/_checked.py for everything else). The
public LSTM functions are at the end of this file.
"""
cimport numpy as cnp
from cython cimport floating
from libc.string cimport memcpy, memset

from _blas cimport (gemm, gemm_abt, abt_work, gemm_atb, atb_work, transpose_weights_once,
                    gemm_atb_pretransposed)
from _arrays cimport (new_array, new_zeros, block_view, typenum_of, elem_stride,
                     is_time_major_view, ready, float_typenum, use_pool, freeze,
                     steps_per_block, holds_gil_worth_releasing)
from libc.stdlib cimport free, malloc
from _elementwise cimport (cyrnn_ftz_begin, cyrnn_ftz_end, lstm_forward_step,
                           lstm_backward_step, softmax_columns, row_sums,
                           gather_time_major, scatter_batch_major)

cnp.import_array()
use_pool()


cdef tuple _stack_parameters(floating dummy, tuple weights, tuple biases):
    """W (4·n_a, n_a+n_x) and b (4·n_a,) from the four C-contiguous gate arrays."""
    cdef int tn = typenum_of(dummy)
    cdef cnp.ndarray Wk = weights[0]
    cdef Py_ssize_t n_a = Wk.shape[0], width = Wk.shape[1], k
    cdef cnp.ndarray W = new_array(tn, 4 * n_a, width)
    cdef cnp.ndarray b = new_array(tn, 4 * n_a, 1)
    cdef size_t wbytes = n_a * width * sizeof(floating), bbytes = n_a * sizeof(floating)
    for k in range(4):
        memcpy(<char*>cnp.PyArray_DATA(W) + k * wbytes, cnp.PyArray_DATA(weights[k]), wbytes)
        memcpy(<char*>cnp.PyArray_DATA(b) + k * bbytes, cnp.PyArray_DATA(biases[k]), bbytes)
    return W, b


def stack_parameters(weights, biases):
    """Stack (Wf, Wi, Wc, Wo) and (bf, bi, bc, bo) into W (4·n_a, n_a+n_x), b (4·n_a, 1)."""
    if cnp.PyArray_TYPE(weights[0]) == cnp.NPY_FLOAT:
        return _stack_parameters[float](0, tuple(weights), tuple(biases))
    return _stack_parameters[double](0, tuple(weights), tuple(biases))


cdef tuple _forward(floating dummy, cnp.ndarray x, cnp.ndarray a0, object c0_obj,
                    cnp.ndarray W, cnp.ndarray b, cnp.ndarray Wy, cnp.ndarray by,
                    bint fresh_states):
    cdef int tn = typenum_of(dummy)
    cdef Py_ssize_t n_x = x.shape[0], m = x.shape[1], T = x.shape[2]
    cdef Py_ssize_t n_a = a0.shape[0], n_y = Wy.shape[0], width = n_a + n_x
    cdef Py_ssize_t Tm = T * m, t
    cdef Py_ssize_t sx0 = elem_stride(x, 0), sx1 = elem_stride(x, 1), sx2 = elem_stride(x, 2)
    cdef bint gather_x = not is_time_major_view(x)
    cdef cnp.ndarray X = new_array(tn, n_x, T, m) if gather_x else x.transpose(0, 2, 1)
    cdef cnp.ndarray G = new_array(tn, 4 * n_a, T, m)
    cdef cnp.ndarray A = new_array(tn, n_a, T, m)
    cdef cnp.ndarray C = new_array(tn, n_a, T, m)
    cdef cnp.ndarray y = new_array(tn, n_y, m, T)
    cdef bint copy_states = fresh_states or T > 1
    cdef cnp.ndarray a = new_array(tn, n_a, m, T) if copy_states else A.reshape(n_a, m, T)
    cdef cnp.ndarray c = new_array(tn, n_a, m, T) if copy_states else C.reshape(n_a, m, T)
    cdef floating* px = <floating*>cnp.PyArray_DATA(x)
    cdef floating* pX = <floating*>cnp.PyArray_DATA(X)
    cdef floating* pG = <floating*>cnp.PyArray_DATA(G)
    cdef floating* pA = <floating*>cnp.PyArray_DATA(A)
    cdef floating* pC = <floating*>cnp.PyArray_DATA(C)
    cdef floating* pa0 = <floating*>cnp.PyArray_DATA(a0)
    cdef floating* pc0 = NULL if c0_obj is None else <floating*>cnp.PyArray_DATA(c0_obj)
    cdef floating* pW = <floating*>cnp.PyArray_DATA(W)
    cdef floating* pb = <floating*>cnp.PyArray_DATA(b)
    cdef floating* pWy = <floating*>cnp.PyArray_DATA(Wy)
    cdef floating* pby = <floating*>cnp.PyArray_DATA(by)
    cdef floating* pa = <floating*>cnp.PyArray_DATA(a)
    cdef floating* pc = <floating*>cnp.PyArray_DATA(c)
    cdef floating* py = <floating*>cnp.PyArray_DATA(y)
    cdef floating* a_prev
    cdef floating* c_prev
    cdef unsigned int csr
    with nogil:
        csr = cyrnn_ftz_begin()
        if gather_x:
            gather_time_major(n_x, m, T, px, sx0, sx1, sx2, pX)
        # G = W[:, n_a:] @ X  (input projection of all steps, all four gates)
        gemm(False, False, 4 * n_a, Tm, n_x, <floating>1, pW + n_a, width, pX, Tm,
             <floating>0, pG, Tm)
        for t in range(T):
            a_prev = pa0 if t == 0 else pA + (t - 1) * m
            c_prev = pc0 if t == 0 else pC + (t - 1) * m
            # G[:, t] += W[:, :n_a] @ a[:, t-1]   (one GEMM for the four gates)
            gemm(False, False, 4 * n_a, m, n_a, <floating>1, pW, width, a_prev,
                 m if t == 0 else Tm, <floating>1, pG + t * m, Tm)
            # gates, c[:, t], a[:, t] in one fused pass
            lstm_forward_step(n_a, m, pG + t * m, Tm, n_a * Tm, pb,
                              c_prev, m if t == 0 else Tm, pC + t * m, Tm, pA + t * m, Tm)
        if pa != pA:
            scatter_batch_major(n_a, m, T, pA, Tm, pa)
            scatter_batch_major(n_a, m, T, pC, Tm, pc)
        # y = softmax(Wy @ a + by), per column: from the batch-major a, so y needs
        # no layout change of its own
        gemm(False, False, n_y, Tm, n_a, <floating>1, pWy, n_a, pa, Tm, <floating>0, py, Tm)
        softmax_columns(n_y, Tm, py, Tm, pby)
        cyrnn_ftz_end(csr)
    if fresh_states:  # the time-major buffers become the caches: read-only from here on
        freeze(A)
        freeze(C)
        freeze(G)
        if gather_x:
            freeze(X)
    return a, y, c, A, C, G, X


def forward(x, a0, c0, W, b, Wy, by, bint fresh_states=True):
    """Run the LSTM over all steps of x (n_x, m, T).

    W, b are the stacked gate parameters (see stack_parameters); c0 is None for
    zeros. One dtype throughout; all but x C-contiguous. Returns
    (a, y, c, A, C, G, X): the outputs a, c (n_a, m, T) and y (n_y, m, T), and the
    time-major states A, C (n_a, T, m), activated gates G (4·n_a, T, m) and inputs
    X (n_x, T, m) that backward needs. With fresh_states=False and T == 1, a and
    c share memory with A and C.
    """
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        return _forward[float](0, x, a0, c0, W, b, Wy, by, fresh_states)
    return _forward[double](0, x, a0, c0, W, b, Wy, by, fresh_states)


_DW_KEYS = ("dWf", "dWi", "dWc", "dWo")
_DB_KEYS = ("dbf", "dbi", "dbc", "dbo")


cdef dict _add_gate_gradients(dict grads, cnp.ndarray dW, cnp.ndarray db, Py_ssize_t n_a,
                              Py_ssize_t width):
    """grads[dWf..dWo], grads[dbf..dbo]: views of the four gates' row blocks of the
    stacked dW (4·n_a rows of width columns) and db (4·n_a), in the reference's order."""
    cdef Py_ssize_t k
    for k in range(4):
        grads[_DW_KEYS[k]] = block_view(dW, k * n_a * width, n_a, width)
        grads[_DB_KEYS[k]] = block_view(db, k * n_a, n_a, 1)
    return grads


cdef dict _backward(floating dummy, cnp.ndarray da, cnp.ndarray G,
                    cnp.ndarray A, cnp.ndarray C, cnp.ndarray a0, object c0_obj,
                    cnp.ndarray X, cnp.ndarray W):
    cdef int tn = typenum_of(dummy)
    cdef Py_ssize_t n_a = da.shape[0], m = da.shape[1], T_da = da.shape[2]
    cdef Py_ssize_t T = A.shape[1], n_x = X.shape[0], width = n_a + n_x
    cdef Py_ssize_t Tm = T * m, Tdm = T_da * m, t
    cdef Py_ssize_t s0 = elem_stride(da, 0), s1 = elem_stride(da, 1), s2 = elem_stride(da, 2)
    cdef cnp.ndarray dA = new_array(tn, n_a, T_da, m)
    cdef cnp.ndarray dG = new_array(tn, 4 * n_a, T_da, m)
    cdef cnp.ndarray dx = new_array(tn, n_x, m, T_da)
    cdef cnp.ndarray dX = new_array(tn, n_x, T_da, m) if T_da > 1 else dx
    cdef cnp.ndarray da0 = new_zeros(tn, n_a, m)
    # dc carries the gradient at c⟨t⟩ down the steps; it ends as dc_prev of step 0.
    cdef cnp.ndarray dc = new_zeros(tn, n_a, m)
    cdef cnp.ndarray dW = new_zeros(tn, 4 * n_a, width)
    cdef cnp.ndarray db = new_zeros(tn, 4 * n_a, 1)
    cdef floating* pda = <floating*>cnp.PyArray_DATA(da)
    cdef floating* pdA = <floating*>cnp.PyArray_DATA(dA)
    cdef floating* pdG = <floating*>cnp.PyArray_DATA(dG)
    cdef floating* pdx = <floating*>cnp.PyArray_DATA(dx)
    cdef floating* pdX = <floating*>cnp.PyArray_DATA(dX)
    cdef floating* pda0 = <floating*>cnp.PyArray_DATA(da0)
    cdef floating* pdc = <floating*>cnp.PyArray_DATA(dc)
    cdef floating* pG = <floating*>cnp.PyArray_DATA(G)
    cdef floating* pA = <floating*>cnp.PyArray_DATA(A)
    cdef floating* pC = <floating*>cnp.PyArray_DATA(C)
    cdef floating* pa0 = <floating*>cnp.PyArray_DATA(a0)
    cdef floating* pc0 = NULL if c0_obj is None else <floating*>cnp.PyArray_DATA(c0_obj)
    cdef floating* pX = <floating*>cnp.PyArray_DATA(X)
    cdef floating* pW = <floating*>cnp.PyArray_DATA(W)
    cdef floating* pdW = <floating*>cnp.PyArray_DATA(dW)
    cdef floating* pdb = <floating*>cnp.PyArray_DATA(db)
    cdef floating* c_prev
    cdef floating* work
    cdef floating* Wa_t = NULL
    cdef unsigned int csr
    if T_da == 0:
        return _add_gate_gradients({"dx": dx, "da0": da0}, dW, db, n_a, width)
    with nogil:
        csr = cyrnn_ftz_begin()
        work = <floating*>malloc(max(atb_work(n_a, m, 4 * n_a, sizeof(floating) == 8),
                                     atb_work(n_x, Tdm, 4 * n_a, sizeof(floating) == 8),
                                     abt_work(4 * n_a, n_a, m), abt_work(4 * n_a, n_a, Tdm - m),
                                     abt_work(4 * n_a, n_x, Tdm)) * sizeof(floating) + 1)
        if transpose_weights_once(n_a, m, 4 * n_a, T_da, sizeof(floating) == 8):
            # Wa_t = W[:, :n_a]ᵀ (a 2-D transpose is gather's n = 1 case)
            Wa_t = <floating*>malloc(4 * n_a * n_a * sizeof(floating))
            if Wa_t != NULL:
                gather_time_major(1, 4 * n_a, n_a, pW, 0, width, 1, Wa_t)
        gather_time_major(n_a, m, T_da, pda, s0, s1, s2, pdA)
        for t in range(T_da - 1, -1, -1):
            c_prev = pc0 if t == 0 else pC + (t - 1) * m
            # dG[:, t] = gate gradients; dc becomes dc_prev   (see lstm_backward_step)
            lstm_backward_step(n_a, m, pG + t * m, Tm, n_a * Tm, pC + t * m, Tm,
                               c_prev, m if t == 0 else Tm, pdA + t * m, Tdm,
                               NULL if t == T_da - 1 else pda0, m, pdc, m,
                               pdG + t * m, Tdm, n_a * Tdm)
            # da_next = W[:, :n_a].T @ dG[:, t]   (after step 0 this is da0)
            gemm_atb_pretransposed(Wa_t, n_a, m, 4 * n_a, <floating>1, pW, width, pdG + t * m,
                                   Tdm, <floating>0, pda0, m, work)
        free(Wa_t)
        # dX = W[:, n_a:].T @ dG
        gemm_atb(n_x, Tdm, 4 * n_a, <floating>1, pW + n_a, width, pdG, Tdm,
                 <floating>0, pdX, Tdm, work)
        # dW[:, :n_a] = dG @ A_prev.T  (step 0 against a0, the rest against A)
        gemm_abt(4 * n_a, n_a, m, <floating>1, pdG, Tdm, pa0, m, <floating>0, pdW, width, work)
        gemm_abt(4 * n_a, n_a, Tdm - m, <floating>1, pdG + m, Tdm, pA, Tm,
                 <floating>1, pdW, width, work)
        # dW[:, n_a:] = dG @ X.T ; db = dG.sum(1)
        gemm_abt(4 * n_a, n_x, Tdm, <floating>1, pdG, Tdm, pX, Tm,
                 <floating>0, pdW + n_a, width, work)
        free(work)
        row_sums(4 * n_a, Tdm, pdG, Tdm, pdb)
        if pdx != pdX:
            scatter_batch_major(n_x, m, T_da, pdX, Tdm, pdx)
        cyrnn_ftz_end(csr)
    return _add_gate_gradients({"dx": dx, "da0": da0}, dW, db, n_a, width)


def backward(da, G, A, C, a0, c0, X, W):
    """Backpropagate da (n_a, m, T_da) through the first T_da steps.

    G, A, C, X are the forward's time-major
    buffers (T >= T_da steps), a0/c0 its initial states (c0 None: zeros), W the
    stacked weights. Returns the gradient dict of lstm_backward.
    """
    if cnp.PyArray_TYPE(da) == cnp.NPY_FLOAT:
        return _backward[float](0, da, G, A, C, a0, c0, X, W)
    return _backward[double](0, da, G, A, C, a0, c0, X, W)


# Cell functions stack the four gate weights into one matrix (one GEMM instead
# of four) only while that copy is cheap; above this many elements they run one
# GEMM per gate on the caller's matrices instead.
cdef enum:
    STACK_LIMIT = 65536


cdef void _cell_outputs(Py_ssize_t n_a, Py_ssize_t width, Py_ssize_t n_y, Py_ssize_t m,
                        bint stacked, const floating** Wk, const floating* concat,
                        const floating* b, const floating* c_prev, const floating* Wy,
                        const floating* by, floating* G, floating* c, floating* a,
                        floating* y) noexcept nogil:
    cdef unsigned int csr = cyrnn_ftz_begin()
    cdef int k
    # G = W @ concat   (the four gates: one GEMM when stacked, else one per gate)
    if stacked:
        gemm(False, False, 4 * n_a, m, width, <floating>1, Wk[0], width, concat, m,
             <floating>0, G, m)
    else:
        for k in range(4):
            gemm(False, False, n_a, m, width, <floating>1, Wk[k], width, concat, m,
                 <floating>0, G + k * n_a * m, m)
    lstm_forward_step(n_a, m, G, m, n_a * m, b, c_prev, m, c, m, a, m)
    # y = softmax(Wy @ a + by)
    gemm(False, False, n_y, m, n_a, <floating>1, Wy, n_a, a, m, <floating>0, y, m)
    softmax_columns(n_y, m, y, m, by)
    cyrnn_ftz_end(csr)


cdef tuple _cell_forward(floating dummy, cnp.ndarray xt, cnp.ndarray a_prev, cnp.ndarray c_prev,
                         tuple weights, tuple biases, cnp.ndarray Wy, cnp.ndarray by):
    """One step; returns (a_next, c_next, yt, (ft, it, cct, ot)), the activated gates
    being views of one (4, n_a, m) buffer (lstm_cell_backward reads them in place)."""
    cdef int tn = typenum_of(dummy)
    cdef Py_ssize_t n_x = xt.shape[0], m = xt.shape[1], n_a = a_prev.shape[0]
    cdef Py_ssize_t n_y = Wy.shape[0], width = n_a + n_x, k
    cdef cnp.ndarray a = new_array(tn, n_a, m)
    cdef cnp.ndarray c = new_array(tn, n_a, m)
    cdef cnp.ndarray y = new_array(tn, n_y, m)
    cdef cnp.ndarray G = new_array(tn, 4, n_a, m)
    cdef bint stacked = 4 * n_a * width <= STACK_LIMIT
    cdef size_t wbytes = n_a * width * sizeof(floating), bbytes = n_a * sizeof(floating)
    # scratch: b (4·n_a), concat = [a_prev; xt] (width, m), stacked W when small
    cdef floating* pb = <floating*>malloc(4 * bbytes + width * m * sizeof(floating)
                                          + (4 * wbytes if stacked else 0) + 1)
    if pb == NULL:
        raise MemoryError()
    cdef floating* pcat = pb + 4 * n_a
    cdef floating* pW = pcat + width * m
    cdef floating* pwork = pW + (4 * n_a * width if stacked else 0)
    cdef const floating* Wk[4]
    for k in range(4):
        memcpy(<char*>pb + k * bbytes, cnp.PyArray_DATA(biases[k]), bbytes)
        if stacked:
            memcpy(<char*>pW + k * wbytes, cnp.PyArray_DATA(weights[k]), wbytes)
        Wk[k] = pW + k * n_a * width if stacked else <floating*>cnp.PyArray_DATA(weights[k])
    memcpy(pcat, cnp.PyArray_DATA(a_prev), n_a * m * sizeof(floating))
    memcpy(pcat + n_a * m, cnp.PyArray_DATA(xt), n_x * m * sizeof(floating))
    cdef floating* pa = <floating*>cnp.PyArray_DATA(a)
    cdef floating* pc = <floating*>cnp.PyArray_DATA(c)
    cdef floating* py = <floating*>cnp.PyArray_DATA(y)
    cdef floating* pG = <floating*>cnp.PyArray_DATA(G)
    cdef floating* pcp = <floating*>cnp.PyArray_DATA(c_prev)
    cdef floating* pWy = <floating*>cnp.PyArray_DATA(Wy)
    cdef floating* pby = <floating*>cnp.PyArray_DATA(by)
    if holds_gil_worth_releasing(<double>m * (4 * n_a * width + n_y * n_a)):
        with nogil:
            _cell_outputs(n_a, width, n_y, m, stacked, Wk, pcat, pb, pcp, pWy, pby, pG, pc,
                          pa, py)
    else:
        _cell_outputs(n_a, width, n_y, m, stacked, Wk, pcat, pb, pcp, pWy, pby, pG, pc, pa, py)
    free(pb)
    cdef Py_ssize_t gate = n_a * m
    return a, c, y, (block_view(G, 0, n_a, m), block_view(G, gate, n_a, m),
                     block_view(G, 2 * gate, n_a, m), block_view(G, 3 * gate, n_a, m))


def cell_forward(xt, a_prev, c_prev, weights, biases, Wy, by):
    """One step: (a_next, c_next, yt, gates). All C-contiguous, one dtype; weights and
    biases are the (Wf, Wi, Wc, Wo) and (bf, bi, bc, bo) tuples."""
    if cnp.PyArray_TYPE(xt) == cnp.NPY_FLOAT:
        return _cell_forward[float](0, xt, a_prev, c_prev, tuple(weights), tuple(biases), Wy, by)
    return _cell_forward[double](0, xt, a_prev, c_prev, tuple(weights), tuple(biases), Wy, by)


_GATE_KEYS = (("Wf", "bf"), ("Wi", "bi"), ("Wc", "bc"), ("Wo", "bo"))


cdef tuple _ready_gates(dict p, int tn, Py_ssize_t n_x, Py_ssize_t n_a):
    """((Wf, Wi, Wc, Wo), (bf, bi, bc, bo)) when kernel-ready for (n_x, n_a), else None."""
    cdef list weights = [], biases = []
    for wkey, bkey in _GATE_KEYS:
        W, b = p.get(wkey), p.get(bkey)
        if not (ready(W, tn, 2, n_a, n_a + n_x) and ready(b, tn, 2, n_a, 1)):
            return None
        weights.append(W)
        biases.append(b)
    return tuple(weights), tuple(biases)


cdef tuple _ready_parameters(object parameters, int tn, Py_ssize_t n_x, Py_ssize_t n_a):
    """(weights, biases, Wy, by) when all are kernel-ready, else None."""
    if type(parameters) is not dict:
        return None
    cdef dict p = <dict>parameters
    gates = _ready_gates(p, tn, n_x, n_a)
    if gates is None:
        return None
    Wy, by = p.get("Wy"), p.get("by")
    if not ready(Wy, tn, 2, -1, n_a) or not ready(by, tn, 2, (<cnp.ndarray>Wy).shape[0], 1):
        return None
    return gates[0], gates[1], Wy, by


cdef tuple fast_cell_forward(xt, a_prev, c_prev, parameters):
    """cell_forward when every input is already kernel-ready, else None."""
    cdef int tn = float_typenum(xt)
    if tn < 0 or not ready(xt, tn, 2, -1):
        return None
    cdef Py_ssize_t m = (<cnp.ndarray>xt).shape[1]
    if not ready(a_prev, tn, 2, -1, m):
        return None
    cdef Py_ssize_t n_a = (<cnp.ndarray>a_prev).shape[0]
    if not ready(c_prev, tn, 2, n_a, m):
        return None
    w = _ready_parameters(parameters, tn, (<cnp.ndarray>xt).shape[0], n_a)
    if w is None:
        return None
    weights, biases, Wy, by = w
    if tn == cnp.NPY_FLOAT:
        return _cell_forward[float](0, xt, a_prev, c_prev, weights, biases, Wy, by)
    return _cell_forward[double](0, xt, a_prev, c_prev, weights, biases, Wy, by)


cdef class LSTMCacheBuffers:
    """The buffers behind cyrnn._caches.LSTMStepCaches, as C fields: the fast path
    makes the cache object without running Python code (~0.2 us at tiny sizes)."""
    cdef readonly Py_ssize_t _T
    cdef readonly object A, C, G, a0, c0, X, x, parameters, W
    cdef public object _zeros  # see LSTMStepCaches.initial_cell_state

    def __init__(self, A, C, G, a0, c0, X, x, parameters, W):
        self.fill(A, C, G, a0, c0, X, x, parameters, W)

    cdef fill(self, A, C, G, a0, c0, X, x, parameters, W):
        self._T = A.shape[1]
        self.A, self.C, self.G, self.a0, self.c0 = A, C, G, a0, c0
        self.X, self.x, self.parameters, self.W = X, x, parameters, W

    def __reduce__(self):
        return type(self), (self.A, self.C, self.G, self.a0, self.c0, self.X, self.x,
                            self.parameters, self.W)


cdef object _step_caches_type = None


cdef object step_caches_type():
    """cyrnn._caches.LSTMStepCaches, looked up on first use (that module imports this one)."""
    global _step_caches_type
    if _step_caches_type is None:
        from cyrnn._caches import LSTMStepCaches
        _step_caches_type = LSTMStepCaches
    return _step_caches_type


cdef tuple fast_forward(x, a0, parameters, c0):
    """The (a, y, c, caches) of lstm_forward when every input is kernel-ready, else None."""
    cdef int tn = float_typenum(x)
    if tn < 0 or not ready(x, tn, 3, -1):
        return None
    cdef Py_ssize_t m = (<cnp.ndarray>x).shape[1]
    if not ready(a0, tn, 2, -1, m):
        return None
    cdef Py_ssize_t n_a = (<cnp.ndarray>a0).shape[0]
    if c0 is not None and not ready(c0, tn, 2, n_a, m):
        return None
    if m * (<cnp.ndarray>x).shape[2] > 2**31 - 1:
        return None  # the validating path raises the error
    w = _ready_parameters(parameters, tn, (<cnp.ndarray>x).shape[0], n_a)
    if w is None:
        return None
    weights, biases, Wy, by = w
    if tn == cnp.NPY_FLOAT:
        W, b = _stack_parameters[float](0, weights, biases)
        a, y, c, A, C, G, X = _forward[float](0, x, a0, c0, W, b, Wy, by, True)
    else:
        W, b = _stack_parameters[double](0, weights, biases)
        a, y, c, A, C, G, X = _forward[double](0, x, a0, c0, W, b, Wy, by, True)
    cdef LSTMCacheBuffers steps = LSTMCacheBuffers.__new__(step_caches_type())
    steps.fill(A, C, G, a0, c0, X, x, parameters, W)
    return a, y, c, (steps, x)


cdef void _cell_gradients(Py_ssize_t n_a, Py_ssize_t width, Py_ssize_t m, bint stacked,
                          const floating** Wk, const floating* G, const floating* c_next,
                          const floating* c_prev, const floating* da_next,
                          const floating* concat, floating* dc, floating* dG, floating* dconcat,
                          floating* dW, floating* db, floating* work) noexcept nogil:
    cdef unsigned int csr = cyrnn_ftz_begin()
    cdef int k
    # dG = gate gradients; dc: dc_next -> dc_prev   (see lstm_backward_step)
    lstm_backward_step(n_a, m, G, m, n_a * m, c_next, m, c_prev, m, da_next, m,
                       <floating*>NULL, m, dc, m, dG, m, n_a * m)
    # [da_prev; dxt] = W.T @ dG ; dW = dG @ concat.T ; db = dG.sum(1)
    if stacked:
        gemm_atb(width, m, 4 * n_a, <floating>1, Wk[0], width, dG, m,
                 <floating>0, dconcat, m, work)
        gemm_abt(4 * n_a, width, m, <floating>1, dG, m, concat, m,
                 <floating>0, dW, width, work)
    else:
        for k in range(4):
            gemm_atb(width, m, n_a, <floating>1, Wk[k], width, dG + k * n_a * m, m,
                     <floating>(1 if k else 0), dconcat, m, work)
            gemm_abt(n_a, width, m, <floating>1, dG + k * n_a * m, m, concat, m,
                     <floating>0, dW + k * n_a * width, width, work)
    row_sums(4 * n_a, m, dG, m, db)
    cyrnn_ftz_end(csr)


cdef dict _cell_backward(floating dummy, cnp.ndarray da_next, cnp.ndarray dc_next,
                         cnp.ndarray c_next, cnp.ndarray a_prev, cnp.ndarray c_prev,
                         tuple gates, cnp.ndarray xt, tuple weights):
    """One step's gradient dict. The kernels write d_concat (n_a+n_x, m) =
    [da_prev; dxt], dW (4, n_a, n_a+n_x) and db (4, n_a, 1) in one piece each;
    the dict holds views of their blocks, in the reference's key order."""
    cdef int tn = typenum_of(dummy)
    cdef Py_ssize_t n_a = c_next.shape[0], m = c_next.shape[1], n_x = xt.shape[0]
    cdef Py_ssize_t width = n_a + n_x, k
    cdef cnp.ndarray dcat = new_array(tn, width, m)
    cdef cnp.ndarray dc = new_array(tn, n_a, m)
    cdef cnp.ndarray dW = new_array(tn, 4, n_a, width)
    cdef cnp.ndarray db = new_array(tn, 4, n_a, 1)
    cdef bint stacked = 4 * n_a * width <= STACK_LIMIT
    cdef size_t wbytes = n_a * width * sizeof(floating), gbytes = n_a * m * sizeof(floating)
    # The kernels read the gates as one (4·n_a, m) block. cyrnn's own caches hold
    # them as consecutive blocks of one buffer already; other caches get a copy.
    cdef char* gates0 = <char*>cnp.PyArray_DATA(gates[0])
    cdef bint copy_gates = False
    for k in range(1, 4):
        copy_gates = copy_gates or <char*>cnp.PyArray_DATA(gates[k]) != gates0 + k * gbytes
    # scratch: the gate gradients dG (4·n_a, m), concat = [a_prev; xt] (width, m),
    # the stacked W (4·n_a, width) when small, gemm_abt's work, the gates' copy
    cdef size_t work_elems = max(abt_work(4 * n_a, width, m), abt_work(n_a, width, m),
                                 atb_work(width, m, 4 * n_a, sizeof(floating) == 8),
                                 atb_work(width, m, n_a, sizeof(floating) == 8))
    cdef floating* pdG = <floating*>malloc(4 * gbytes + width * m * sizeof(floating)
                                           + (4 * wbytes if stacked else 0)
                                           + work_elems * sizeof(floating)
                                           + (4 * gbytes if copy_gates else 0) + 1)
    if pdG == NULL:
        raise MemoryError()
    cdef floating* pcat = pdG + 4 * n_a * m
    cdef floating* pW = pcat + width * m
    cdef floating* pwork = pW + (4 * n_a * width if stacked else 0)
    cdef floating* pG = pwork + work_elems if copy_gates else <floating*>gates0
    cdef const floating* Wk[4]
    for k in range(4):
        if stacked:
            memcpy(<char*>pW + k * wbytes, cnp.PyArray_DATA(weights[k]), wbytes)
        Wk[k] = pW + k * n_a * width if stacked else <floating*>cnp.PyArray_DATA(weights[k])
        if copy_gates:
            memcpy(<char*>pG + k * gbytes, cnp.PyArray_DATA(gates[k]), gbytes)
    memcpy(pcat, cnp.PyArray_DATA(a_prev), gbytes)
    memcpy(pcat + n_a * m, cnp.PyArray_DATA(xt), n_x * m * sizeof(floating))
    memcpy(cnp.PyArray_DATA(dc), cnp.PyArray_DATA(dc_next), gbytes)
    cdef floating* pdcat = <floating*>cnp.PyArray_DATA(dcat)
    cdef floating* pdc = <floating*>cnp.PyArray_DATA(dc)
    cdef floating* pdW = <floating*>cnp.PyArray_DATA(dW)
    cdef floating* pdb = <floating*>cnp.PyArray_DATA(db)
    cdef floating* pc = <floating*>cnp.PyArray_DATA(c_next)
    cdef floating* pcp = <floating*>cnp.PyArray_DATA(c_prev)
    cdef floating* pda = <floating*>cnp.PyArray_DATA(da_next)
    if holds_gil_worth_releasing(<double>m * 8 * n_a * width):
        with nogil:
            _cell_gradients(n_a, width, m, stacked, Wk, pG, pc, pcp, pda, pcat, pdc, pdG,
                            pdcat, pdW, pdb, pwork)
    else:
        _cell_gradients(n_a, width, m, stacked, Wk, pG, pc, pcp, pda, pcat, pdc, pdG, pdcat,
                        pdW, pdb, pwork)
    free(pdG)
    grads = {"dxt": block_view(dcat, n_a * m, n_x, m), "da_prev": block_view(dcat, 0, n_a, m),
             "dc_prev": dc}
    return _add_gate_gradients(grads, dW, db, n_a, width)


def cell_backward(da_next, dc_next, c_next, a_prev, c_prev, gates, xt, weights):
    """One step's gradient dict. All arrays C-contiguous, one dtype."""
    if cnp.PyArray_TYPE(da_next) == cnp.NPY_FLOAT:
        return _cell_backward[float](0, da_next, dc_next, c_next, a_prev, c_prev,
                                     tuple(gates), xt, tuple(weights))
    return _cell_backward[double](0, da_next, dc_next, c_next, a_prev, c_prev,
                                  tuple(gates), xt, tuple(weights))


cdef dict fast_cell_backward(da_next, dc_next, cache):
    """cell_backward's result when da_next, dc_next and the cache are kernel-ready, else None."""
    cdef int tn = float_typenum(da_next)
    if tn < 0 or type(cache) is not tuple or len(<tuple>cache) != 10:
        return None
    if not ready(da_next, tn, 2, -1):
        return None
    cdef Py_ssize_t n_a = (<cnp.ndarray>da_next).shape[0], m = (<cnp.ndarray>da_next).shape[1]
    cdef tuple entries = <tuple>cache
    cdef int k
    if not ready(dc_next, tn, 2, n_a, m):
        return None
    for k in range(8):
        if not ready(entries[k], tn, 2, n_a, m):
            return None
    xt, parameters = entries[8], entries[9]
    if not ready(xt, tn, 2, -1, m) or type(parameters) is not dict:
        return None
    gates = _ready_gates(<dict>parameters, tn, (<cnp.ndarray>xt).shape[0], n_a)
    if gates is None:
        return None
    if tn == cnp.NPY_FLOAT:
        return _cell_backward[float](0, da_next, dc_next, entries[1], entries[2], entries[3],
                                     entries[4:8], xt, gates[0])
    return _cell_backward[double](0, da_next, dc_next, entries[1], entries[2], entries[3],
                                  entries[4:8], xt, gates[0])


cdef dict fast_backward(da, caches):
    """backward on cyrnn's own caches when da is kernel-ready, else None."""
    cdef int tn = float_typenum(da)
    if tn < 0 or type(caches) is not tuple or len(<tuple>caches) != 2:
        return None
    if type((<tuple>caches)[0]) is not step_caches_type():
        return None
    cdef LSTMCacheBuffers steps = (<tuple>caches)[0]
    A = steps.A
    if cnp.PyArray_TYPE(<cnp.ndarray>A) != tn:
        return None
    cdef Py_ssize_t n_a = A.shape[0], T = A.shape[1], m = A.shape[2]
    if not ready(da, tn, 3, n_a, m) or (<cnp.ndarray>da).shape[2] > T:
        return None
    if tn == cnp.NPY_FLOAT:
        return _backward[float](0, da, steps.G, A, steps.C, steps.a0, steps.c0, steps.X,
                                steps.W)
    return _backward[double](0, da, steps.G, A, steps.C, steps.a0, steps.c0, steps.X, steps.W)


# ------------------------------------------------------------------ batch chunks
# Inference and multi-threaded forward: the batch is cut into fixed column
# chunks (see cyrnn/_parallel.py); each chunk runs the whole sequence in blocks
# of steps (see steps_per_block) with an O((n_x + 6·n_a + n_y)·block) workspace,
# writing the outputs (and, when given, the time-major cache buffers) for its
# columns only.
# The chunks do not depend on the number of threads, so results do not either.

cdef int _chunk_forward(floating* x, Py_ssize_t sx0, Py_ssize_t sx1, Py_ssize_t sx2,
                        const floating* a0, const floating* c0, const floating* W,
                        const floating* b, const floating* Wy, const floating* by,
                        floating* a_out, floating* c_out, floating* y_out,
                        floating* G_tm, floating* A_tm, floating* C_tm,
                        Py_ssize_t n_x, Py_ssize_t n_a, Py_ssize_t n_y, Py_ssize_t m,
                        Py_ssize_t T, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    cdef Py_ssize_t ms = j1 - j0, width = n_a + n_x, Tm = T * m
    cdef Py_ssize_t tb_max = steps_per_block(j1 - j0, T), cols = tb_max * ms
    cdef Py_ssize_t t0, tb, bc, tt, i, j
    cdef floating* ws = <floating*>malloc(((n_x + 6 * n_a + n_y) * cols + 2 * n_a * ms)
                                          * sizeof(floating) + 1)
    if ws == NULL:
        return -1
    # one block of steps, time-major (rows × tb × ms): inputs Xb, gates Gb, states
    # Ab, cell states Cb, predictions Yb; and the states carried between blocks
    cdef floating* Xb = ws
    cdef floating* Gb = Xb + n_x * cols
    cdef floating* Ab = Gb + 4 * n_a * cols
    cdef floating* Cb = Ab + n_a * cols
    cdef floating* Yb = Cb + n_a * cols
    cdef floating* a_state = Yb + n_y * cols
    cdef floating* c_state = a_state + n_a * ms
    for i in range(n_a):
        memcpy(a_state + i * ms, a0 + i * m + j0, ms * sizeof(floating))
        if c0 != NULL:
            memcpy(c_state + i * ms, c0 + i * m + j0, ms * sizeof(floating))
    t0 = 0
    while t0 < T:
        tb = min(tb_max, T - t0)
        bc = tb * ms
        gather_time_major(n_x, ms, tb, x + j0 * sx1 + t0 * sx2, sx0, sx1, sx2, Xb)
        # Gb = W[:, n_a:] @ Xb (the block's steps in one GEMM), then step by step
        # Gb[:, tt] += W[:, :n_a] @ a_prev and the fused gate pass
        gemm(False, False, 4 * n_a, bc, n_x, <floating>1, W + n_a, width, Xb, bc,
             <floating>0, Gb, bc)
        for tt in range(tb):
            gemm(False, False, 4 * n_a, ms, n_a, <floating>1, W, width,
                 a_state if tt == 0 else Ab + (tt - 1) * ms, ms if tt == 0 else bc,
                 <floating>1, Gb + tt * ms, bc)
            lstm_forward_step(n_a, ms, Gb + tt * ms, bc, n_a * bc, b,
                              (c_state if (t0 > 0 or c0 != NULL) else <floating*>NULL)
                              if tt == 0 else Cb + (tt - 1) * ms, ms if tt == 0 else bc,
                              Cb + tt * ms, bc, Ab + tt * ms, bc)
        # Yb = softmax(Wy @ Ab + by)
        gemm(False, False, n_y, bc, n_a, <floating>1, Wy, n_a, Ab, bc, <floating>0, Yb, bc)
        softmax_columns(n_y, bc, Yb, bc, by)
        for i in range(n_a):
            for tt in range(tb):
                for j in range(ms):
                    a_out[(i * m + j0 + j) * T + t0 + tt] = Ab[i * bc + tt * ms + j]
                    c_out[(i * m + j0 + j) * T + t0 + tt] = Cb[i * bc + tt * ms + j]
        for i in range(n_y):
            for tt in range(tb):
                for j in range(ms):
                    y_out[(i * m + j0 + j) * T + t0 + tt] = Yb[i * bc + tt * ms + j]
        if G_tm != NULL:
            for i in range(4 * n_a):
                for tt in range(tb):
                    memcpy(G_tm + i * Tm + (t0 + tt) * m + j0, Gb + i * bc + tt * ms,
                           ms * sizeof(floating))
        for i in range(n_a):
            if A_tm != NULL:
                for tt in range(tb):
                    memcpy(A_tm + i * Tm + (t0 + tt) * m + j0, Ab + i * bc + tt * ms,
                           ms * sizeof(floating))
                    memcpy(C_tm + i * Tm + (t0 + tt) * m + j0, Cb + i * bc + tt * ms,
                           ms * sizeof(floating))
            memcpy(a_state + i * ms, Ab + i * bc + (tb - 1) * ms, ms * sizeof(floating))
            memcpy(c_state + i * ms, Cb + i * bc + (tb - 1) * ms, ms * sizeof(floating))
        t0 += tb
    free(ws)
    return 0


cdef int _chunks(floating dummy, cnp.ndarray x, cnp.ndarray a0, object c0, cnp.ndarray W,
                 cnp.ndarray b, cnp.ndarray Wy, cnp.ndarray by, cnp.ndarray a, cnp.ndarray c,
                 cnp.ndarray y, object G, object A, object C, Py_ssize_t chunk,
                 Py_ssize_t first, Py_ssize_t last) except -1:
    cdef Py_ssize_t n_x = x.shape[0], m = x.shape[1], T = x.shape[2], n_a = a0.shape[0]
    cdef Py_ssize_t n_y = Wy.shape[0], k, status = 0
    cdef floating* pc0 = NULL if c0 is None else <floating*>cnp.PyArray_DATA(c0)
    cdef floating* pG = NULL if G is None else <floating*>cnp.PyArray_DATA(G)
    cdef floating* pA = NULL if A is None else <floating*>cnp.PyArray_DATA(A)
    cdef floating* pC = NULL if C is None else <floating*>cnp.PyArray_DATA(C)
    cdef floating* px = <floating*>cnp.PyArray_DATA(x)
    cdef Py_ssize_t sx0 = elem_stride(x, 0), sx1 = elem_stride(x, 1), sx2 = elem_stride(x, 2)
    cdef unsigned int csr
    with nogil:
        csr = cyrnn_ftz_begin()
        for k in range(first, last):
            if _chunk_forward(px, sx0, sx1, sx2, <floating*>cnp.PyArray_DATA(a0), pc0,
                              <floating*>cnp.PyArray_DATA(W), <floating*>cnp.PyArray_DATA(b),
                              <floating*>cnp.PyArray_DATA(Wy), <floating*>cnp.PyArray_DATA(by),
                              <floating*>cnp.PyArray_DATA(a), <floating*>cnp.PyArray_DATA(c),
                              <floating*>cnp.PyArray_DATA(y), pG, pA, pC,
                              n_x, n_a, n_y, m, T, k * chunk, min(m, (k + 1) * chunk)) != 0:
                status = -1
                break
        cyrnn_ftz_end(csr)
    if status != 0:
        raise MemoryError("could not allocate the per-thread workspace")
    return 0


def forward_chunks(x, a0, c0, W, b, Wy, by, a, c, y, G, A, C, Py_ssize_t chunk,
                   Py_ssize_t first, Py_ssize_t last):
    """Run batch chunks first..last-1 (columns [k·chunk, (k+1)·chunk)) of the LSTM
    over all steps, writing a, c, y (n, m, T) and, unless None, the time-major
    cache buffers G, A, C. Releases the GIL throughout; safe to run disjoint
    chunk ranges from several threads at once."""
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        _chunks[float](0, x, a0, c0, W, b, Wy, by, a, c, y, G, A, C, chunk, first, last)
    else:
        _chunks[double](0, x, a0, c0, W, b, Wy, by, a, c, y, G, A, C, chunk, first, last)


# ------------------------------------------------------------------ public functions
# As in _rnn.pyx: the fast path, else cyrnn/_checked.py.

def lstm_cell_forward(xt, a_prev, c_prev, parameters):
    """One LSTM step.

    Parameters
    ----------
    xt : array, shape (n_x, m)
    a_prev, c_prev : array, shape (n_a, m)
        Hidden and cell state of the previous step.
    parameters : dict
        ``Wf, Wi, Wc, Wo`` (n_a, n_a + n_x) acting on ``concat = [a_prev; xt]``,
        ``bf, bi, bc, bo`` (n_a, 1), ``Wy`` (n_y, n_a), ``by`` (n_y, 1).
        Other keys are ignored.

    Returns
    -------
    a_next, c_next : ndarray, shape (n_a, m)
    yt_pred : ndarray, shape (n_y, m)
    cache : tuple
        ``(a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)``.
    """
    out = fast_cell_forward(xt, a_prev, c_prev, parameters)
    if out is None:
        from cyrnn import _checked
        return _checked.lstm_cell_forward(xt, a_prev, c_prev, parameters)
    a_next, c_next, yt_pred, (ft, it, cct, ot) = out
    return a_next, c_next, yt_pred, (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt,
                                     parameters)


def lstm_forward(x, a0, parameters, *, c0=None, cache=True, n_threads=1):
    """The LSTM over all time steps.

    Parameters
    ----------
    x : array, shape (n_x, m, T_x)
        Inputs, time last (any memory layout, see `rnn_forward`).
    a0 : array, shape (n_a, m)
        Initial hidden state.
    parameters : dict
        As for `lstm_cell_forward`.
    c0 : array, shape (n_a, m), optional, keyword-only
        Initial cell state; zeros (the notebook's choice) when omitted.
    cache : bool, keyword-only
        False for inference: no caches (``None`` in their place), nothing
        allocated beyond the outputs and an O((n_x + 6·n_a + n_y)·block)
        workspace per thread.
    n_threads : int or None, keyword-only
        Split the batch over this many native threads (None: all cores); results
        do not depend on it (see `rnn_forward`).

    Returns
    -------
    a : ndarray, shape (n_a, m, T_x)
        Hidden states of every step.
    y : ndarray, shape (n_y, m, T_x)
        Predictions of every step.
    c : ndarray, shape (n_a, m, T_x)
        Cell states of every step.
    caches : tuple or None
        ``(steps, x)``; ``steps[t]`` is step t's 10-tuple as from
        `lstm_cell_forward`, made on access (see `LSTMStepCaches`). None when
        ``cache=False``.
    """
    if cache is True and n_threads == 1:
        out = fast_forward(x, a0, parameters, c0)
        if out is not None:
            return out
    from cyrnn import _checked
    return _checked.lstm_forward(x, a0, parameters, c0=c0, cache=cache, n_threads=n_threads)


def lstm_cell_backward(da_next, dc_next, cache):
    """Backward pass of one LSTM step (without the output layer).

    Parameters
    ----------
    da_next, dc_next : array, shape (n_a, m)
        Gradients of the loss with respect to this step's hidden and cell state.
    cache : tuple
        The 10-tuple from `lstm_cell_forward`.

    Returns
    -------
    dict
        ``dxt`` (n_x, m), ``da_prev``, ``dc_prev`` (n_a, m), ``dWf, dWi, dWc,
        dWo`` (n_a, n_a + n_x), ``dbf, dbi, dbc, dbo`` (n_a, 1).
    """
    grads = fast_cell_backward(da_next, dc_next, cache)
    if grads is None:
        from cyrnn import _checked
        return _checked.lstm_cell_backward(da_next, dc_next, cache)
    return grads


def lstm_backward(da, caches):
    """Backpropagation through time for the LSTM.

    Parameters
    ----------
    da : array, shape (n_a, m, T)
        Upstream gradients of the hidden states. T may be smaller than the
        number of forward steps; then steps ``0 .. T-1`` are used.
    caches : tuple
        ``(steps, x)`` from `lstm_forward` (cyrnn's or `cyrnn.reference`'s).

    Returns
    -------
    dict
        ``dx`` (n_x, m, T), ``da0`` (n_a, m), ``dWf, dWi, dWc, dWo``
        (n_a, n_a + n_x), ``dbf, dbi, dbc, dbo`` (n_a, 1).
    """
    grads = fast_backward(da, caches)
    if grads is None:
        from cyrnn import _checked
        return _checked.lstm_backward(da, caches)
    return grads
