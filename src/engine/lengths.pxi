# ------------------------------------------------------------------ variable lengths
# Packed columns (cyrnn/_packing.py) as the C loops read them, and the forward
# call with lengths.

cdef struct Packed:
    # A Packing (cyrnn/_packing.py) as the C kernels read it
    Py_ssize_t m
    const Py_ssize_t* order
    const Py_ssize_t* position
    const Py_ssize_t* sorted_lengths
    const Py_ssize_t* offsets


cdef inline Packed packed_view(object p):
    cdef Packed k
    k.m = p.order.shape[0]
    k.order = <const Py_ssize_t*>data(p.order)
    k.position = <const Py_ssize_t*>data(p.position)
    k.sorted_lengths = <const Py_ssize_t*>data(p.sorted_lengths)
    k.offsets = <const Py_ssize_t*>data(p.offsets)
    return k


cdef void pack_into(bint single, const Packed* k, Py_ssize_t n, Py_ssize_t steps,
                    const void* src, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2, void* dst,
                    Py_ssize_t ld) noexcept nogil:
    """dst (n, ld) packed <- the first `steps` steps of src (n, m, ·), element
    strides s0, s1, s2."""
    if single:
        pack_columns(n, k.m, steps, k.order, k.sorted_lengths, k.offsets, <const float*>src,
                     s0, s1, s2, <float*>dst, ld)
    else:
        pack_columns(n, k.m, steps, k.order, k.sorted_lengths, k.offsets, <const double*>src,
                     s0, s1, s2, <double*>dst, ld)


cdef void unpack_into(bint single, const Packed* k, Py_ssize_t n, Py_ssize_t steps,
                      const void* src, Py_ssize_t ld, void* dst) noexcept nogil:
    """dst (n, m, steps) C-contiguous <- packed src (n, ld), zeros where a
    column does not run."""
    if single:
        unpack_columns(n, k.m, steps, k.order, k.position, k.sorted_lengths, k.offsets,
                       <const float*>src, ld, <float*>dst, k.m * steps)
    else:
        unpack_columns(n, k.m, steps, k.order, k.position, k.sorted_lengths, k.offsets,
                       <const double*>src, ld, <double*>dst, k.m * steps)


cdef void zero_padding(bint single, const Packed* k, Py_ssize_t n, Py_ssize_t T,
                       void* y) noexcept nogil:
    """y (n, m, T) C-contiguous: 0 at the steps where a column does not run."""
    cdef size_t item = 4 if single else 8
    cdef Py_ssize_t i, q, L
    for i in range(n):
        for q in range(k.m):
            L = k.sorted_lengths[q]
            if L < T:
                memset(<char*>y + ((i * k.m + k.order[q]) * T + L) * item, 0, (T - L) * item)


cdef tuple packed_forward(CellInfo info, int tn, cnp.ndarray x, cnp.ndarray a0, c0, list params,
                          packing, bint cache, int threads, x_given, parameters,
                          bint reverse=False, out=None, PackedCache packed_cache=None):
    """sequence_forward with variable lengths, on kernel-ready inputs: the
    columns sorted and packed (cyrnn/_packing.py), the driver on the packed
    buffers (the caches; without them, blocks in a workspace streaming their
    states into packed state buffers), then the outputs unpacked and the output
    head run."""
    cdef Py_ssize_t n_x = x.shape[0], m = x.shape[1], T = x.shape[2], n_a = a0.shape[0]
    cdef Packed k = packed_view(packing)
    cdef Py_ssize_t P = packing.columns
    a0p = np.ascontiguousarray(a0[:, packing.order])
    c0p = None if c0 is None else np.ascontiguousarray(c0[:, packing.order])
    X = new_array(tn, n_x, P)
    # the caches, or without them the packed states alone (RUN_STATE_BUFFERS)
    G = new_array(tn, info.spec.blocks * n_a, P) if cache else None
    A = G if cache and info.spec.gates_are_state else new_array(tn, n_a, P)
    C = new_array(tn, n_a, P) if info.spec.has_c else None
    cdef cnp.ndarray Wy = params[info.wy_index]
    cdef Forward r
    init_forward(&r, info, tn, n_x, n_a, Wy.shape[0], m, T)
    a = new_array(tn, n_a, m, T) if out is None else out
    c = new_array(tn, n_a, m, T) if info.spec.has_c else None
    y = new_array(tn, r.n_y, m, T)
    bounds = _packing.balanced_bounds(packing, n_chunks(m))
    keep = gate_weights(info, params, tn, n_x, n_a, True, &r.w, &r.b)
    r.x, r.x_time_major = data(X), True     # (the packed x, read in place)
    r.a0, r.c0 = data(a0p), data(c0p)
    r.by = data(params[info.by_index])      # (Wy: the head runs below)
    r.a_out, r.c_out, r.y_out = <void*>data(a), <void*>data(c), <void*>data(y)
    r.G, r.A, r.C, r.X = <void*>data(G), <void*>data(A), <void*>data(C), <void*>data(X)
    r.reverse = reverse
    r.offsets = <const Py_ssize_t*>data(packing.offsets)
    r.active = <const Py_ssize_t*>data(packing.active)
    r.bounds = <const Py_ssize_t*>data(bounds)
    r.ld = P
    r.keep_gates = cache
    r.plan = forward_plan(&r)
    keep = (keep, pack_for_plan(&r, params, packed_cache))
    r.mode = choose_run_mode(&r, cache, False)
    cdef const void* xp = data(x)
    cdef Py_ssize_t s0 = elem_stride(x, 0), s1 = elem_stride(x, 1), s2 = elem_stride(x, 2)
    with nogil:
        pack_into(r.single, &k, n_x, T, xp, s0, s1, s2, r.X, P)
    run_forward(&r, (X, a0p, c0p, params, keep, packing, bounds, a, y, G, A, C), threads,
                n_a * m * T if threads == 1 else 0)
    r.Wy = data(Wy)
    with nogil:
        unpack_into(r.single, &k, n_a, T, r.A, P, r.a_out)
        if r.C != NULL:
            unpack_into(r.single, &k, n_a, T, r.C, P, r.c_out)
        run_head(&r)
        zero_padding(r.single, &k, r.n_y, T, r.y_out)
    if not cache:
        return a, y, c, None
    return a, y, c, step_caches_of(info, G, A, C, a0, c0, X, x_given, parameters,
                                   packing.lengths, packing)
