# ------------------------------------------------------------------ the driver

cdef struct Forward:
    CellSpec cell
    Py_ssize_t n_x, n_a, n_y, m, T
    const void* x           # (n_x, m, T), element strides sx0..sx2
    Py_ssize_t sx0, sx1, sx2
    bint x_time_major       # x views a C-contiguous (n_x, T, m) buffer: read in place
    const void* a0          # (n_a, m)
    const void* c0          # (n_a, m); NULL: zeros
    GateWeights w
    const void* b           # (gates·n_a,)
    const void* Wy          # (n_y, n_a); NULL: no output head
    const void* by
    void* a_out             # (n_a, m, T); every output C-contiguous
    void* c_out             # (n_a, m, T) or NULL
    void* y_out             # (n_y, m, T) or NULL
    void* G                 # caches, time-major: (gates·n_a, T, m); NULL: none
    void* A                 # (n_a, T, m); the same buffer as G when gates_are_state
    void* C                 # (n_a, T, m) when has_c
    void* X                 # (n_x, T, m); NULL when x is read in place
    Py_ssize_t ld           # row stride of G, A, C, X: T·m (the caches' layout), more
                            # in inference scratch (scratch_ld), the columns when packed
    bint reverse            # run the steps from T-1 down to 0
    bint gemm_only          # the floor: GEMMs alone, nothing in between
    bint single             # float32 (else float64)
    int plan                # the recurrent products' orientation (PLAN_*, forward_plan())
    bint keep_gates         # G must hold the activated gates after each step (caches)
    # Variable lengths (SPEC §6), or NULL: every column runs every step. The
    # columns are sorted by length, longest first (the caller permutes a0, c0
    # and packs x), so the active[t] columns still running at step t are a
    # prefix; step t holds them at columns offsets[t].. of the packed
    # time-major buffers G, A, C, X (rows, offsets[T]), which are required
    # (no workspace mode, no reverse). The caller scatters the outputs and
    # runs the output head (Wy NULL here).
    const Py_ssize_t* offsets
    const Py_ssize_t* active
    # The chunks' column bounds (n_chunks(m) + 1), or NULL: chunk_start()'s.
    # Packed runs balance the chunks' work (their columns' summed lengths).
    const Py_ssize_t* bounds


cdef inline Py_ssize_t column(const Forward* r, Py_ssize_t t, Py_ssize_t j0) noexcept nogil:
    """Where column j0 of step t sits in the time-major caches."""
    return (t * r.m if r.offsets == NULL else r.offsets[t]) + j0


cdef inline Py_ssize_t running(const Py_ssize_t* active, Py_ssize_t t, Py_ssize_t j0,
                               Py_ssize_t j1) noexcept nogil:
    """How many of columns j0..j1-1 run at step t (a prefix of them)."""
    return j1 - j0 if active == NULL else max(0, min(j1, active[t]) - j0)


cdef inline void copy_rows(Py_ssize_t rows, Py_ssize_t cols, const floating* src, Py_ssize_t lds,
                           floating* dst, Py_ssize_t ldd) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(rows):
        memcpy(dst + i * ldd, src + i * lds, cols * sizeof(floating))


# A single step (T = 1: the cell functions) whose weights act on [a_prev; x]
# runs one GEMM on that concatenation instead of one per operand: a quarter
# fewer BLAS calls per gate block (lstm_cell_forward, medium shape: 8 GEMMs of
# K = 128 and 256 became 4 of K = 384).
cdef inline bint uses_concat(const CellSpec* cell, const GateWeights* w,
                             Py_ssize_t T) noexcept nogil:
    return T == 1 and w.on_concat and cell.concat_step


cdef inline void project_inputs(const CellSpec* cell, const GateWeights* w, Py_ssize_t n_a,
                                Py_ssize_t n_x, Py_ssize_t n, const floating* X,
                                Py_ssize_t ldx, floating* G, Py_ssize_t ldg) noexcept nogil:
    """G = Wx @ X into G's blocks as the cell places them (x_split, x_dest)."""
    gates_product(w, False, 0, cell.x_split, n_a, n_x, n, X, ldx, <floating>0, G, ldg)
    if cell.x_split < cell.gates:
        gates_product(w, False, cell.x_split, cell.gates, n_a, n_x, n, X, ldx, <floating>0,
                      G + cell.x_dest * n_a * ldg, ldg)


# Narrow batches with caches (under NARROW_ROW_BYTES per row and step) run
# their blocks in the workspace too, and each block is then copied into the
# caches' rows, whole: written in place, the time-major caches' rows are a few
# bytes per step, T·m apart, and every step touched a cache line of each of
# their thousands of rows (LSTM forward at m = 8, T = 2000: the cached call
# 1.23-1.29x the time of cache=False, staged 1.04-1.16x). Same GEMMs and
# kernels, same bits. Caches under STAGED_MIN_BYTES stay in the CPU's caches
# anyway, and the copy only costs there (small LSTM, float32: 1.3x the time).
cdef double STAGED_MIN_BYTES = 4.0 * 1024 * 1024


def _staged_bytes(double limit):
    """Set STAGED_MIN_BYTES (tests use 0 and inf to run both paths); returns
    the previous one."""
    global STAGED_MIN_BYTES
    old, STAGED_MIN_BYTES = STAGED_MIN_BYTES, limit
    return old


cdef inline bint staged_caches(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Whether a chunk of ms columns with caches runs staged (above)."""
    cdef Py_ssize_t item = 4 if r.single else 8
    return (r.G != NULL and ms == r.m and r.offsets == NULL and r.a_out != NULL
            and not r.gemm_only and not uses_concat(&r.cell, &r.w, r.T)
            and r.m * item < NARROW_ROW_BYTES
            and <double>block_rows(r) * r.T * r.m * item >= STAGED_MIN_BYTES)


cdef inline size_t workspace_size(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Elements of workspace a chunk of ms columns needs: concat for a single
    step, and without caches or staged a block's buffers (otherwise the blocks
    are windows of the cache buffers)."""
    cdef size_t concat = (r.n_a + r.n_x) * ms if (uses_concat(&r.cell, &r.w, r.T)
                                                  and r.offsets == NULL) else 0
    concat += plan_scratch(r, ms)
    if r.G != NULL and not staged_caches(r, ms):
        return concat
    return (block_rows(r) - (r.n_x if r.x_time_major else 0)) * block_ld(r, ms) \
        + 2 * r.n_a * ms + concat


cdef inline Py_ssize_t block_ld(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Row stride of a block's buffers in the workspace: its steps' columns, plus
    one cache line when that is a multiple of 256 bytes (rows a power of two
    apart alias in the L1 cache: LSTM inference at m = 1, blocks of 64 steps,
    ran 9% slower than with rows 100 steps apart)."""
    cdef Py_ssize_t ld = block_steps(r, ms) * ms
    cdef Py_ssize_t item = 4 if r.single else 8
    return ld + 64 // item if (ld * item) % 256 == 0 else ld


cdef inline size_t plan_scratch(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Elements the recurrent products' plan needs per chunk of ms columns (at
    the workspace's end, before concat's)."""
    return r.cell.gates * r.n_a * ms if r.plan == PLAN_TRANSPOSED and r.w.blocks == 1 else 0


cdef int forward_chunk(floating dummy, const Forward* r, Py_ssize_t j0, Py_ssize_t j1,
                       floating* ws) noexcept nogil:
    """Run columns j0..j1-1 over all steps; ws: workspace_size() elements."""
    cdef const CellSpec* cell = &r.cell
    cdef Py_ssize_t n_x = r.n_x, n_a = r.n_a, m = r.m, T = r.T, Tm = r.T * r.m
    cdef Py_ssize_t ms = j1 - j0, rows = cell.blocks * r.n_a
    cdef Py_ssize_t tb = block_steps(r, ms), tbb, s, p0, i, tt, width, span, last
    # Block buffers are windows of the cache buffers when there are caches
    # (direct), else a workspace of one block, reused (staged: then copied into
    # the caches). Packed (variable lengths) runs are direct, their steps
    # `column()` apart and `running()` wide.
    cdef bint staged = staged_caches(r, ms)
    cdef bint direct = r.G != NULL and not staged, whole = ms == m, packed = r.offsets != NULL
    # Wide batches in blocks stream each block's states into time-major buffers
    # A, C (prepare_forward's stage_states) and leave them in the user's layout
    # whole rows at a time at the end, as direct runs do: scattered block by
    # block, each block wrote a few steps into every output row, every cache
    # line of the outputs was read before being written, and twice (bigbatch
    # LSTM inference in blocks: 1.17x (float64) and 1.22x (float32) the time
    # of the run in scratch).
    cdef bint stage_states = not direct and not packed and r.A != NULL and not r.gemm_only
    cdef Py_ssize_t P = r.offsets[T] if packed else Tm      # columns of the caches
    cdef Py_ssize_t ld = r.ld if direct else block_ld(r, ms), step = m if direct else ms
    cdef Py_ssize_t col = j0 if direct else 0
    cdef bint gather_x = not r.x_time_major
    cdef Py_ssize_t ldx, stepx, colx
    cdef floating* Gbase
    cdef floating* Abase
    cdef floating* Cbase = NULL
    cdef floating* Xbase
    cdef floating* a_state = NULL
    cdef floating* c_state = NULL
    cdef bint concat = uses_concat(cell, &r.w, T) and r.offsets == NULL
    cdef Py_ssize_t ws_len = workspace_size(r, ms)
    cdef floating* cat = ws + (ws_len - (n_a + n_x) * ms) if concat else NULL
    cdef size_t scratch_len = plan_scratch(r, ms)
    cdef floating* scratch = ws + (ws_len - (n_a + n_x) * ms * concat - scratch_len) \
        if scratch_len else NULL
    cdef int q
    cdef floating* bufs[6]
    if not direct:
        carve_workspace(r, ms, ld, gather_x, ws, bufs)
        Gbase, Abase, Cbase, Xbase, a_state, c_state = \
            bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], bufs[5]
    else:
        Gbase, Abase, Cbase = <floating*>r.G, <floating*>r.A, <floating*>r.C
        Xbase = <floating*>r.X
    if not gather_x:
        Xbase, ldx, stepx, colx = <floating*>r.x, Tm, m, j0
    elif direct:
        ldx, stepx, colx = ld, m, j0
    else:
        ldx, stepx, colx = ld, ms, 0
    cdef const floating* x = <const floating*>r.x
    cdef const floating* b = <const floating*>r.b
    cdef const floating* a_prev = <const floating*>r.a0 + j0
    cdef const floating* c_prev = NULL if r.c0 == NULL else <const floating*>r.c0 + j0
    cdef Py_ssize_t ld_ap = m, ld_cp = m
    # (packed, reversed: the initial states, and the columns started so far)
    cdef const floating* a_first = a_prev
    cdef const floating* c_first = c_prev
    cdef Py_ssize_t started = 0, start
    cdef floating* Gb
    cdef floating* Ab
    cdef floating* Cb
    cdef floating* Xb
    # NULL: the states stay in A, time-major (a direct run's buffer, _run_direction's out)
    cdef floating* a_out = <floating*>r.a_out + j0 * T if r.a_out != NULL else NULL
    # the buffers the blocks below must stay inside (checked by the debug build)
    cdef size_t item = sizeof(floating)
    cdef const void* G_buf = r.G if direct else ws
    cdef const void* A_buf = r.A if direct else ws
    cdef const void* C_buf = r.C if direct else ws
    cdef const void* X_buf = r.x if not gather_x else (r.X if direct else ws)
    cdef Py_ssize_t G_len = rows * ld if direct else ws_len
    cdef Py_ssize_t A_len = n_a * ld if direct else ws_len
    cdef Py_ssize_t X_len = n_x * Tm if not gather_x else (n_x * ld if direct else ws_len)
    if gather_x and direct and not r.gemm_only and not packed:
        # all steps into the X cache at once: whole 64-byte lines of x (blocks of
        # steps would read the lines at their edges twice)
        check_block("X", Xbase + j0, n_x, ld, (T - 1) * m + ms, X_buf, X_len, item)
        gather_time_major(n_x, ms, T, x + j0 * r.sx1, r.sx0, r.sx1, r.sx2, Xbase + j0, ld, m)
    s = 0
    while s < T:
        tbb = min(tb, T - s)
        p0 = T - s - tbb if r.reverse else s    # first step of the block, in time
        Gb = Gbase + (column(r, p0, j0) if direct else 0)
        Ab = Abase + (column(r, p0, j0) if direct else 0)
        Cb = Cbase + (column(r, p0, j0) if direct else 0) if cell.has_c else NULL
        Xb = Xbase + (column(r, p0, j0) if packed else
                      p0 * stepx + colx if (direct or not gather_x) else 0)
        # the block's columns: its steps one after another (packed: as wide as they
        # run, up to the last step where the chunk has a column running)
        last = p0 + tbb - 1
        while packed and last > p0 and running(r.active, last, j0, j1) == 0:
            last -= 1
        span = (column(r, last, j0) - column(r, p0, j0)
                + running(r.active, last, j0, j1)) if direct else (tbb - 1) * step + ms
        check_block("X block", Xb, n_x, ldx, span if packed else (tbb - 1) * stepx + ms, X_buf,
                    X_len, item)
        check_block("G block", Gb, rows, ld, span, G_buf, G_len, item)
        check_block("A block", Ab, n_a, ld, span, A_buf, A_len, item)
        if cell.has_c:
            check_block("C block", Cb, n_a, ld, span, C_buf, A_len, item)
        if gather_x and not direct and not r.gemm_only:
            gather_time_major(n_x, ms, tbb, x + j0 * r.sx1 + p0 * r.sx2, r.sx0, r.sx1, r.sx2,
                              Xb, ldx, stepx)
        if concat:
            # G = W @ [a_prev; x], one GEMM per row block (T = 1)
            copy_rows(n_a, ms, a_prev, ld_ap, cat, ms)
            copy_rows(n_x, ms, Xb, ldx, cat + n_a * ms, ms)
            for q in range(r.w.blocks):
                gemm(False, False, r.w.block_rows, ms, n_a + n_x, <floating>1,
                     <const floating*>r.w.Wa[q], r.w.ldwa[q], cat, ms, <floating>0,
                     Gb + q * r.w.block_rows * ld, ld)
        # G = Wx @ X for the block's steps: one GEMM when they are contiguous columns
        elif whole:
            project_inputs(cell, &r.w, n_a, n_x, span, Xb, ldx, Gb, ld)
        else:
            for tt in range(tbb):
                width = running(r.active, p0 + tt, j0, j1)
                span = column(r, p0 + tt, j0) - column(r, p0, j0) if packed else tt * step
                project_inputs(cell, &r.w, n_a, n_x, width,
                               Xb + (span if packed else tt * stepx), ldx, Gb + span, ld)
        for i in range(tbb):
            tt = tbb - 1 - i if r.reverse else i
            width = running(r.active, p0 + tt, j0, j1)
            if width == 0:
                if r.reverse:
                    continue    # (packed, reversed: no column of the chunk has started)
                break           # (packed: no column of the chunk runs any more)
            span = column(r, p0 + tt, j0) - column(r, p0, j0) if packed else tt * step
            # the recurrent products and the cell's kernels, on the columns that run;
            # packed and reversed, columns start at their own last step, from a0, c0
            start = started if packed and r.reverse else 0
            if start > 0:
                step_forward(cell, &r.w, n_a, start, Gb + span, ld, b, a_prev, ld_ap, c_prev,
                             ld_cp, Cb + span if cell.has_c else NULL, Ab + span,
                             not concat, not r.gemm_only, scratch, r.keep_gates,
                             r.plan == PLAN_GEMV, plan_row_block(r.plan))
            if width > start:
                step_forward(cell, &r.w, n_a, width - start, Gb + span + start, ld, b,
                             (a_prev if start == 0 else a_first) + start,
                             ld_ap if start == 0 else m,
                             (c_prev if start == 0 else c_first) + start
                             if (c_prev if start == 0 else c_first) != NULL else NULL,
                             ld_cp if start == 0 else m,
                             Cb + span + start if cell.has_c else NULL, Ab + span + start,
                             not concat, not r.gemm_only, scratch, r.keep_gates,
                             r.plan == PLAN_GEMV, plan_row_block(r.plan))
            started = width
            a_prev, ld_ap = Ab + span, ld
            if cell.has_c:
                c_prev, ld_cp = Cb + span, ld
        if staged:
            stage_block(r, tbb * m, Gbase, Abase, Cbase,
                        Xbase if gather_x and r.X != NULL else NULL, ld, p0 * m, 0, n_a, 0, n_x)
        if stage_states:
            stage_states_block(r, tbb, ms, j0, p0, Ab, Cb, ld)
        elif not direct:
            check_block("a", a_out + p0, n_a, m * T, (ms - 1) * T + tbb, r.a_out, n_a * Tm, item)
            if not r.gemm_only:
                scatter_batch_major(n_a, ms, tbb, Ab, ld, step, a_out + p0, m * T, T)
                if r.c_out != NULL:
                    scatter_batch_major(n_a, ms, tbb, Cb, ld, step,
                                        <floating*>r.c_out + j0 * T + p0, m * T, T)
        if not direct:
            # the next block overwrites the workspace: carry the states out of it
            if s + tbb < T:
                check_block("states", a_state, 2 * n_a, ms, ms, ws, ws_len, item)
                copy_rows(n_a, ms, a_prev, ld, a_state, ms)
                a_prev, ld_ap = a_state, ms
                if cell.has_c:
                    copy_rows(n_a, ms, c_prev, ld, c_state, ms)
                    c_prev, ld_cp = c_state, ms
        s += tbb
    if (direct or stage_states) and not r.gemm_only and not packed:
        # whole rows of the outputs at once from the time-major states, the caches'
        # or the staged ones (see scatter_batch_major's staging)
        if a_out != NULL:
            check_block("A rows", <floating*>r.A + j0, n_a, r.ld, (T - 1) * m + ms, r.A,
                        n_a * r.ld, item)
            check_block("a", a_out, n_a, m * T, ms * T, r.a_out, n_a * Tm, item)
            scatter_batch_major(n_a, ms, T, <floating*>r.A + j0, r.ld, m, a_out, m * T, T)
        if r.c_out != NULL:
            check_block("C rows", <floating*>r.C + j0, n_a, r.ld, (T - 1) * m + ms, r.C,
                        n_a * r.ld, item)
            check_block("c", <floating*>r.c_out + j0 * T, n_a, m * T, ms * T, r.c_out,
                        n_a * Tm, item)
            scatter_batch_major(n_a, ms, T, <floating*>r.C + j0, r.ld, m,
                                <floating*>r.c_out + j0 * T, m * T, T)
    if a_out != NULL:
        output_head(r, j0, ms, a_out)
    return 0


cdef inline void stage_states_block(const Forward* r, Py_ssize_t tbb, Py_ssize_t ms,
                                    Py_ssize_t j0, Py_ssize_t p0, const floating* Ab,
                                    const floating* Cb, Py_ssize_t ldw) noexcept nogil:
    """Stream a block's states (tbb steps of columns j0..j0+ms-1 from step p0 on,
    in the workspace: rows ldw apart, steps ms apart) into the time-major state
    buffers r.A, r.C (forward_chunk's stage_states)."""
    cdef Py_ssize_t n_a = r.n_a, m = r.m, ld = r.ld, tt
    cdef size_t item = sizeof(floating)
    cdef floating* A = <floating*>r.A + p0 * m + j0
    cdef floating* C = <floating*>r.C + p0 * m + j0 if r.cell.has_c else NULL
    check_block("A staged", A, n_a, ld, (tbb - 1) * m + ms, r.A, n_a * ld, item)
    if C != NULL:
        check_block("C staged", C, n_a, ld, (tbb - 1) * m + ms, r.C, n_a * ld, item)
    if ms == m:     # the block's steps are contiguous columns on both sides
        stream_rows(n_a, tbb * m, Ab, ldw, A, ld)
        if C != NULL:
            stream_rows(n_a, tbb * m, Cb, ldw, C, ld)
        return
    for tt in range(tbb):
        stream_rows(n_a, ms, Ab + tt * ms, ldw, A + tt * m, ld)
        if C != NULL:
            stream_rows(n_a, ms, Cb + tt * ms, ldw, C + tt * m, ld)


cdef inline void stage_block(const Forward* r, Py_ssize_t cols, const floating* Gw,
                             const floating* Aw, const floating* Cw, const floating* Xw,
                             Py_ssize_t ldw, Py_ssize_t col, Py_ssize_t u0, Py_ssize_t u1,
                             Py_ssize_t x0, Py_ssize_t x1) noexcept nogil:
    """Copy units u0..u1-1 and input rows x0..x1-1 of a staged block (its cols
    columns of each workspace buffer, rows ldw apart; Xw NULL: x is read in
    place) into the caches from column col on."""
    cdef Py_ssize_t n_a = r.n_a, rows = r.cell.blocks * r.n_a, ld = r.ld, n = u1 - u0, q
    cdef size_t item = sizeof(floating)
    for q in range(r.cell.blocks):
        check_block("G stage", <floating*>r.G + (q * n_a + u0) * ld + col, n, ld, cols, r.G,
                    rows * ld, item)
        stream_rows(n, cols, Gw + (q * n_a + u0) * ldw, ldw,
                    <floating*>r.G + (q * n_a + u0) * ld + col, ld)
    if not r.cell.gates_are_state:
        check_block("A stage", <floating*>r.A + u0 * ld + col, n, ld, cols, r.A, n_a * ld, item)
        stream_rows(n, cols, Aw + u0 * ldw, ldw, <floating*>r.A + u0 * ld + col, ld)
    if r.cell.has_c:
        check_block("C stage", <floating*>r.C + u0 * ld + col, n, ld, cols, r.C, n_a * ld, item)
        stream_rows(n, cols, Cw + u0 * ldw, ldw, <floating*>r.C + u0 * ld + col, ld)
    if Xw != NULL:
        check_block("X stage", <floating*>r.X + x0 * ld + col, x1 - x0, ld, cols, r.X,
                    r.n_x * ld, item)
        stream_rows(x1 - x0, cols, Xw + x0 * ldw, ldw, <floating*>r.X + x0 * ld + col, ld)


cdef inline void output_head(const Forward* r, Py_ssize_t j0, Py_ssize_t ms,
                             const floating* a_out) noexcept nogil:
    """y = softmax(Wy @ a + by) for columns j0..j0+ms-1 (a_out: theirs, in the
    user's layout: no layout change)."""
    cdef Py_ssize_t T = r.T, mT = r.m * r.T
    if r.Wy == NULL or r.n_y <= 0:
        return
    check_block("y", <floating*>r.y_out + j0 * T, r.n_y, mT, ms * T, r.y_out, r.n_y * mT,
                sizeof(floating))
    gemm(False, False, r.n_y, ms * T, r.n_a, <floating>1, <const floating*>r.Wy, r.n_a,
         a_out, mT, <floating>0, <floating*>r.y_out + j0 * T, mT)
    if not r.gemm_only:
        softmax_columns(r.n_y, ms * T, <floating*>r.y_out + j0 * T, mT, <const floating*>r.by)
