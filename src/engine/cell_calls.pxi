# ------------------------------------------------------------------ cell calls
# One step (T = 1) through the same driver: the notebook's cell functions.

cdef tuple cell_forward(CellInfo info, xt, a_prev, c_prev, parameters):
    """(a_next, c_next, yt_pred, gates) of one step; c_next None for cells
    without one; gates: views of the activated gate block, one per gate."""
    cdef int tn = float_typenum(xt)
    cdef list params = None
    cdef Py_ssize_t n_x, m, n_a
    if (tn >= 0 and ready(xt, tn, 2, -1)
            and ready(a_prev, tn, 2, -1, cnp.PyArray_DIMS(<cnp.ndarray>xt)[1])
            and (not info.spec.has_c or ready(c_prev, tn, 2,
                                              cnp.PyArray_DIMS(<cnp.ndarray>a_prev)[0],
                                              cnp.PyArray_DIMS(<cnp.ndarray>xt)[1]))):
        n_x = cnp.PyArray_DIMS(<cnp.ndarray>xt)[0]
        m = cnp.PyArray_DIMS(<cnp.ndarray>xt)[1]
        n_a = cnp.PyArray_DIMS(<cnp.ndarray>a_prev)[0]
        params = fast_parameters(info, parameters, tn, n_x, n_a)
        if params is not None and not blas_sizes_fit(
                m, info.spec.blocks * n_a + n_x,
                cnp.PyArray_DIMS(<cnp.ndarray>params[info.wy_index])[0]):
            params = None
    if params is None:
        xt, a_prev, c_prev, p = _validation.forward_inputs(info.cell, xt, a_prev, c_prev,
                                                           parameters, False)
        params = validated_parameters(info, p)
        tn = float_typenum(xt)
    n_x = cnp.PyArray_DIMS(<cnp.ndarray>xt)[0]
    m = cnp.PyArray_DIMS(<cnp.ndarray>xt)[1]
    n_a = cnp.PyArray_DIMS(<cnp.ndarray>a_prev)[0]
    cdef Py_ssize_t rows = info.spec.gates * n_a, width = n_a + n_x, q
    cdef cnp.ndarray Wy = params[info.wy_index]
    cdef Forward r
    init_forward(&r, info, tn, n_x, n_a, Wy.shape[0], m, 1)
    # small cells' stacked weights and bias on the stack, not in new arrays
    cdef double stacked[STEP_STACK_ELEMENTS]
    keep = gate_weights(info, params, tn, n_x, n_a, rows * width <= STACK_LIMIT, &r.w, &r.b,
                        <char*>stacked, sizeof(stacked))
    rows = info.spec.blocks * n_a
    a = new_array(tn, n_a, m)
    y = new_array(tn, r.n_y, m)
    c = new_array(tn, n_a, m) if info.spec.has_c else None
    G = a if info.spec.gates_are_state else new_array(tn, rows, m)
    # T = 1 (RUN_IN_BUFFERS, plan direct: the concat GEMM or one product): the
    # outputs are the time-major buffers themselves, xt is read in place
    r.x, r.x_time_major, r.sx0, r.sx1, r.sx2 = data(xt), True, m, 1, m
    r.a0, r.c0 = data(a_prev), data(c_prev)
    r.Wy, r.by = data(Wy), data(params[info.by_index])
    r.a_out, r.c_out, r.y_out = <void*>data(a), <void*>data(c), <void*>data(y)
    r.G, r.A, r.C = <void*>data(G), <void*>data(a), <void*>data(c)
    r.ld, r.keep_gates = m, True
    cdef int status
    if holds_gil_worth_releasing(<double>m * (rows * width + r.n_y * n_a)):
        with nogil:
            status = run_one_step(&r)
    else:
        status = run_one_step(&r)
    if status != 0:
        raise MemoryError("could not allocate the workspace")
    if info.spec.gates_are_state:
        return a, c, y, ()
    cdef tuple gates = PyTuple_New(info.n_gate_cache)
    for q in range(info.n_gate_cache):
        view = block_view(G, info.gate_block[q] * n_a * m, n_a, m)
        Py_INCREF(view)
        PyTuple_SET_ITEM(gates, q, view)
    return a, c, y, gates


cdef enum:
    # a cell call's concat, stacked weights and bias on the stack up to this size
    STEP_STACK_ELEMENTS = 1024


cdef int run_one_step(const Forward* r) noexcept nogil:
    """A cell call: one chunk's step at once (forward_step), or the chunks."""
    cdef size_t need = workspace_size(r, r.m)
    cdef double stack[STEP_STACK_ELEMENTS]
    cdef void* ws = <void*>stack
    cdef unsigned int csr
    cdef int status = 0
    if n_chunks(r.m) > 1:
        return forward_chunks(r, 0, n_chunks(r.m), NULL)
    if need > STEP_STACK_ELEMENTS:
        ws = malloc(need * item_size(r))
        if ws == NULL:
            return -1
    csr = cyrnn_ftz_begin()
    probe_gil()
    if r.single:
        status = forward_step[float](0, r, <float*>ws)
    else:
        status = forward_step[double](0, r, <double*>ws)
    cyrnn_ftz_end(csr)
    if ws != <void*>stack:
        free(ws)
    return status
