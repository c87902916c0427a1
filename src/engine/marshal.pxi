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
    cdef int x_weight, a_weight, first_bias     # weights apart (not on concat): their indices
    # the same as C arrays: per gate row block, its key (the hidden-state one
    # of a pair) and the pair's input key (-1: none); the biases' keys; the
    # step cache's gates' G blocks
    cdef int weight_key[4]
    cdef int weight_pair[4]
    cdef int bias_key[4]
    cdef int gate_block[4]
    cdef int n_gate_cache

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
        self.first_bias = self.bias_index[0]
        assert len(self.weight_index) <= 4 and len(self.bias_index) <= 4
        for q, e in enumerate(self.weight_index):
            self.weight_key[q], self.weight_pair[q] = e[0], (e[1] if len(e) > 1 else -1)
        for q, k in enumerate(self.bias_index):
            self.bias_key[q] = k
        self.n_gate_cache = len(self.gate_blocks)
        for q, k in enumerate(self.gate_blocks):
            self.gate_block[q] = k
        if not cell.weights_on_concat:
            (self.x_weight,), (self.a_weight,) = self.weight_index
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
        item = PyDict_GetItemWithError(<dict>parameters, info.keys[q])
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
    cdef int q
    cdef char* start
    for q in range(info.spec.gates):
        if info.weight_pair[q] >= 0:
            return False
    start = <char*>cnp.PyArray_DATA(<cnp.ndarray>params[info.weight_key[0]])
    for q in range(1, info.spec.gates):
        if <char*>cnp.PyArray_DATA(<cnp.ndarray>params[info.weight_key[q]]) != \
                start + q * n_a * width * item:
            return False
    return True


cdef char* carve(size_t nbytes, char** scratch, size_t* left) noexcept:
    """nbytes of the caller's scratch (moved past them), or NULL when they do not fit."""
    cdef char* p = scratch[0]
    nbytes = (nbytes + 63) & ~(<size_t>63)
    if p == NULL or nbytes > left[0]:
        return NULL
    scratch[0] += nbytes
    left[0] -= nbytes
    return p


cdef object gate_weights(CellInfo info, list params, int tn, Py_ssize_t n_x, Py_ssize_t n_a,
                         bint stack, GateWeights* w, const void** bias, char* scratch=NULL,
                         size_t scratch_bytes=0):
    """Fill w and (unless `bias` is NULL) bias[0], the stacked gate bias, from
    the parameters; return what must stay alive while they are read (None, or
    the arrays of the copies made).

    Weights on [a_prev; x] are stacked into one (gates·n_a, n_a + n_x) matrix
    when `stack`, else used in place as one row block per gate (a gate given
    as two matrices, hidden-state and input, is read from both). Copies go to
    `scratch` (scratch_bytes long, element-aligned: a cell call's stack) while
    they fit, else to new arrays."""
    cdef Py_ssize_t width = n_a + n_x, gates = info.spec.gates, i
    cdef int q
    cdef size_t item = 4 if tn == cnp.NPY_FLOAT else 8
    cdef cnp.ndarray W
    cdef char* row
    cdef char* Wa
    cdef char* Wx
    cdef char* b
    keep = None
    w.on_concat = info.weights_on_concat
    if not info.weights_on_concat:
        w.blocks, w.block_rows = 1, gates * n_a
        w.Wx[0], w.ldwx[0] = data(params[info.x_weight]), n_x
        w.Wa[0], w.ldwa[0] = data(params[info.a_weight]), n_a
        if bias != NULL:
            bias[0] = data(params[info.first_bias])
        return None
    if bias != NULL:
        b = carve(info.spec.bias_blocks * n_a * item, &scratch, &scratch_bytes)
        if b == NULL:
            keep = new_array(tn, info.spec.bias_blocks * n_a, 1)
            b = <char*>cnp.PyArray_DATA(<cnp.ndarray>keep)
        for q in range(info.spec.bias_blocks):
            memcpy(b + q * n_a * item,
                   cnp.PyArray_DATA(<cnp.ndarray>params[info.bias_key[q]]), n_a * item)
        bias[0] = b
    if not stack:
        # one row block per gate, read in place
        w.blocks, w.block_rows = gates, n_a
        for q in range(gates):
            if info.weight_pair[q] < 0:
                w.Wa[q] = cnp.PyArray_DATA(<cnp.ndarray>params[info.weight_key[q]])
                w.Wx[q] = <char*>w.Wa[q] + n_a * item
                w.ldwx[q] = w.ldwa[q] = width
            else:
                w.Wa[q], w.ldwa[q] = data(params[info.weight_key[q]]), n_a
                w.Wx[q], w.ldwx[q] = data(params[info.weight_pair[q]]), n_x
        return keep
    w.blocks, w.block_rows = 1, gates * n_a
    w.ldwx[0] = w.ldwa[0] = width
    if already_stacked(info, params, n_a, width, item):
        # the gates' weights are consecutive row blocks of one matrix
        # (cyrnn.prepare, a Model): read them there, no copy per call
        w.Wa[0] = cnp.PyArray_DATA(<cnp.ndarray>params[info.weight_key[0]])
        w.Wx[0] = <char*>w.Wa[0] + n_a * item
        return keep
    global stacking_copies
    stacking_copies += 1
    row = carve(gates * n_a * width * item, &scratch, &scratch_bytes)
    if row == NULL:
        W = new_array(tn, gates * n_a, width)
        row = <char*>cnp.PyArray_DATA(W)
        keep = W if keep is None else (W, keep)
    w.Wa[0] = row
    w.Wx[0] = row + n_a * item
    for q in range(gates):
        if info.weight_pair[q] < 0:
            memcpy(row, cnp.PyArray_DATA(<cnp.ndarray>params[info.weight_key[q]]),
                   n_a * width * item)
        else:
            # [Wa | Wx], row by row
            Wa = <char*>cnp.PyArray_DATA(<cnp.ndarray>params[info.weight_key[q]])
            Wx = <char*>cnp.PyArray_DATA(<cnp.ndarray>params[info.weight_pair[q]])
            for i in range(n_a):
                memcpy(row + i * width * item, Wa + i * n_a * item, n_a * item)
                memcpy(row + (i * width + n_a) * item, Wx + i * n_x * item, n_x * item)
        row += n_a * width * item
    return keep
