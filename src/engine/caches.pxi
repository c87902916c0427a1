# ------------------------------------------------------------------ caches

cdef object _check_cache_array(str owner, str name, object value, int tn, int ndim,
                               tuple dims, tuple symbols):
    """A read-only view of value after checking it is a C-contiguous array of
    dtype tn and shape dims (-1: any), else ValueError/TypeError naming it."""
    where = f"{owner}.{name}"
    if type(value) is not cnp.ndarray:
        raise TypeError(f"{where} must be a NumPy array; got {type(value).__name__}")
    cdef cnp.ndarray a = <cnp.ndarray>value
    if tn < 0:
        if cnp.PyArray_TYPE(a) not in (cnp.NPY_FLOAT, cnp.NPY_DOUBLE):
            raise TypeError(f"{where} has dtype {a.dtype}; expected float32 or float64")
        tn = cnp.PyArray_TYPE(a)
    if cnp.PyArray_TYPE(a) != tn:
        raise TypeError(f"{where} has dtype {a.dtype}; expected "
                        f"{'float32' if tn == cnp.NPY_FLOAT else 'float64'} like the other buffers")
    shape = value.shape
    if len(shape) != ndim or any(d >= 0 and d != s for d, s in zip(dims, shape)):
        want = ", ".join("any" if d < 0 else str(d) for d in dims)
        raise ValueError(f"{where} has shape {shape}; expected ({', '.join(symbols)}) = "
                         f"({want})")
    if not cnp.PyArray_ISCARRAY_RO(a):
        raise ValueError(f"{where} must be C-contiguous and aligned")
    view = a.view()
    view.flags.writeable = False
    return view


cdef class StepCaches:
    """The stacked time-major buffers of one forward pass, read as the sequence
    of per-step cache tuples the notebook's cell functions build (each made when
    it is read). Every buffer is checked when the object is made and held as a
    read-only view; the weights are read from `parameters` when backward runs
    (the notebook's and cyrnn.reference's rule: the cache holds the dict).

    With `lengths` (docs/contract.md §6) the buffers are packed, (rows, sum of lengths):
    see cyrnn/_packing.py; a step's tuple then holds zeros for the columns
    that do not run at that step."""
    cdef readonly object A, C, G, a0, c0, X, x, parameters, lengths
    cdef readonly Py_ssize_t T
    cdef bint valid
    cdef object _zeros
    cdef object packing     # cyrnn._packing.Packing, or None

    cdef CellInfo info(self):
        raise NotImplementedError

    cdef void trusted(self, A, C, G, a0, c0, X, x, parameters, lengths=None, packing=None):
        """Fill from the engine's own (already read-only) buffers, unchecked.
        (lengths without packing: every column runs every step.)"""
        self.A, self.C, self.G, self.a0, self.c0 = A, C, G, a0, c0
        self.X, self.x, self.parameters = X, x, parameters
        self.lengths, self.packing = lengths, packing
        self.T = (<cnp.ndarray>A).shape[1] if packing is None else packing.active.shape[0]
        self.valid = True

    cdef void checked(self, A, C, G, a0, c0, X, x, parameters, lengths=None) except *:
        cdef CellInfo info = self.info()
        owner = type(self).__name__
        a0 = _check_cache_array(owner, "a0", a0, -1, 2, (-1, -1), ("n_a", "m"))
        cdef int tn = cnp.PyArray_TYPE(<cnp.ndarray>a0)
        n_a, m = a0.shape
        x = _validation.as_array(f"{owner}.x", x)
        _validation.check_ndim(f"{owner}.x", x, ("n_x", "m", "T"))
        T = x.shape[2]
        packing = None
        dims, symbols = (T, m), ("T", "m")
        if lengths is not None:
            lengths = _validation.check_lengths(lengths, m, T)
            lengths.flags.writeable = False
            if not (lengths == T).all():    # (as the engine: else unpacked)
                packing = _packing.packing(lengths, T)
                dims, symbols = (packing.columns,), ("sum(lengths)",)
        A = _check_cache_array(owner, "A", A, tn, 1 + len(dims), (n_a,) + dims,
                               ("n_a",) + symbols)
        if info.spec.gates_are_state:
            G = A
        else:
            G = _check_cache_array(owner, "G", G, tn, 1 + len(dims),
                                   (info.spec.blocks * n_a,) + dims,
                                   (f"{info.spec.blocks}·n_a",) + symbols)
        if info.spec.has_c:
            C = _check_cache_array(owner, "C", C, tn, 1 + len(dims), (n_a,) + dims,
                                   ("n_a",) + symbols)
            if c0 is not None:
                c0 = _check_cache_array(owner, "c0", c0, tn, 2, (n_a, m), ("n_a", "m"))
        X = _check_cache_array(owner, "X", X, tn, 1 + len(dims), (-1,) + dims,
                               ("n_x",) + symbols)
        _validation.check_shape(f"{owner}.x", x, ("n_x", "m", "T"), (X.shape[0], m, T))
        self.trusted(A, C, G, a0, c0, X, x, parameters, lengths, packing)

    cdef object state(self, buffer, Py_ssize_t t, Py_ssize_t r0, Py_ssize_t r1):
        """Rows r0..r1-1 of a buffer at step t, (rows, m): zeros for the columns
        that do not run then."""
        if self.packing is None:
            return buffer[r0:r1, t, :]
        p = self.packing
        cdef Py_ssize_t o = p.offsets[t], n = p.active[t]
        out = np.zeros((r1 - r0, p.order.shape[0]), buffer.dtype)
        out[:, p.order[:n]] = buffer[r0:r1, o:o + n]
        out.flags.writeable = False
        return out

    cdef object input_at(self, Py_ssize_t t):
        """xt of step t (packed: zeros for the columns that do not run)."""
        if self.packing is None:
            return self.x[:, :, t]
        return self.state(self.X, t, 0, self.X.shape[0])

    cdef tuple reduce_args(self, tuple args):
        return args if self.lengths is None else args + (self.lengths,)

    def __len__(self):
        return self.T

    def __getitem__(self, index):
        if not self.valid:
            raise ValueError(f"this {type(self).__name__} was not initialised")
        if isinstance(index, slice):
            return [self.step(t) for t in range(*index.indices(self.T))]
        cdef Py_ssize_t t = index
        if t < 0:
            t += self.T
        if not 0 <= t < self.T:
            raise IndexError(f"step {index} out of range for {self.T} steps")
        return self.step(t)

    cdef tuple step(self, Py_ssize_t t):
        raise NotImplementedError

    def initial_cell_state(self):
        """c0, or (made once) a read-only zeros array when the forward started at 0."""
        if self.c0 is not None:
            return self.c0
        if self._zeros is None:
            self._zeros = np.zeros(self.a0.shape, self.a0.dtype)
            self._zeros.flags.writeable = False
        return self._zeros

    def __repr__(self):
        return f"<{type(self).__name__}: {self.T} steps>"


cdef class RNNStepCaches(StepCaches):
    """Step t is (a_next, a_prev, xt, parameters), as from rnn_cell_forward.

    RNNStepCaches(A, a0, X, x, parameters, lengths=None): A (n_a, T, m) and X
    (n_x, T, m) time-major (packed with lengths), a0 (n_a, m), x (n_x, m, T)
    as given to rnn_forward."""

    def __init__(self, A, a0, X, x, parameters, lengths=None):
        self.checked(A, None, None, a0, None, X, x, parameters, lengths)

    cdef CellInfo info(self):
        return RNN_INFO

    cdef tuple step(self, Py_ssize_t t):
        cdef Py_ssize_t n_a = self.A.shape[0]
        a_prev = self.a0 if t == 0 else self.state(self.A, t - 1, 0, n_a)
        return (self.state(self.A, t, 0, n_a), a_prev, self.input_at(t), self.parameters)

    def __reduce__(self):
        return type(self), self.reduce_args((self.A, self.a0, self.X, self.x, self.parameters))


cdef class LSTMStepCaches(StepCaches):
    """Step t is (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt,
    parameters), as from lstm_cell_forward.

    LSTMStepCaches(A, C, G, a0, c0, X, x, parameters, lengths=None): A, C
    (n_a, T, m), the activated gates G (4·n_a, T, m) in the order f, i, c~, o,
    X (n_x, T, m), all time-major (packed with lengths); a0, c0 (n_a, m) (c0
    None: zeros); x as given."""

    def __init__(self, A, C, G, a0, c0, X, x, parameters, lengths=None):
        self.checked(A, C, G, a0, c0, X, x, parameters, lengths)

    cdef CellInfo info(self):
        return LSTM_INFO

    cdef tuple step(self, Py_ssize_t t):
        cdef Py_ssize_t n_a = self.A.shape[0]
        G = self.G
        if t == 0:
            a_prev, c_prev = self.a0, self.initial_cell_state()
        else:
            a_prev = self.state(self.A, t - 1, 0, n_a)
            c_prev = self.state(self.C, t - 1, 0, n_a)
        return (self.state(self.A, t, 0, n_a), self.state(self.C, t, 0, n_a), a_prev, c_prev,
                self.state(G, t, 0, n_a), self.state(G, t, n_a, 2 * n_a),
                self.state(G, t, 2 * n_a, 3 * n_a), self.state(G, t, 3 * n_a, 4 * n_a),
                self.input_at(t), self.parameters)

    def __reduce__(self):
        return type(self), self.reduce_args((self.A, self.C, self.G, self.a0, self.c0, self.X,
                                             self.x, self.parameters))


cdef class GRUStepCaches(StepCaches):
    """Step t is (a_next, a_prev, rt, ut, cct, xt, parameters), as from
    gru_cell_forward.

    GRUStepCaches(A, G, a0, X, x, parameters, lengths=None): A (n_a, T, m) and
    X (n_x, T, m) time-major (packed with lengths), G (4·n_a, T, m) the
    engine's gate buffer: Γr, Γu, then hc = Wca·a_prev + bca, c~ (reset-after)
    or c~, Γr·a_prev (reset-before), the variant being the one the keys of
    `parameters` choose; a0 (n_a, m), x as given to gru_forward."""
    cdef CellInfo variant

    def __init__(self, A, G, a0, X, x, parameters, lengths=None):
        self.variant = gru_info(parameters)
        self.checked(A, None, G, a0, None, X, x, parameters, lengths)

    cdef CellInfo info(self):
        return self.variant

    cdef tuple step(self, Py_ssize_t t):
        cdef Py_ssize_t n_a = self.A.shape[0]
        a_prev = self.a0 if t == 0 else self.state(self.A, t - 1, 0, n_a)
        r, u, c = [self.state(self.G, t, q * n_a, (q + 1) * n_a)
                   for q in self.variant.gate_blocks]
        return (self.state(self.A, t, 0, n_a), a_prev, r, u, c, self.input_at(t),
                self.parameters)

    def __reduce__(self):
        return type(self), self.reduce_args((self.A, self.G, self.a0, self.X, self.x,
                                             self.parameters))


Sequence.register(StepCaches)


cdef StepCaches new_step_caches(CellInfo info):
    """An empty caches object of the cell's type (tp_new directly: no lookup)."""
    cdef GRUStepCaches gru
    if info.spec.kind == CELL_LSTM:
        return LSTMStepCaches.__new__(LSTMStepCaches)
    if info.spec.kind == CELL_GRU or info.spec.kind == CELL_GRU_RESET_BEFORE:
        gru = GRUStepCaches.__new__(GRUStepCaches)
        gru.variant = info
        return gru
    return RNNStepCaches.__new__(RNNStepCaches)

cdef CellInfo RNN_INFO = CellInfo(_cells.RNN)
cdef CellInfo LSTM_INFO = CellInfo(_cells.LSTM)
cdef CellInfo GRU_INFO = CellInfo(_cells.GRU)
cdef CellInfo GRU_RESET_BEFORE_INFO = CellInfo(_cells.GRU_RESET_BEFORE)
RNN_INFO.caches_type = RNNStepCaches
LSTM_INFO.caches_type = LSTMStepCaches
GRU_INFO.caches_type = GRU_RESET_BEFORE_INFO.caches_type = GRUStepCaches
# by name, for the entry points that take a cell's name
CELLS = {"rnn": RNN_INFO, "lstm": LSTM_INFO, "gru": GRU_INFO,
         "gru_reset_before": GRU_RESET_BEFORE_INFO}


cdef CellInfo gru_info(parameters):
    """The GRU variant the keys of `parameters` choose (docs/contract.md §5)."""
    # the common case first: a dict with the reset-after keys and no 'Wc'
    if type(parameters) is dict and "Wca" in <dict>parameters and "Wc" not in <dict>parameters:
        return GRU_INFO
    return GRU_RESET_BEFORE_INFO if _cells.gru_variant(parameters) is _cells.GRU_RESET_BEFORE \
        else GRU_INFO


cdef CellInfo gru_caches_info(caches):
    """The GRU variant of sequence caches: their own, or (tuples) their
    parameters'. Malformed caches get the reset-after one, whose validation
    then names what is wrong."""
    if isinstance(caches, tuple) and len(<tuple>caches) in (2, 3):
        steps = (<tuple>caches)[0]
        if type(steps) is GRUStepCaches:
            return (<GRUStepCaches>steps).variant or GRU_INFO
        if isinstance(steps, (list, tuple)) and len(steps) > 0:
            first = steps[0]
            if isinstance(first, tuple) and len(<tuple>first) == 7:
                return gru_info((<tuple>first)[6])
    return GRU_INFO
