# ------------------------------------------------------------------ calls

cdef class _BackwardJob:
    cdef Backward r
    cdef object keep

    def __call__(self):
        cdef int status
        with nogil:
            status = backward_run(&self.r)
        if status != 0:
            raise MemoryError("could not allocate the backward pass's scratch")


cdef inline Py_ssize_t scratch_ld(Py_ssize_t columns, bint single) noexcept:
    """Row stride (elements) of inference scratch with `columns` columns: whole
    64-byte lines, an odd number of them. A step's rows are then spread over every
    set of the CPU's caches; T·m columns of a power-of-two-rich size (6400, 51200)
    mapped a step's rows to few sets, and its gates were evicted between the
    recurrent GEMM and the step's kernels (LSTM inference, medium shape: see
    benchmarks/README)."""
    cdef Py_ssize_t per_line = 16 if single else 8
    cdef Py_ssize_t lines = (columns + per_line - 1) // per_line
    if lines % 2 == 0:
        lines += 1
    return lines * per_line


cdef tuple prepare_forward(CellInfo info, int tn, cnp.ndarray x, cnp.ndarray a0, object c0,
                           list params, bint cache, bint reverse, Forward* r,
                           object out=None, bint scratch=False, bint scratch_fits=False,
                           bint states_fit=False):
    """Fill r for a forward call on kernel-ready inputs, allocating the outputs
    and (with `cache`) the cache buffers; returns them as (a, y, c, G, A, C, X,
    keep-alive objects). `out` (checked by _run_direction): the (n_a, m, T)
    array to write the hidden states into instead of a new one; a transposed
    view of a C-contiguous (n_a, T, m) array is the time-major state buffer A
    itself (no output in the user's layout is made, nor c: the cell states
    come back as a view of C; `cache` must be on). `scratch`: the cache
    buffers serve this call only (inference), so their rows may be padded
    apart (scratch_ld). Without caches (inference), the time-major buffers can
    be scratch (`scratch_fits`: cache off, scratch on), or when `states_fit`
    the states' alone, for the blocks to stage their states in (forward_chunk's
    stage_states): so for the gated cells, whose scratch would be mostly gates
    (LSTM inference, bigbatch: 0.91x the time in float32, the same in float64,
    GRU 0.83-0.96x), and when the scratch does not fit, except in split runs
    (whose parts scatter their own units)."""
    cdef Py_ssize_t n_x = cnp.PyArray_DIMS(x)[0], m = cnp.PyArray_DIMS(x)[1]
    cdef Py_ssize_t T = cnp.PyArray_DIMS(x)[2], n_a = cnp.PyArray_DIMS(a0)[0]
    cdef Py_ssize_t rows = info.spec.blocks * n_a
    cdef cnp.ndarray Wy = params[info.wy_index]
    cdef Py_ssize_t n_y = cnp.PyArray_DIMS(Wy)[0]
    cdef bint states_out = out is not None and not cnp.PyArray_ISCARRAY(<cnp.ndarray>out)
    keep, b = gate_weights(info, params, tn, n_x, n_a, True, &r.w)
    cdef bint time_major = is_time_major_view(x)
    r.cell = info.spec
    r.n_x, r.n_a, r.n_y, r.m, r.T = n_x, n_a, n_y, m, T
    r.reverse, r.gemm_only, r.single = reverse, False, tn == cnp.NPY_FLOAT
    r.offsets = r.active = r.bounds = NULL
    r.plan = forward_plan(r)
    cdef bint stage = (states_fit and not cache and not states_out and not runs_split(r)
                       and (not info.spec.gates_are_state or not scratch_fits))
    if scratch_fits and not cache and not stage:
        cache = True
    if stage:
        global staged_state_runs
        staged_state_runs += 1
    a = new_array(tn, n_a, m, T) if out is None else out
    y = new_array(tn, n_y, m, T)
    c = new_array(tn, n_a, m, T) if info.spec.has_c and not states_out else None
    cdef bint padded = cache and scratch and not states_out
    cdef Py_ssize_t ld = scratch_ld(T * m, tn == cnp.NPY_FLOAT) if padded or stage else T * m
    G = A = C = X = None
    if stage:
        A = new_array(tn, n_a, ld)
        C = new_array(tn, n_a, ld) if info.spec.has_c else None
    elif padded:
        G = new_array(tn, rows, ld)
        A = G if info.spec.gates_are_state else new_array(tn, n_a, ld)
        C = new_array(tn, n_a, ld) if info.spec.has_c else None
        X = None if time_major else new_array(tn, n_x, ld)
    elif cache:
        A_given = out.transpose(0, 2, 1) if states_out else None
        G = A_given if states_out and info.spec.gates_are_state else new_array(tn, rows, T, m)
        A = G if info.spec.gates_are_state else (
            A_given if states_out else new_array(tn, n_a, T, m))
        C = new_array(tn, n_a, T, m) if info.spec.has_c else None
        X = x.transpose(0, 2, 1) if time_major else new_array(tn, n_x, T, m)
    r.x, r.x_time_major = data(x), time_major
    r.sx0, r.sx1, r.sx2 = elem_stride(x, 0), elem_stride(x, 1), elem_stride(x, 2)
    r.a0, r.c0, r.b = data(a0), data(c0), data(b)
    r.Wy, r.by = data(Wy), data(params[info.by_index])
    r.a_out = NULL if states_out else <void*>data(a)
    r.c_out, r.y_out = <void*>data(c), <void*>data(y)
    r.G, r.A, r.C = <void*>data(G), <void*>data(A), <void*>data(C)
    r.X = NULL if time_major else <void*>data(X)
    r.ld = ld
    r.keep_gates = cache and not scratch
    if states_out and C is not None:
        c = C.transpose(0, 2, 1)
    return a, y, c, G, A, C, X, (keep, b)


cdef object pooled_workspace(const Forward* r):
    """A workspace for one thread's chunks from cyrnn's recycling pool (see
    cyrnn_pool.h: repeated calls skip the page faults of fresh memory), or None."""
    cdef size_t need = chunk_workspace(r)
    return new_array(cnp.NPY_FLOAT if r.single else cnp.NPY_DOUBLE, need, 1) if need else None


cdef void run_forward(Forward* r, object keep, int n_threads, Py_ssize_t work_size) except *:
    cdef Py_ssize_t n = n_chunks(r.m)
    cdef _ForwardJob job
    cdef _SplitJob split
    cdef int status
    cdef void* ws
    if n_threads > 1 and runs_split(r):
        split = _SplitJob.__new__(_SplitJob)
        split.r, split.keep = r[0], keep
        split.workspace = pooled_workspace(r)
        if r.single:
            split_init[float](0, &split.sp, &split.r, <float*>data(split.workspace),
                              n_threads)
        else:
            split_init[double](0, &split.sp, &split.r, <double*>data(split.workspace),
                               n_threads)
        run_chunks(split, max(split.sp.unit_parts, split.sp.gemm_parts[0]), n_threads)
        if r.a_out != NULL:
            with nogil:
                run_head(r)
        return
    if n_threads <= 1 or n <= 1:
        workspace = pooled_workspace(r)
        ws = <void*>data(workspace)
        if work_size >= CONCURRENCY_CHECK_SIZE:
            with concurrent_use(work_size):
                with nogil:
                    status = forward_chunks(r, 0, n, ws)
        else:
            with nogil:
                status = forward_chunks(r, 0, n, ws)
        if status != 0:
            raise MemoryError("could not allocate the per-thread workspace")
        return
    job = _ForwardJob.__new__(_ForwardJob)
    job.r, job.keep = r[0], keep
    run_chunks(job, n, n_threads)


cdef tuple sequence_forward(CellInfo info, x, a0, c0, parameters, cache, n_threads,
                            bint reverse=False, lengths=None, out=None):
    """(a, y, c, caches) of a sequence forward; c None for cells without one,
    caches None without `cache`; with `lengths`, caches (steps, x, lengths).
    out: see _run_direction."""
    cdef int tn = float_typenum(x)
    cdef list params = None
    cdef Py_ssize_t n_x, m, T, n_a
    if cache is not True and cache is not False:
        _validation.check_cache_flag(cache)
    cdef int threads = 1 if type(n_threads) is int and n_threads == 1 else \
        resolve_threads(n_threads)
    x_given = x
    if (tn >= 0 and strided_ready(x, tn, 3)
            and ready(a0, tn, 2, -1, cnp.PyArray_DIMS(<cnp.ndarray>x)[1])
            and (c0 is None or (info.spec.has_c and ready(
                c0, tn, 2, cnp.PyArray_DIMS(<cnp.ndarray>a0)[0],
                cnp.PyArray_DIMS(<cnp.ndarray>x)[1])))):
        n_x = cnp.PyArray_DIMS(<cnp.ndarray>x)[0]
        m = cnp.PyArray_DIMS(<cnp.ndarray>x)[1]
        T = cnp.PyArray_DIMS(<cnp.ndarray>x)[2]
        n_a = cnp.PyArray_DIMS(<cnp.ndarray>a0)[0]
        params = fast_parameters(info, parameters, tn, n_x, n_a)
        if params is not None and not blas_sizes_fit(
                m * T, info.spec.blocks * n_a + n_x,
                cnp.PyArray_DIMS(<cnp.ndarray>params[info.wy_index])[0]):
            params = None
    if params is None:
        x_given = _validation.as_array("x", x)
        x, a0, c0, p = _validation.forward_inputs(info.cell, x_given, a0, c0, parameters, True)
        params = validated_parameters(info, p)
        tn = float_typenum(x)
    # Without caches, time-major buffers are still the fastest place for the
    # states of wide batches (whole output rows leave them at once, streamed):
    # they come from the pool and go back to it after the call, up to
    # SCRATCH_BYTES (the RNN's scratch, the gated cells' states: see
    # prepare_forward); the steps run in blocks in a small workspace otherwise.
    # Every way computes the same GEMMs and passes, so results are
    # bit-identical to the cached call.
    n_x = cnp.PyArray_DIMS(<cnp.ndarray>x)[0]
    m = cnp.PyArray_DIMS(<cnp.ndarray>x)[1]
    T = cnp.PyArray_DIMS(<cnp.ndarray>x)[2]
    n_a = cnp.PyArray_DIMS(<cnp.ndarray>a0)[0]
    if lengths is not None:
        lengths = _validation.check_lengths(lengths, m, T)
        lengths.flags.writeable = False
        if not (lengths == T).all():
            return packed_forward(info, tn, x, a0, c0, params, lengths, cache, threads, x_given,
                                  parameters, reverse, _checked_out(out, tn, n_a, m, T, False))
        # every column runs every step: the ordinary run, caches recording lengths
    cdef double scratch = (<double>(info.spec.blocks + (0 if info.spec.gates_are_state else 1)
                                    + info.spec.has_c) * n_a + n_x) * T * m * \
        (4 if tn == cnp.NPY_FLOAT else 8)
    cdef double outputs = (<double>(2 if info.spec.has_c else 1) * n_a
                           + cnp.PyArray_DIMS(<cnp.ndarray>params[info.wy_index])[0]) * T * m * \
        (4 if tn == cnp.NPY_FLOAT else 8)
    cdef Forward r
    cdef Py_ssize_t item = 4 if tn == cnp.NPY_FLOAT else 8
    cdef bint wide_outputs = outputs > CACHED_OUTPUT_BYTES and m * item >= NARROW_ROW_BYTES
    out = _checked_out(out, tn, n_a, m, T, not cache)
    if out is not None and not cnp.PyArray_ISCARRAY(<cnp.ndarray>out) and \
            cnp.PyArray_DIMS(<cnp.ndarray>params[info.wy_index])[0] > 0:
        raise ValueError("a time-major out holds the hidden states only: the output "
                         "layer must have 0 rows")
    a, y, c, G, A, C, X, keep = prepare_forward(
        info, tn, x, a0, c0, params,
        cache or (out is not None and not cnp.PyArray_ISCARRAY(<cnp.ndarray>out)), reverse, &r,
        out, not cache, wide_outputs and scratch <= SCRATCH_BYTES,
        wide_outputs and (1 + info.spec.has_c) * <double>n_a * T * m * item <= SCRATCH_BYTES)
    run_forward(&r, (x, a0, c0, params, keep, a, y, c, G, A, C, X), threads,
                n_a * m * T if threads == 1 else 0)
    if not cache:
        return a, y, c, None
    cdef StepCaches steps = new_step_caches(info)
    for buffer in (G, A, C, X):
        if buffer is not None:
            freeze(buffer)
    steps.trusted(A, C, G, a0, c0, X, x_given, parameters, lengths)
    return a, y, c, (steps, x_given) if lengths is None else (steps, x_given, lengths)


cdef void run_head(const Forward* r) noexcept nogil:
    if r.single:
        output_head[float](r, 0, r.m, <const float*>r.a_out)
    else:
        output_head[double](r, 0, r.m, <const double*>r.a_out)
