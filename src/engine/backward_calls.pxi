# ------------------------------------------------------------------ backward calls
# From the caches (cyrnn's own, or the notebook's step tuples, validated) to a
# filled Backward and the gradient dict.

cdef class _BackwardJob:
    """A prepared backward call (GemmFloor runs it again and again)."""
    cdef Backward r
    cdef object keep

    def __call__(self):
        cdef int status
        with nogil:
            status = backward_run(&self.r)
        if status != 0:
            raise MemoryError("could not allocate the backward pass's scratch")


cdef inline cnp.ndarray new_gradient(int tn, Py_ssize_t T_da, Py_ssize_t d0, Py_ssize_t d1):
    return new_array(tn, d0, d1) if T_da > 0 else new_zeros(tn, d0, d1)


cdef dict run_backward(CellInfo info, int tn, bint cell_call, cnp.ndarray da, object G,
                       object A, object C, object a0, object c0, object X, list params,
                       object dc_init, Py_ssize_t T, bint reverse=False, bint gemm_only=False,
                       _BackwardJob into=None, object packing=None):
    """The gradient dict of a backward call on kernel-ready buffers. A, C, G, X
    hold T steps (time-major; for a cell call, T = 1 and they are 2-D; packed
    (rows, sum of lengths) with a `packing`), da (n_a, m, T_da) or, for a cell
    call, (n_a, m)."""
    cdef Py_ssize_t n_a = cnp.PyArray_DIMS(<cnp.ndarray>a0)[0]
    cdef Py_ssize_t m = cnp.PyArray_DIMS(<cnp.ndarray>a0)[1]
    cdef Py_ssize_t n_x = cnp.PyArray_DIMS(<cnp.ndarray>X)[0]
    cdef Py_ssize_t T_da = 1 if cell_call else cnp.PyArray_DIMS(da)[2]
    cdef Py_ssize_t rows = info.spec.gates * n_a, width = n_a + n_x, q
    cdef Backward rb
    cdef Backward* r = &rb if into is None else &into.r
    keep = gate_weights(info, params, tn, n_x, n_a, not cell_call or rows * width <= STACK_LIMIT,
                        &r.w, NULL)
    dG = dA = None
    cdef Py_ssize_t P
    cdef Packed k
    if packing is not None:
        # the columns sorted and packed like the forward's (cyrnn/_packing.py);
        # gradients start at zero: columns join as the steps go back
        P = packing.offsets[T_da]
        a0 = np.ascontiguousarray(a0[:, packing.order])
        if c0 is not None:
            c0 = np.ascontiguousarray(c0[:, packing.order])
        dG = new_array(tn, info.spec.blocks * n_a, P)
        dA = dG if info.spec.gates_are_state else new_array(tn, n_a, P)
        k = packed_view(packing)
        pack_into(tn == cnp.NPY_FLOAT, &k, n_a, T_da, data(da), elem_stride(da, 0),
                  elem_stride(da, 1), elem_stride(da, 2), <void*>data(dA), P)
        dX = new_array(tn, n_x, P)
        dx = None
        da0 = new_zeros(tn, n_a, m)
    elif not cell_call:
        dG = new_array(tn, info.spec.blocks * n_a, T_da, m)
        dA = dG if info.spec.gates_are_state else new_array(tn, n_a, T_da, m)
    if packing is None:
        dx = new_array(tn, n_x, m) if cell_call else new_array(tn, n_x, m, T_da)
        dX = dx if T_da <= 1 else new_array(tn, n_x, T_da, m)
        # every gradient is written in full when there is a step; zeros when none
        da0 = new_gradient(tn, T_da, n_a, m)
    dc = None
    if info.spec.has_c:
        dc = new_zeros(tn, n_a, m) if dc_init is None else cnp.PyArray_NewCopy(dc_init,
                                                                                cnp.NPY_CORDER)
    if info.weights_on_concat:
        dW = new_gradient(tn, T_da, rows, width)
        db = new_gradient(tn, T_da, info.spec.bias_blocks * n_a, 1)
        dWx, dWa = None, dW     # dWx: the columns from n_a on, see r.dWx below
    else:
        dW, dWx, dWa = None, new_gradient(tn, T_da, rows, n_x), new_gradient(tn, T_da, rows, n_a)
        db = new_gradient(tn, T_da, rows, 1)
    r.cell = info.spec
    r.n_x, r.n_a, r.m, r.T, r.T_da = n_x, n_a, m, T, T_da
    r.da = data(da)
    r.sd0, r.sd1 = elem_stride(da, 0), elem_stride(da, 1)
    r.sd2 = 0 if cell_call else elem_stride(da, 2)
    r.G, r.A, r.C, r.X = data(G), data(A), data(C), data(X)
    r.a0, r.c0 = data(a0), data(c0)
    r.dA, r.dG, r.dX, r.dc = <void*>data(dA), <void*>data(dG), <void*>data(dX), <void*>data(dc)
    r.dx, r.da0 = <void*>data(dx), <void*>data(da0)
    r.dWa, r.db = <void*>data(dWa), <void*>data(db)
    r.dWx = <char*>data(dW) + n_a * (4 if tn == cnp.NPY_FLOAT else 8) \
        if info.weights_on_concat else <void*>data(dWx)
    r.lddwx = width if info.weights_on_concat else n_x
    r.lddwa = width if info.weights_on_concat else n_a
    r.reverse, r.gemm_only, r.single = reverse, gemm_only, tn == cnp.NPY_FLOAT
    r.offsets = r.active = NULL
    if packing is not None:
        r.offsets = <const Py_ssize_t*>data(packing.offsets)
        r.active = <const Py_ssize_t*>data(packing.active)
    if into is not None:
        into.keep = (da, G, A, C, a0, c0, X, params, keep, dG, dA, dx, dX, da0, dc, dWx, dWa,
                     db)
        return None
    cdef int status
    if not cell_call or holds_gil_worth_releasing(2.0 * m * rows * width):
        with nogil:
            status = backward_run(r)
    else:
        status = backward_run(r)
    if status != 0:
        raise MemoryError("could not allocate the backward pass's scratch")
    if packing is not None:
        # back to the user's layout and column order (zeros where nothing runs)
        dx = new_array(tn, n_x, m, T_da)
        unpack_into(tn == cnp.NPY_FLOAT, &k, n_x, T_da, data(dX), P, <void*>data(dx))
        da0_sorted, da0 = da0, new_array(tn, n_a, m)
        da0[:, packing.order] = da0_sorted
    return gradient_dict(info, cell_call, n_a, n_x, dx, da0, dc, dW, dWx, dWa, db)


cdef dict gradient_dict(CellInfo info, bint cell_call, Py_ssize_t n_a, Py_ssize_t n_x, dx, da0,
                        dc, dW, dWx, dWa, db):
    """The notebook's gradient dict from the backward's buffers."""
    cdef Py_ssize_t width = n_a + n_x, q
    cdef dict grads
    if cell_call:
        grads = {"dxt": dx, "da_prev": da0}
        if info.spec.has_c:
            grads["dc_prev"] = dc
    else:
        grads = {"dx": dx, "da0": da0}
    dW_keys, db_keys = info.dW_keys, info.db_keys
    if info.weights_on_concat:
        # each gate's dW then db (the notebook's order); extra bias blocks last
        paired = info.spec.bias_blocks == info.spec.gates
        for q in range(info.spec.gates):
            if isinstance(dW_keys[q], str):
                grads[dW_keys[q]] = block_view(dW, q * n_a * width, n_a, width)
            else:
                # a row block given as two matrices: [dWa | dWx], apart
                grads[dW_keys[q][0]] = column_block(dW, q * n_a, n_a, 0, n_a)
                grads[dW_keys[q][1]] = column_block(dW, q * n_a, n_a, n_a, n_x)
            if paired or q < info.spec.gates - 1:
                grads[db_keys[q]] = block_view(db, q * n_a, n_a, 1)
        for q in range(info.spec.gates if paired else info.spec.gates - 1,
                       info.spec.bias_blocks):
            grads[db_keys[q]] = block_view(db, q * n_a, n_a, 1)
    else:
        grads[dW_keys[0]], grads[dW_keys[1]], grads[db_keys[0]] = dWx, dWa, db
    return grads


cdef cnp.ndarray column_block(cnp.ndarray src, Py_ssize_t row0, Py_ssize_t rows,
                              Py_ssize_t col0, Py_ssize_t cols):
    """A C-contiguous copy of src[row0:row0 + rows, col0:col0 + cols] (src:
    2-D C-contiguous)."""
    cdef cnp.ndarray out = new_array(cnp.PyArray_TYPE(src), rows, cols)
    cdef Py_ssize_t ld = cnp.PyArray_DIMS(src)[1], item = cnp.PyArray_ITEMSIZE(src), i
    for i in range(rows):
        memcpy(<char*>cnp.PyArray_DATA(out) + i * cols * item,
               <char*>cnp.PyArray_DATA(src) + ((row0 + i) * ld + col0) * item, cols * item)
    return out


cdef object stacked_gates(int tn, tuple gates, Py_ssize_t n_a, Py_ssize_t m):
    """The activated gates of a step cache as one (gates·n_a, m) block."""
    cdef cnp.ndarray G = new_array(tn, len(gates) * n_a, m)
    cdef size_t nbytes = n_a * m * (4 if tn == cnp.NPY_FLOAT else 8)
    cdef Py_ssize_t q
    for q in range(len(gates)):
        memcpy(<char*>cnp.PyArray_DATA(G) + q * nbytes, cnp.PyArray_DATA(gates[q]), nbytes)
    return G


cdef void extra_gru_block(floating dummy, int kind, Py_ssize_t n_a, Py_ssize_t m,
                         const void* Wca, const void* bca, const void* r, const void* a_prev,
                         void* out) noexcept nogil:
    """One step's G block that a GRU step cache does not hold: hc = Wca·a_prev
    + bca (reset-after) or ra = Γr·a_prev (reset-before), all (n_a, m) C-contiguous."""
    cdef floating* o = <floating*>out
    cdef Py_ssize_t k
    if kind == CELL_GRU:
        fill_rows(n_a, m, <const floating*>bca, o, m)
        gemm(False, False, n_a, m, n_a, <floating>1, <const floating*>Wca, n_a,
             <const floating*>a_prev, m, <floating>1, o, m)
    else:
        for k in range(n_a * m):
            o[k] = (<const floating*>r)[k] * (<const floating*>a_prev)[k]


cdef object gate_buffer(CellInfo info, int tn, tuple gates, object a_prev, list params):
    """The engine's G from the activated gates of step caches, (n_a, m) each
    (one step) or (n_a, T, m) (stacked steps, a_prev likewise): the gates in
    their blocks, and for the GRU the block its backward needs that the
    notebook-style tuple does not hold: hc = Wca·a_prev + bca (reset-after) or
    ra = Γr·a_prev (reset-before). One step's arrays are kernel-ready."""
    cdef Py_ssize_t n_a = a_prev.shape[0], m, q
    cdef cnp.ndarray G
    cdef size_t item = 4 if tn == cnp.NPY_FLOAT else 8, nbytes
    cdef const void* W = NULL
    cdef const void* b = NULL
    if a_prev.ndim == 2:
        m = a_prev.shape[1]
        if info.extra_block < 0:
            return stacked_gates(tn, gates, n_a, m)
        G = new_array(tn, info.spec.blocks * n_a, m)
        nbytes = n_a * m * item
        for q in range(len(gates)):
            memcpy(<char*>cnp.PyArray_DATA(G) + <int>info.gate_blocks[q] * nbytes,
                   cnp.PyArray_DATA(<cnp.ndarray>gates[q]), nbytes)
        if info.spec.kind == CELL_GRU:
            W, b = data(params[info.keys.index("Wca")]), data(params[info.keys.index("bca")])
        if tn == cnp.NPY_FLOAT:
            extra_gru_block[float](0, info.spec.kind, n_a, m, W, b, data(gates[0]),
                                   data(a_prev),
                                   <char*>cnp.PyArray_DATA(G) + info.extra_block * nbytes)
        else:
            extra_gru_block[double](0, info.spec.kind, n_a, m, W, b, data(gates[0]),
                                    data(a_prev),
                                    <char*>cnp.PyArray_DATA(G) + info.extra_block * nbytes)
        return G
    blocks = [None] * info.spec.blocks
    for g, q in zip(gates, info.gate_blocks):
        blocks[q] = g
    if info.extra_block < 0:
        pass
    elif info.spec.kind == CELL_GRU:
        Wca, bca = params[info.keys.index("Wca")], params[info.keys.index("bca")]
        extra = np.matmul(Wca, a_prev.reshape(n_a, -1)).reshape(a_prev.shape)
        extra += bca.reshape((n_a, 1, 1))
        blocks[info.extra_block] = extra
    else:
        blocks[info.extra_block] = gates[0] * a_prev
    return np.ascontiguousarray(np.concatenate(blocks, axis=0),
                                np.float32 if tn == cnp.NPY_FLOAT else np.float64)


cdef dict cell_backward(CellInfo info, da_next, dc_next, cache):
    cdef int tn = float_typenum(da_next)
    cdef list params = None
    cdef tuple entries
    cdef Py_ssize_t k, n_a, m, n_x
    if (tn >= 0 and type(cache) is tuple and len(<tuple>cache) == info.n_entries
            and ready(da_next, tn, 2, -1)):
        entries = <tuple>cache
        n_a = cnp.PyArray_DIMS(<cnp.ndarray>da_next)[0]
        m = cnp.PyArray_DIMS(<cnp.ndarray>da_next)[1]
        if not info.spec.has_c or ready(dc_next, tn, 2, n_a, m):
            for k in range(info.i_xt):
                if not ready(entries[k], tn, 2, n_a, m):
                    break
            else:
                xt = entries[info.i_xt]
                if ready(xt, tn, 2, -1, m):
                    n_x = cnp.PyArray_DIMS(<cnp.ndarray>xt)[0]
                    params = fast_parameters(info, entries[info.i_parameters], tn, n_x, n_a,
                                             True)
                    if params is not None and not blas_sizes_fit(
                            m, info.spec.blocks * n_a + n_x, 0):
                        params = None
    if params is None:
        return cell_backward_checked(info, da_next, dc_next, cache)
    return cell_backward_ready(info, tn, da_next, dc_next, entries, params)


cdef dict cell_backward_ready(CellInfo info, int tn, da_next, dc_next, tuple entries,
                              list params):
    cdef Py_ssize_t n_a = cnp.PyArray_DIMS(<cnp.ndarray>da_next)[0]
    cdef Py_ssize_t m = cnp.PyArray_DIMS(<cnp.ndarray>da_next)[1]
    a_next = entries[info.i_a_next]
    if info.spec.gates_are_state:
        G = a_next
    else:
        G = gate_buffer(info, tn, tuple([entries[k] for k in info.i_gates]),
                        entries[info.i_a_prev], params)
    C = c_prev = None
    if info.spec.has_c:
        C, c_prev = entries[info.i_c_next], entries[info.i_c_prev]
    return run_backward(info, tn, True, da_next, G, a_next, C, entries[info.i_a_prev], c_prev,
                        entries[info.i_xt], params, dc_next, 1)


cdef dict cell_backward_checked(CellInfo info, da_next, dc_next, cache):
    cell = info.cell
    da_next = _validation.as_array("da_next", da_next)
    if info.spec.has_c:
        dc_next = _validation.as_array("dc_next", dc_next)
    entries = _validation.step_arrays(cell, cache, "cache")
    n_a, m = entries[0].shape
    xt = entries[cell.step_cache.index("xt")]
    n_x = xt.shape[0]
    _validation.check_shape("da_next", da_next, ("n_a", "m"), (n_a, m))
    if info.spec.has_c:
        _validation.check_shape("dc_next", dc_next, ("n_a", "m"), (n_a, m))
    parameters = entries[len(entries) - 1]
    p, _ = _validation.check_parameters(cell, parameters, n_x, n_a, keys=cell.backward_keys)
    _validation.check_blas_sizes(m, len(cell.blocks) * n_a + n_x)
    weights = [p[key] for key in cell.backward_keys]
    dtype = _validation.compute_dtype([da_next, dc_next, *entries[:len(entries) - 1], *weights])
    entries = [_validation.contiguous(e, dtype) for e in entries[:len(entries) - 1]] + [parameters]
    params = validated_parameters(info, {k: _validation.contiguous(v, dtype)
                                         for k, v in p.items()})
    dc_next = None if dc_next is None else _validation.contiguous(dc_next, dtype)
    return cell_backward_ready(info, float_typenum(entries[0]),
                               _validation.contiguous(da_next, dtype), dc_next, tuple(entries),
                               params)


cdef dict sequence_backward(CellInfo info, da, caches):
    cdef int tn
    cdef StepCaches steps
    cdef list params
    cdef Py_ssize_t n_a, T, m, n_x
    # cyrnn's own caches: (steps, x), or (steps, x, lengths) with their lengths
    if type(caches) is tuple and type((<tuple>caches)[0]) is info.caches_type and (
            (len(<tuple>caches) == 2 and (<StepCaches>(<tuple>caches)[0]).lengths is None)
            or (len(<tuple>caches) == 3
                and (<tuple>caches)[2] is (<StepCaches>(<tuple>caches)[0]).lengths)):
        steps = (<tuple>caches)[0]
        if steps.valid:
            tn = cnp.PyArray_TYPE(<cnp.ndarray>steps.A)
            n_a = cnp.PyArray_DIMS(<cnp.ndarray>steps.a0)[0]
            m = cnp.PyArray_DIMS(<cnp.ndarray>steps.a0)[1]
            T = steps.T
            n_x = cnp.PyArray_DIMS(<cnp.ndarray>steps.X)[0]
            if ready(da, tn, 3, n_a, m) and cnp.PyArray_DIMS(<cnp.ndarray>da)[2] <= T:
                params = fast_parameters(info, steps.parameters, tn, n_x, n_a, True)
                if params is not None and blas_sizes_fit(
                        cnp.PyArray_DIMS(<cnp.ndarray>da)[2] * m, info.spec.blocks * n_a + n_x,
                        0):
                    return run_backward(info, tn, False, da, steps.G, steps.A, steps.C,
                                        steps.a0, steps.c0, steps.X, params, None, T,
                                        False, False, None, steps.packing)
    return sequence_backward_checked(info, da, caches)


cdef dict sequence_backward_checked(CellInfo info, da, caches):
    cell = info.cell
    names = cell.step_cache
    da = _validation.as_array("da", da)
    steps, _, lengths = _validation.split_caches(caches, cell)
    packing = None
    if type(steps) is info.caches_type:
        if not (<StepCaches>steps).valid:
            raise ValueError(f"caches[0] is a {type(steps).__name__} that was not initialised")
        n_a, m = steps.a0.shape
        T = steps.T
        if lengths is not None:
            lengths = _validation.check_lengths(lengths, m, T)
            if not np.array_equal(lengths, np.full(m, T) if steps.lengths is None
                                  else steps.lengths):
                raise ValueError("caches[2] (lengths) differs from the lengths caches[0] "
                                 "was made with")
        T_da = _validation.check_da(da, T, n_a, m)
        G, A, C, a0, c0, X = steps.G, steps.A, steps.C, steps.a0, steps.c0, steps.X
        packing = (<StepCaches>steps).packing
        gates = ()
        parameters = steps.parameters
    else:
        if len(steps) == 0:
            raise ValueError("caches[0] is empty; it needs one step cache per time step")
        first = _validation.step_arrays(cell, steps[0], "caches[0][0]")
        n_a, m = first[0].shape
        T_da = _validation.check_da(da, len(steps), n_a, m)
        arrays = [first] + [_validation.step_arrays(cell, steps[t], f"caches[0][{t}]", n_a, m)
                            for t in range(1, T_da)]

        def stacked(name, rows):
            k = names.index(name)
            if T_da == 0:
                return np.zeros((rows, 0, m))
            return np.stack([s[k] for s in arrays], axis=1)

        n_x = first[names.index("xt")].shape[0]
        A, X = stacked("a_next", n_a), stacked("xt", n_x)
        a0 = first[names.index("a_prev")]
        C = c0 = None
        if cell.has_c:
            C, c0 = stacked("c_next", n_a), first[names.index("c_prev")]
        # G is made below from these, once the dtype is known
        G, gates = None, tuple(stacked(g, n_a) for g in cell.gate_cache)
        parameters = first[len(first) - 1]
    n_x = X.shape[0]
    p, _ = _validation.check_parameters(cell, parameters, n_x, n_a, keys=cell.backward_keys)
    _validation.check_blas_sizes(T_da * m, len(cell.blocks) * n_a + n_x)
    weights = [p[key] for key in cell.backward_keys]
    dtype = _validation.compute_dtype([da, G, A, C, a0, c0, X, *gates, *weights])
    G, A, C, a0, c0, X = [None if v is None else _validation.contiguous(v, dtype)
                          for v in (G, A, C, a0, c0, X)]
    params = validated_parameters(info, {k: _validation.contiguous(v, dtype)
                                         for k, v in p.items()})
    if info.spec.gates_are_state:
        G = A
    elif G is None:
        A_prev = np.concatenate([a0[:, None, :], A], axis=1)[:, :A.shape[1]]
        G = gate_buffer(info, float_typenum(A), tuple(_validation.contiguous(g, dtype)
                                                      for g in gates), A_prev, params)
    if type(steps) is not info.caches_type and lengths is not None:
        # step tuples with lengths: pack their first T_da steps like the engine's
        lengths = np.minimum(_validation.check_lengths(lengths, m, len(steps)), T_da)
        packing = _packing.packing(lengths, T_da)
        index = _packing.time_major_index(packing, T_da, m)
        G, A, C, X = [None if v is None else np.ascontiguousarray(
            v.reshape(v.shape[0], T_da * m)[:, index]) for v in (G, A, C, X)]
        if info.spec.gates_are_state:
            G = A
    return run_backward(info, float_typenum(a0), False, _validation.strided(da, dtype), G, A,
                        C, a0, c0, X, params, None,
                        A.shape[1] if packing is None else packing.active.shape[0],
                        False, False, None, packing)
