# ------------------------------------------------------------------ forward calls
# From validated arrays to a filled Forward: the run mode (modes.pxi), the
# buffers it needs, the plan; then the run, on the calling thread or on the
# shared pool (cyrnn/_parallel.py).

cdef class _ForwardJob:
    """A prepared forward call, for threads: job(first, last) runs those chunks."""
    cdef Forward r
    cdef object keep

    def __call__(self, Py_ssize_t first, Py_ssize_t last):
        """Run chunks first..last-1 (from any thread; disjoint ranges at once)."""
        workspace = pooled_workspace(&self.r)
        cdef void* ws = <void*>data(workspace)
        cdef int status
        with nogil:
            status = forward_chunks(&self.r, first, last, ws)
        if status != 0:
            raise MemoryError("could not allocate the per-thread workspace")


cdef class _SplitJob:
    """A split run (split.pxi) for threads: job(first, last) runs tickets until
    none is left, from any thread, several at once."""
    cdef Forward r
    cdef Split sp
    cdef object keep
    cdef object workspace

    def __call__(self, Py_ssize_t first, Py_ssize_t last):
        with nogil:
            split_work(&self.sp)


cdef enum:
    MODE_CHOOSE = -1        # prepare_forward: choose the run mode from the sizes


cdef tuple prepare_forward(CellInfo info, int tn, cnp.ndarray x, cnp.ndarray a0, object c0,
                           list params, bint cache, bint reverse, Forward* r,
                           object out=None, int mode=MODE_CHOOSE,
                           PackedCache packed_cache=None):
    """Fill r for a forward call on kernel-ready inputs, allocating the outputs
    and the buffers of its run mode (chosen here unless `mode` is given: the
    floor's); returns them as (a, y, c, G, A, C, X, keep-alive objects).
    `cache`: keep the caches. `out` (checked by _run_direction): the (n_a, m,
    T) array to write the hidden states into instead of a new one; a transposed
    view of a C-contiguous (n_a, T, m) array is the time-major state buffer A
    itself (no output in the user's layout is made, nor c: the cell states
    come back as a view of C)."""
    cdef Py_ssize_t n_x = cnp.PyArray_DIMS(x)[0], m = cnp.PyArray_DIMS(x)[1]
    cdef Py_ssize_t T = cnp.PyArray_DIMS(x)[2], n_a = cnp.PyArray_DIMS(a0)[0]
    cdef Py_ssize_t rows = info.spec.blocks * n_a
    cdef cnp.ndarray Wy = params[info.wy_index]
    cdef bint states_out = out is not None and not cnp.PyArray_ISCARRAY(<cnp.ndarray>out)
    cdef bint time_major = is_time_major_view(x)
    init_forward(r, info, tn, n_x, n_a, cnp.PyArray_DIMS(Wy)[0], m, T)
    keep = gate_weights(info, params, tn, n_x, n_a, True, &r.w, &r.b)
    r.reverse, r.x_time_major = reverse, time_major
    r.plan = forward_plan(r)
    keep = (keep, pack_for_plan(r, params, packed_cache))
    r.mode = choose_run_mode(r, cache, states_out) if mode == MODE_CHOOSE else mode
    if r.mode == RUN_WIDE_RULE or r.mode == RUN_MEASURED_SMALL:
        r.mode = measured_mode(info, tn, x, a0, c0, params, r, r.mode)
    if r.mode == RUN_STATE_BUFFERS and mode == MODE_CHOOSE:
        global state_buffer_runs
        state_buffer_runs += 1
    a = new_array(tn, n_a, m, T) if out is None else out
    y = new_array(tn, r.n_y, m, T)
    c = new_array(tn, n_a, m, T) if info.spec.has_c and not states_out else None
    # inference's time-major buffers serve this call only: rows padded apart
    cdef bint in_scratch = r.mode == RUN_IN_BUFFERS and not cache and not states_out
    cdef Py_ssize_t ld = scratch_ld(T * m, r.single) if (
        in_scratch or r.mode == RUN_STATE_BUFFERS and not states_out) else T * m
    G = A = C = X = None
    if r.mode == RUN_STATE_BUFFERS:
        A = out.transpose(0, 2, 1) if states_out else new_array(tn, n_a, ld)
        C = new_array(tn, n_a, ld) if info.spec.has_c else None
    elif in_scratch:
        G = new_array(tn, rows, ld)
        A = G if info.spec.gates_are_state else new_array(tn, n_a, ld)
        C = new_array(tn, n_a, ld) if info.spec.has_c else None
        X = None if time_major else new_array(tn, n_x, ld)
    elif r.mode != RUN_BLOCKS:
        # the caches' layout (also a time-major out's)
        A_given = out.transpose(0, 2, 1) if states_out else None
        G = A_given if states_out and info.spec.gates_are_state else new_array(tn, rows, T, m)
        A = G if info.spec.gates_are_state else (
            A_given if states_out else new_array(tn, n_a, T, m))
        C = new_array(tn, n_a, T, m) if info.spec.has_c else None
        X = x.transpose(0, 2, 1) if time_major else new_array(tn, n_x, T, m)
    r.x = data(x)
    r.sx0, r.sx1, r.sx2 = elem_stride(x, 0), elem_stride(x, 1), elem_stride(x, 2)
    r.a0, r.c0 = data(a0), data(c0)
    r.Wy, r.by = data(Wy), data(params[info.by_index])
    r.a_out = NULL if states_out else <void*>data(a)
    r.c_out, r.y_out = <void*>data(c), <void*>data(y)
    r.G, r.A, r.C = <void*>data(G), <void*>data(A), <void*>data(C)
    r.X = NULL if time_major else <void*>data(X)
    r.ld = ld
    r.keep_gates = cache
    if states_out and C is not None:
        c = C.reshape(n_a, T, m).transpose(0, 2, 1)
    return a, y, c, G, A, C, X, keep


cdef object pooled_workspace(const Forward* r):
    """A workspace for one thread's chunks from cyrnn's recycling pool (see
    cyrnn_pool.h: repeated calls skip the page faults of fresh memory), or None."""
    cdef size_t need = chunk_workspace(r)
    return new_array(cnp.NPY_FLOAT if r.single else cnp.NPY_DOUBLE, need, 1) if need else None


cdef void run_split(Forward* r, object keep, int n_threads) except *:
    """A split run of r on n_threads threads of the shared pool."""
    cdef _SplitJob split = _SplitJob.__new__(_SplitJob)
    split.r, split.keep = r[0], keep
    split.workspace = pooled_workspace(r)
    if r.single:
        split_init[float](0, &split.sp, &split.r, <float*>data(split.workspace), n_threads)
    else:
        split_init[double](0, &split.sp, &split.r, <double*>data(split.workspace), n_threads)
    run_chunks(split, max(split.sp.unit_parts, split.sp.proj_parts if split.sp.product.plan
                          == PLAN_PACKED else split.sp.gemm_parts[0]), n_threads)
    if r.a_out != NULL:
        with nogil:
            run_head(r)


cdef void run_forward(Forward* r, object keep, int n_threads, Py_ssize_t work_size) except *:
    """Run r: split, by chunks on threads, or here (work_size: the call's size,
    for the concurrency check of cyrnn/_parallel.py)."""
    cdef Py_ssize_t n = n_chunks(r.m)
    cdef _ForwardJob job
    cdef int status
    cdef void* ws
    r.threads = max(1, n_threads)
    if n_threads > 1 and runs_split(r) and (r.plan != PLAN_PACKED or packed_parts(r) > 1):
        run_split(r, keep, n_threads)
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


cdef tuple step_caches_of(CellInfo info, G, A, C, a0, c0, X, x_given, parameters, lengths,
                          packing=None):
    """The caches a forward call returns: its buffers frozen, read as steps."""
    cdef StepCaches steps = new_step_caches(info)
    for buffer in (G, A, C, X):
        if buffer is not None:
            freeze(buffer)
    steps.trusted(A, C, G, a0, c0, X, x_given, parameters, lengths, packing)
    return (steps, x_given) if lengths is None else (steps, x_given, lengths)


cdef list ready_sequence_parameters(CellInfo info, int tn, x, a0, c0, parameters):
    """The parameters in schema order when x, a0, c0 and they are all
    kernel-ready (and fit BLAS's sizes), else None: then the validating path."""
    if not (tn >= 0 and strided_ready(x, tn, 3)
            and ready(a0, tn, 2, -1, cnp.PyArray_DIMS(<cnp.ndarray>x)[1])
            and (c0 is None or (info.spec.has_c and ready(
                c0, tn, 2, cnp.PyArray_DIMS(<cnp.ndarray>a0)[0],
                cnp.PyArray_DIMS(<cnp.ndarray>x)[1])))):
        return None
    cdef Py_ssize_t n_x = cnp.PyArray_DIMS(<cnp.ndarray>x)[0]
    cdef Py_ssize_t m = cnp.PyArray_DIMS(<cnp.ndarray>x)[1]
    cdef Py_ssize_t T = cnp.PyArray_DIMS(<cnp.ndarray>x)[2]
    cdef Py_ssize_t n_a = cnp.PyArray_DIMS(<cnp.ndarray>a0)[0]
    cdef list params = fast_parameters(info, parameters, tn, n_x, n_a)
    if params is not None and not blas_sizes_fit(
            m * T, info.spec.blocks * n_a + n_x,
            cnp.PyArray_DIMS(<cnp.ndarray>params[info.wy_index])[0]):
        return None
    return params


cdef tuple sequence_forward(CellInfo info, x, a0, c0, parameters, cache, n_threads,
                            bint reverse=False, lengths=None, out=None, packing=None,
                            PackedCache packed_cache=None):
    """(a, y, c, caches) of a sequence forward; c None for cells without one,
    caches None without `cache`; with `lengths`, caches (steps, x, lengths).
    out, packing, packed_cache: see _run_direction."""
    cdef int tn = float_typenum(x)
    if cache is not True and cache is not False:
        _validation.check_cache_flag(cache)
    cdef int threads = 1 if type(n_threads) is int and n_threads == 1 else \
        resolve_threads(n_threads)
    x_given = x
    cdef list params = ready_sequence_parameters(info, tn, x, a0, c0, parameters)
    if params is None:
        x_given = _validation.as_array("x", x)
        x, a0, c0, p = _validation.forward_inputs(info.cell, x_given, a0, c0, parameters, True)
        params = validated_parameters(info, p)
        tn = float_typenum(x)
    cdef Py_ssize_t m = cnp.PyArray_DIMS(<cnp.ndarray>x)[1]
    cdef Py_ssize_t T = cnp.PyArray_DIMS(<cnp.ndarray>x)[2]
    cdef Py_ssize_t n_a = cnp.PyArray_DIMS(<cnp.ndarray>a0)[0]
    if packing is None and lengths is not None:
        lengths = _validation.check_lengths(lengths, m, T)
        lengths.flags.writeable = False
        if not (lengths == T).all():
            packing = _packing.packing(lengths, T)
        # (else every column runs every step: the ordinary run, caches recording lengths)
    if packing is not None:
        if packing.order.shape[0] != m or packing.active.shape[0] != T:
            raise ValueError(f"packing is for {packing.order.shape[0]} columns and "
                             f"{packing.active.shape[0]} steps; x has {m} and {T}")
        return packed_forward(info, tn, x, a0, c0, params, packing, cache, threads, x_given,
                              parameters, reverse, _checked_out(out, tn, n_a, m, T, False),
                              packed_cache)
    out = _checked_out(out, tn, n_a, m, T, not cache)
    if out is not None and not cnp.PyArray_ISCARRAY(<cnp.ndarray>out) and \
            cnp.PyArray_DIMS(<cnp.ndarray>params[info.wy_index])[0] > 0:
        raise ValueError("a time-major out holds the hidden states only: the output "
                         "layer must have 0 rows")
    cdef Forward r
    a, y, c, G, A, C, X, keep = prepare_forward(info, tn, x, a0, c0, params, cache, reverse, &r,
                                                out, MODE_CHOOSE, packed_cache)
    run_forward(&r, (x, a0, c0, params, keep, a, y, c, G, A, C, X), threads,
                n_a * m * T if threads == 1 else 0)
    if not cache:
        return a, y, c, None
    return a, y, c, step_caches_of(info, G, A, C, a0, c0, X, x_given, parameters, lengths)
