# ------------------------------------------------------------------ cells and parameters, as the engine reads them

cdef enum:
    MAX_KEYS = 16
    # The cell functions stack per-gate weights into one matrix (one GEMM)
    # only while that copy is cheap; above this many elements they run one GEMM
    # per gate on the caller's matrices.
    STACK_LIMIT = 65536


# The schema's dimension codes (cyrnn/_cells.py), as C constants.
cdef enum:
    DIM_ONE = 0
    DIM_N_X = 1
    DIM_N_A = 2
    DIM_N_Y = 3
    DIM_N_A_PLUS_N_X = 4


cdef class CellInfo:
    """A cell description of cyrnn/_cells.py in the form the fast paths read
    (C fields: no Python attribute lookups per call)."""
    cdef CellSpec spec
    cdef readonly object cell
    cdef tuple keys
    cdef int rows[MAX_KEYS]
    cdef int cols[MAX_KEYS]
    cdef bint for_backward[MAX_KEYS]     # the gate weights: all backward reads
    cdef int n_keys, wy_index, by_index
    cdef tuple weight_index, bias_index
    cdef object caches_type
    cdef bint weights_on_concat
    # positions in a step cache tuple (-1: none)
    cdef Py_ssize_t n_entries, i_a_next, i_c_next, i_a_prev, i_c_prev, i_xt, i_parameters
    cdef tuple i_gates          # positions of the step cache's gates
    cdef tuple gate_blocks      # G's block of each of them
    cdef int extra_block        # G's block the step cache does not hold (-1: none)
    cdef tuple dW_keys, db_keys
    cdef tuple stack            # per gate row block: (key,) or (hidden-state key, input key)

    def __init__(self, cell):
        self.cell = cell
        self.spec = cell_spec(cell.kind)
        assert self.spec.gates == cell.gates and self.spec.has_c == cell.has_c
        assert self.spec.blocks == len(cell.blocks) and self.spec.bias_blocks == len(
            cell.gate_biases)
        assert (_cells.ONE, _cells.N_X, _cells.N_A, _cells.N_Y, _cells.N_A_PLUS_N_X) == (
            DIM_ONE, DIM_N_X, DIM_N_A, DIM_N_Y, DIM_N_A_PLUS_N_X)
        self.weights_on_concat = cell.weights_on_concat
        names = cell.step_cache
        self.n_entries = len(names)

        def at(name):
            return names.index(name) if name in names else -1

        self.i_a_next, self.i_c_next = at("a_next"), at("c_next")
        self.i_a_prev, self.i_c_prev = at("a_prev"), at("c_prev")
        self.i_xt, self.i_parameters = at("xt"), at("parameters")
        self.i_gates = tuple(at(g) for g in cell.gate_cache)
        self.gate_blocks = tuple(cell.blocks.index(g) for g in cell.gate_cache)
        extra = [q for q in range(len(cell.blocks)) if q not in self.gate_blocks]
        self.extra_block = extra[0] if extra and not self.spec.gates_are_state else -1
        self.dW_keys, self.db_keys = cell.gradient_keys
        self.keys = tuple(entry[0] for entry in cell.parameters)
        self.n_keys = len(self.keys)
        assert self.n_keys <= MAX_KEYS
        for q, (key, rows, cols, _) in enumerate(cell.parameters):
            self.rows[q], self.cols[q] = rows, cols
            self.for_backward[q] = key in cell.backward_keys
        self.stack = tuple((e,) if isinstance(e, str) else tuple(e) for e in cell.gate_weights)
        self.weight_index = tuple(tuple(self.keys.index(k) for k in e) for e in self.stack)
        self.bias_index = tuple(self.keys.index(k) for k in cell.gate_biases)
        self.wy_index, self.by_index = self.keys.index(cell.head[0]), self.keys.index(cell.head[1])


cdef list fast_parameters(CellInfo info, object parameters, int tn, Py_ssize_t n_x,
                          Py_ssize_t n_a, bint backward=False):
    """The parameters in schema order when every one is kernel-ready, else None
    (then cyrnn/_validation.py checks them with the same schema). `backward`:
    only the gate weights (None in the other places), as the validating path
    checks for the backward functions."""
    if type(parameters) is not dict:
        return None
    cdef Py_ssize_t dims[5]
    dims[DIM_ONE], dims[DIM_N_X], dims[DIM_N_A] = 1, n_x, n_a
    dims[DIM_N_Y], dims[DIM_N_A_PLUS_N_X] = -1, n_a + n_x
    cdef list out = [None] * info.n_keys
    cdef PyObject* item
    cdef int q
    for q in range(info.n_keys):
        if backward and not info.for_backward[q]:
            continue
        item = PyDict_GetItem(<dict>parameters, info.keys[q])
        if item == NULL or not ready(<object>item, tn, 2, dims[info.rows[q]],
                                     dims[info.cols[q]]):
            return None
        if dims[info.rows[q]] < 0:
            dims[info.rows[q]] = cnp.PyArray_DIMS(<cnp.ndarray>item)[0]
        out[q] = <object>item
    return out


cdef list validated_parameters(CellInfo info, dict p):
    """The checked parameters in schema order (None for keys not checked)."""
    return [p.get(key) for key in info.keys]


cdef inline bint strided_ready(object obj, int tn, int ndim) noexcept:
    """obj is an exact ndarray of tn with ndim dims and element-aligned strides."""
    if type(obj) is not cnp.ndarray:
        return False
    cdef cnp.ndarray a = <cnp.ndarray>obj
    if cnp.PyArray_TYPE(a) != tn or cnp.PyArray_NDIM(a) != ndim or not cnp.PyArray_ISALIGNED(a):
        return False
    cdef int k
    for k in range(ndim):
        if cnp.PyArray_STRIDES(a)[k] % cnp.PyArray_ITEMSIZE(a) != 0:
            return False
    return True


cdef enum:
    # SciPy's cython_blas takes 32-bit sizes (cyrnn/_validation.py BLAS_INT_MAX)
    C_BLAS_INT_MAX = 2147483647


cdef inline bint blas_sizes_fit(Py_ssize_t columns, Py_ssize_t rows, Py_ssize_t n_y) noexcept:
    return columns <= C_BLAS_INT_MAX and rows <= C_BLAS_INT_MAX and n_y <= C_BLAS_INT_MAX


cdef inline const void* data(object a):
    return NULL if a is None else <const void*>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef bint already_stacked(CellInfo info, list params, Py_ssize_t n_a, Py_ssize_t width,
                          size_t item):
    """Whether every gate's weights are one (n_a, width) C-contiguous array (as
    the kernel-ready checks guarantee) and gate q's starts where gate q-1's ends:
    then together they are the stacked (gates·n_a, width) matrix, every byte of
    it inside one of the arrays."""
    cdef Py_ssize_t q
    cdef char* start
    for q in range(info.spec.gates):
        if len(info.weight_index[q]) != 1:
            return False
    start = <char*>cnp.PyArray_DATA(<cnp.ndarray>params[info.weight_index[0][0]])
    for q in range(1, info.spec.gates):
        if <char*>cnp.PyArray_DATA(<cnp.ndarray>params[info.weight_index[q][0]]) != \
                start + q * n_a * width * item:
            return False
    return True


cdef tuple gate_weights(CellInfo info, list params, int tn, Py_ssize_t n_x, Py_ssize_t n_a,
                        bint stack, GateWeights* w, bint need_bias=True):
    """Fill w from the parameters; return (keep-alive objects, stacked bias b
    (None unless need_bias)).

    Weights on [a_prev; x] are stacked into one (gates·n_a, n_a + n_x) matrix
    when `stack`, else used in place as one row block per gate (a gate given
    as two matrices, hidden-state and input, is read from both)."""
    cdef Py_ssize_t width = n_a + n_x, gates = info.spec.gates, q, i
    cdef size_t item = 4 if tn == cnp.NPY_FLOAT else 8
    cdef cnp.ndarray W, b, Wq, Wa, Wx
    cdef char* row
    w.on_concat = info.weights_on_concat
    if not info.weights_on_concat:
        (ix,), (ia,) = info.weight_index
        Wx, Wa = params[ix], params[ia]
        w.blocks, w.block_rows = 1, gates * n_a
        w.Wx[0], w.ldwx[0], w.Wa[0], w.ldwa[0] = data(Wx), n_x, data(Wa), n_a
        return (), params[info.bias_index[0]]
    b = None
    if need_bias:
        b = new_array(tn, info.spec.bias_blocks * n_a, 1)
        for q in range(info.spec.bias_blocks):
            memcpy(<char*>cnp.PyArray_DATA(b) + q * n_a * item,
                   cnp.PyArray_DATA(<cnp.ndarray>params[info.bias_index[q]]), n_a * item)
    if stack and already_stacked(info, params, n_a, width, item):
        # the gates' weights are consecutive row blocks of one matrix
        # (cyrnn.prepare, a Model): read them there, no copy per call
        w.blocks, w.block_rows = 1, gates * n_a
        W = params[info.weight_index[0][0]]
        w.Wa[0] = cnp.PyArray_DATA(W)
        w.Wx[0] = <char*>cnp.PyArray_DATA(W) + n_a * item
        w.ldwx[0] = w.ldwa[0] = width
        return tuple(params[e[0]] for e in info.weight_index), b
    if stack:
        global stacking_copies
        stacking_copies += 1
        W = new_array(tn, gates * n_a, width)
        for q in range(gates):
            row = <char*>cnp.PyArray_DATA(W) + q * n_a * width * item
            if len(info.weight_index[q]) == 1:
                memcpy(row, cnp.PyArray_DATA(<cnp.ndarray>params[info.weight_index[q][0]]),
                       n_a * width * item)
            else:
                # [Wa | Wx], row by row
                Wa = params[info.weight_index[q][0]]
                Wx = params[info.weight_index[q][1]]
                for i in range(n_a):
                    memcpy(row + i * width * item, <char*>cnp.PyArray_DATA(Wa) + i * n_a * item,
                           n_a * item)
                    memcpy(row + (i * width + n_a) * item,
                           <char*>cnp.PyArray_DATA(Wx) + i * n_x * item, n_x * item)
        w.blocks, w.block_rows = 1, gates * n_a
        w.Wa[0] = cnp.PyArray_DATA(W)
        w.Wx[0] = <char*>cnp.PyArray_DATA(W) + n_a * item
        w.ldwx[0] = w.ldwa[0] = width
        return (W,), b
    w.blocks, w.block_rows = gates, n_a
    for q in range(gates):
        if len(info.weight_index[q]) == 1:
            Wq = params[info.weight_index[q][0]]
            w.Wa[q] = cnp.PyArray_DATA(Wq)
            w.Wx[q] = <char*>cnp.PyArray_DATA(Wq) + n_a * item
            w.ldwx[q] = w.ldwa[q] = width
        else:
            w.Wa[q], w.ldwa[q] = data(params[info.weight_index[q][0]]), n_a
            w.Wx[q], w.ldwx[q] = data(params[info.weight_index[q][1]]), n_x
    return tuple(params[k] for e in info.weight_index for k in e), b
