# ------------------------------------------------------------------ the BLAS-only floor

cdef class GemmFloor:
    """GemmFloor(cell, n_x, n_a, n_y, m, T, dtype): .forward() / .backward()
    run the engine's driver for that problem with everything but the GEMMs
    switched off: the same plan (chunks, blocks, GEMM shapes and layouts) as
    the default call, nothing in between. No implementation of this design
    on this BLAS can be faster, which makes it the yardstick of benchmarks/.
    `plan`: the forward's recurrent-product orientation (one of
    FORWARD_PLANS) instead of the one the call would choose, so benchmarks
    show every candidate's floor. The forward runs in RUN_IN_BUFFERS with
    scratch buffers whatever the mode of the call it stands for."""
    cdef _ForwardJob fwd
    cdef _BackwardJob bwd

    def __init__(self, cell, Py_ssize_t n_x, Py_ssize_t n_a, Py_ssize_t n_y, Py_ssize_t m,
                 Py_ssize_t T, dtype=np.float64, plan=None):
        cdef CellInfo info = CELLS[cell]
        dtype = np.dtype(dtype)
        cdef int tn = cnp.NPY_FLOAT if dtype == np.float32 else cnp.NPY_DOUBLE
        rng = np.random.default_rng(0)

        def buf(*shape):
            return np.ascontiguousarray(rng.uniform(-0.5, 0.5, shape), dtype=dtype)

        dims = {_cells.ONE: 1, _cells.N_X: n_x, _cells.N_A: n_a, _cells.N_Y: n_y,
                _cells.N_A_PLUS_N_X: n_a + n_x}
        params = [buf(dims[rows], dims[cols]) for _, rows, cols, _ in info.cell.parameters]
        x, a0 = buf(n_x, m, T), buf(n_a, m)
        c0 = buf(n_a, m) if info.spec.has_c else None
        self.fwd = _ForwardJob.__new__(_ForwardJob)
        # the forward as inference runs it (scratch rows padded apart); the
        # backward on buffers in the caches' layout
        out = prepare_forward(info, tn, x, a0, c0, params, False, False, &self.fwd.r, None,
                              RUN_IN_BUFFERS)
        self.fwd.keep = (x, a0, c0, params, out)
        self.fwd.r.gemm_only = True
        cdef Forward cached
        out = prepare_forward(info, tn, x, a0, c0, params, True, False, &cached)
        if plan is not None:
            if plan not in FORWARD_PLANS:
                raise ValueError(f"plan must be one of {FORWARD_PLANS} or None; got {plan!r}")
            self.fwd.r.plan = plan_applies(FORWARD_PLANS.index(plan), m)
            self.fwd.keep += (pack_for_plan(&self.fwd.r),)
        G, A, C, X = out[3:7]
        self.bwd = _BackwardJob.__new__(_BackwardJob)
        run_backward(info, tn, False, buf(n_a, m, T), G, A, C, a0, c0, X, params, None, T,
                     False, True, self.bwd)

    def forward(self):
        self.fwd(0, n_chunks(self.fwd.r.m))

    def backward(self):
        self.bwd()
