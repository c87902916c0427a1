# ------------------------------------------------------------------ the forward driver
# A call runs its column chunks (blocking.pxi) one after another or on
# threads; a chunk runs its steps in blocks: per block, the inputs' projection
# G = Wx @ X over the block's steps (one GEMM when they are contiguous
# columns), then step by step the recurrent product and the cell's kernels
# (src/_cells.pxd step_forward), then the block's states go where the run mode
# (modes.pxi) keeps them.

cdef struct Forward:
    CellSpec cell
    Py_ssize_t n_x, n_a, n_y, m, T
    const void* x           # (n_x, m, T), element strides sx0..sx2
    Py_ssize_t sx0, sx1, sx2
    bint x_time_major       # x views a C-contiguous (n_x, T, m) buffer (or, with lengths,
                            # is the packed X): read in place
    const void* a0          # (n_a, m)
    const void* c0          # (n_a, m); NULL: zeros
    GateWeights w
    const void* b           # (gates·n_a,)
    const void* Wy          # (n_y, n_a); NULL: no output head
    const void* by
    void* a_out             # (n_a, m, T) C-contiguous, or NULL: the states stay in A
    void* c_out             # (n_a, m, T) or NULL
    void* y_out             # (n_y, m, T) or NULL
    int mode                # RunMode (modes.pxi): which of the buffers below exist
    void* G                 # time-major gates (gates·n_a, ·); NULL: none
    void* A                 # states (n_a, ·); the same buffer as G when gates_are_state
    void* C                 # cell states (n_a, ·) when has_c
    void* X                 # inputs (n_x, ·); NULL when x is read in place
    Py_ssize_t ld           # row stride of G, A, C, X
    bint reverse            # run the steps from T-1 down to 0
    bint gemm_only          # the floor: GEMMs alone, nothing in between
    bint single             # float32 (else float64)
    int plan                # the recurrent product's plan (PLAN_*, forward_plan())
    const PackedWeights* packed     # the packed plan's weights (plans.pxi), else NULL
    int threads             # threads the call runs on (a packed split run's parts)
    bint keep_gates         # G must hold the activated gates after each step (caches)
    # Variable lengths, or NULL: every column runs every step. The columns are
    # sorted by length, longest first (the caller permutes a0, c0 and packs x),
    # so the active[t] columns still running at step t are a prefix; step t
    # holds them at columns offsets[t].. of the packed buffers G, A, C, X
    # (RUN_IN_BUFFERS). The caller scatters the outputs and runs the output
    # head (Wy NULL here).
    const Py_ssize_t* offsets
    const Py_ssize_t* active
    # The chunks' column bounds (n_chunks(m) + 1), or NULL: chunk_start()'s.
    # Packed runs balance the chunks' work (their columns' summed lengths).
    const Py_ssize_t* bounds


cdef void init_forward(Forward* r, CellInfo info, int tn, Py_ssize_t n_x, Py_ssize_t n_a,
                       Py_ssize_t n_y, Py_ssize_t m, Py_ssize_t T) noexcept:
    """r with its sizes filled in and every pointer and option off."""
    memset(r, 0, sizeof(Forward))
    r.cell = info.spec
    r.n_x, r.n_a, r.n_y, r.m, r.T = n_x, n_a, n_y, m, T
    r.single = tn == cnp.NPY_FLOAT
    r.plan = PLAN_DIRECT
    r.mode = RUN_IN_BUFFERS
    r.threads = 1


cdef inline Py_ssize_t column(const Forward* r, Py_ssize_t t, Py_ssize_t j0) noexcept nogil:
    """Where column j0 of step t sits in the time-major buffers of all steps."""
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


cdef inline void project_inputs(const CellSpec* cell, const GateWeights* w, Py_ssize_t n_a,
                                Py_ssize_t n_x, Py_ssize_t n, const floating* X,
                                Py_ssize_t ldx, floating* G, Py_ssize_t ldg) noexcept nogil:
    """G = Wx @ X into G's blocks as the cell places them (x_split, x_dest)."""
    if w.blocks == 1:
        project_rows(cell.x_split, cell.x_dest, w, 0, cell.gates * n_a, n_a, n_x, n, X, ldx, G,
                     ldg)
        return
    gates_product(w, False, 0, cell.x_split, n_a, n_x, n, X, ldx, <floating>0, G, ldg)
    if cell.x_split < cell.gates:
        gates_product(w, False, cell.x_split, cell.gates, n_a, n_x, n, X, ldx, <floating>0,
                      G + cell.x_dest * n_a * ldg, ldg)


cdef struct Chunk:
    # One chunk's run: where its blocks live and where it stands.
    const Forward* r
    Py_ssize_t j0, j1, ms, tb       # its columns, their count, steps per block
    BlockBuffers buf                # where the blocks live
    bint packed, concat
    Py_ssize_t step                 # columns from a step to the next in the blocks
    Py_ssize_t ldx, stepx, colx     # X's row stride and step, the chunk's first column there
    void* cat                       # concat = [a_prev; x] of a single step
    void* ws
    Py_ssize_t ws_len
    Product product
    const void* a_prev              # the states the next step starts from
    const void* c_prev
    Py_ssize_t ld_ap, ld_cp
    Py_ssize_t started              # packed and reversed: columns started so far
    Py_ssize_t s, tbb, p0, span     # the block: s-th step processed, tbb steps from p0
    Py_ssize_t xspan                # its columns in X
    void* Gb
    void* Ab
    void* Cb
    void* Xb


cdef inline void chunk_init(floating dummy, Chunk* c, const Forward* r, Py_ssize_t j0,
                            Py_ssize_t j1, floating* ws) noexcept nogil:
    cdef Py_ssize_t ms = j1 - j0, m = r.m
    cdef size_t scratch_len = plan_scratch(r, ms)
    c.r, c.j0, c.j1, c.ms, c.tb = r, j0, j1, ms, block_steps(r, ms)
    block_buffers(dummy, &c.buf, r, ms, ws)
    c.packed = r.offsets != NULL
    c.concat = uses_concat(&r.cell, &r.w, r.T) and r.offsets == NULL
    c.ws, c.ws_len = ws, workspace_size(r, ms)
    c.step = m if c.buf.in_buffers else ms
    if not c.buf.gather_x:
        c.ldx, c.stepx, c.colx = (r.ld if c.packed else r.T * m), m, j0
    else:
        c.ldx, c.stepx, c.colx = c.buf.ld, c.step, j0 if c.buf.in_buffers else 0
    # the workspace's end: the plan's scratch, then concat
    c.cat = ws + c.ws_len - (r.n_a + r.n_x) * ms if c.concat else NULL
    c.product = product_of(r.plan, ws + (c.ws_len - (r.n_a + r.n_x) * ms * c.concat
                                         - scratch_len) if scratch_len else NULL, r.packed)
    c.a_prev, c.ld_ap = <const floating*>r.a0 + j0, m
    c.c_prev, c.ld_cp = (<const floating*>r.c0 + j0 if r.c0 != NULL else NULL), m
    c.started = 0


cdef inline void check_chunk_block(floating dummy, const Chunk* c) noexcept nogil:
    """The debug build's checks of the block against its buffers."""
    cdef const Forward* r = c.r
    cdef size_t item = sizeof(floating)
    cdef Py_ssize_t rows = r.cell.blocks * r.n_a, mT = r.m * r.T
    cdef const void* G_buf = r.G if c.buf.in_buffers else c.ws
    cdef const void* A_buf = r.A if c.buf.in_buffers else c.ws
    cdef const void* C_buf = r.C if c.buf.in_buffers else c.ws
    cdef const void* X_buf = r.x if not c.buf.gather_x else (r.X if c.buf.in_buffers else c.ws)
    cdef Py_ssize_t G_len = rows * c.buf.ld if c.buf.in_buffers else c.ws_len
    cdef Py_ssize_t A_len = r.n_a * c.buf.ld if c.buf.in_buffers else c.ws_len
    cdef Py_ssize_t X_len = r.n_x * (r.ld if c.packed else mT) if not c.buf.gather_x else (
        r.n_x * c.buf.ld if c.buf.in_buffers else c.ws_len)
    check_block("X block", c.Xb, r.n_x, c.ldx, c.xspan, X_buf, X_len, item)
    check_block("G block", c.Gb, rows, c.buf.ld, c.span, G_buf, G_len, item)
    check_block("A block", c.Ab, r.n_a, c.buf.ld, c.span, A_buf, A_len, item)
    if r.cell.has_c:
        check_block("C block", c.Cb, r.n_a, c.buf.ld, c.span, C_buf, A_len, item)
    if c.product.scratch != NULL:
        check_block("plan scratch", c.product.scratch, 1, 0, plan_scratch(r, c.ms), c.ws,
                    c.ws_len, item)


cdef inline void block_init(floating dummy, Chunk* c) noexcept nogil:
    """Lay out the block that starts at the c.s-th step processed."""
    cdef const Forward* r = c.r
    cdef Py_ssize_t j0 = c.j0, last, base
    c.tbb = min(c.tb, r.T - c.s)
    c.p0 = r.T - c.s - c.tbb if r.reverse else c.s      # its first step, in time
    base = column(r, c.p0, j0) if c.buf.in_buffers else 0
    c.Gb = <floating*>c.buf.G + base
    c.Ab = <floating*>c.buf.A + base
    c.Cb = <floating*>c.buf.C + base if r.cell.has_c else NULL
    c.Xb = <floating*>c.buf.X + (column(r, c.p0, j0) if c.packed else
                             c.p0 * c.stepx + c.colx if (c.buf.in_buffers or not c.buf.gather_x)
                             else 0)
    # its columns: its steps one after another (packed: as wide as they run, up
    # to the last step where the chunk has a column running)
    last = c.p0 + c.tbb - 1
    while c.packed and last > c.p0 and running(r.active, last, j0, c.j1) == 0:
        last -= 1
    c.xspan = (column(r, last, j0) - column(r, c.p0, j0) + running(r.active, last, j0, c.j1)
               if c.packed else (c.tbb - 1) * c.stepx + c.ms)
    c.span = (column(r, last, j0) - column(r, c.p0, j0) + running(r.active, last, j0, c.j1)
              if c.buf.in_buffers or (c.packed and c.ms == r.m) else (c.tbb - 1) * c.step + c.ms)
    check_chunk_block(dummy, c)


cdef inline Py_ssize_t packed_offset(const Chunk* c, Py_ssize_t tt) noexcept nogil:
    """Columns from the block's first step to its tt-th in packed buffers."""
    return column(c.r, c.p0 + tt, c.j0) - column(c.r, c.p0, c.j0)


cdef inline Py_ssize_t step_offset(const Chunk* c, Py_ssize_t tt) noexcept nogil:
    """Columns from the block's first step to its tt-th in the blocks' buffers:
    packed in the packed buffers, and in the workspace when the chunk is the
    whole batch (its steps' packed columns are then contiguous); else tt steps
    of the chunk's columns."""
    if c.packed and (c.buf.in_buffers or c.ms == c.r.m):
        return packed_offset(c, tt)
    return tt * c.step


cdef inline void block_inputs(floating dummy, Chunk* c) noexcept nogil:
    """The block's inputs in X (gathered into the workspace) and their
    projection into G (a single step: the whole product on concat)."""
    cdef const Forward* r = c.r
    cdef Py_ssize_t n_a = r.n_a, n_x = r.n_x, ms = c.ms, tt, width, off
    cdef floating* Gb = <floating*>c.Gb
    cdef floating* Xb = <floating*>c.Xb
    cdef floating* cat = <floating*>c.cat
    if c.buf.gather_x and not c.buf.in_buffers and not r.gemm_only:
        gather_time_major(n_x, ms, c.tbb, <const floating*>r.x + c.j0 * r.sx1 + c.p0 * r.sx2,
                          r.sx0, r.sx1, r.sx2, Xb, c.ldx, c.stepx)
    if c.concat:
        concat_product(dummy, r, ms, <const floating*>c.a_prev, c.ld_ap, Xb, c.ldx, cat, Gb,
                       c.buf.ld)
    elif ms == r.m:
        # the block's steps are contiguous columns: one GEMM
        project_inputs(&r.cell, &r.w, n_a, n_x, c.span, Xb, c.ldx, Gb, c.buf.ld)
    else:
        for tt in range(c.tbb):
            width = running(r.active, c.p0 + tt, c.j0, c.j1)
            project_inputs(&r.cell, &r.w, n_a, n_x, width,
                           Xb + (packed_offset(c, tt) if c.packed else tt * c.stepx), c.ldx,
                           Gb + step_offset(c, tt), c.buf.ld)


cdef inline void concat_product(floating dummy, const Forward* r, Py_ssize_t ms,
                                const floating* a_prev, Py_ssize_t ld_ap, const floating* X,
                                Py_ssize_t ldx, floating* cat, floating* G,
                                Py_ssize_t ld) noexcept nogil:
    """A single step's whole product G = W @ [a_prev; x] (T = 1): one GEMM per
    row block on the concatenation, copied into cat ((n_a + n_x)·ms)."""
    cdef int q
    copy_rows(r.n_a, ms, a_prev, ld_ap, cat, ms)
    copy_rows(r.n_x, ms, X, ldx, cat + r.n_a * ms, ms)
    for q in range(r.w.blocks):
        gemm(False, False, r.w.block_rows, ms, r.n_a + r.n_x, <floating>1,
             <const floating*>r.w.Wa[q], r.w.ldwa[q], cat, ms, <floating>0,
             G + q * r.w.block_rows * ld, ld)


cdef inline void block_steps_run(floating dummy, Chunk* c) noexcept nogil:
    """The block's steps: recurrent products and kernels on the columns that run."""
    cdef const Forward* r = c.r
    cdef const CellSpec* cell = &r.cell
    cdef Py_ssize_t n_a = r.n_a, i, tt, width, off, start
    cdef floating* Gb = <floating*>c.Gb
    cdef floating* Ab = <floating*>c.Ab
    cdef floating* Cb = <floating*>c.Cb
    cdef const floating* b = <const floating*>r.b
    cdef const floating* a_prev = <const floating*>c.a_prev
    cdef const floating* c_prev = <const floating*>c.c_prev
    cdef const floating* a0 = <const floating*>r.a0 + c.j0
    cdef const floating* c0 = <const floating*>r.c0 + c.j0 if r.c0 != NULL else NULL
    for i in range(c.tbb):
        tt = c.tbb - 1 - i if r.reverse else i
        width = running(r.active, c.p0 + tt, c.j0, c.j1)
        if width == 0:
            if r.reverse:
                continue    # (packed, reversed: no column of the chunk has started)
            break           # (packed: no column of the chunk runs any more)
        off = step_offset(c, tt)
        # packed and reversed, columns start at their own last step, from a0, c0
        start = c.started if c.packed and r.reverse else 0
        if start > 0:
            step_forward(cell, &r.w, &c.product, n_a, start, Gb + off, c.buf.ld, b, a_prev,
                         c.ld_ap, c_prev, c.ld_cp, Cb + off if cell.has_c else NULL, Ab + off,
                         not c.concat, not r.gemm_only, r.keep_gates)
        if width > start and start > 0:
            step_forward(cell, &r.w, &c.product, n_a, width - start, Gb + off + start, c.buf.ld, b,
                         a0 + start, r.m, c0 + start if c0 != NULL else NULL, r.m,
                         Cb + off + start if cell.has_c else NULL, Ab + off + start,
                         not c.concat, not r.gemm_only, r.keep_gates)
        elif width > start:
            step_forward(cell, &r.w, &c.product, n_a, width, Gb + off, c.buf.ld, b, a_prev,
                         c.ld_ap, c_prev, c.ld_cp, Cb + off if cell.has_c else NULL, Ab + off,
                         not c.concat, not r.gemm_only, r.keep_gates)
        c.started = width
        a_prev, c.ld_ap = Ab + off, c.buf.ld
        if cell.has_c:
            c_prev, c.ld_cp = Cb + off, c.buf.ld
    c.a_prev, c.c_prev = a_prev, c_prev


cdef inline void block_finish(floating dummy, Chunk* c) noexcept nogil:
    """The block's states where the mode keeps them, and (workspace) the states
    the next block starts from carried out of it."""
    cdef const Forward* r = c.r
    cdef Py_ssize_t n_a = r.n_a, m = r.m, T = r.T, ms = c.ms
    cdef floating* a_out = <floating*>r.a_out + c.j0 * T if r.a_out != NULL else NULL
    if r.mode == RUN_COPIED_CACHES:
        copy_block(r, c.tbb * m, <floating*>c.buf.G, <floating*>c.buf.A, <floating*>c.buf.C,
                   <floating*>c.buf.X if c.buf.gather_x and r.X != NULL else NULL, c.buf.ld, c.p0 * m, 0,
                   n_a, 0, r.n_x)
    if r.mode == RUN_STATE_BUFFERS and c.packed:
        stream_packed_states(dummy, c)
    elif r.mode == RUN_STATE_BUFFERS:
        stream_block_states(r, c.tbb, ms, c.j0, c.p0, <floating*>c.Ab, <floating*>c.Cb, c.buf.ld)
    elif not c.buf.in_buffers:
        check_block("a", a_out + c.p0, n_a, m * T, (ms - 1) * T + c.tbb, r.a_out, n_a * m * T,
                    sizeof(floating))
        if not r.gemm_only:
            scatter_batch_major(n_a, ms, c.tbb, <floating*>c.Ab, c.buf.ld, c.step, a_out + c.p0,
                                m * T, T)
            if r.c_out != NULL:
                scatter_batch_major(n_a, ms, c.tbb, <floating*>c.Cb, c.buf.ld, c.step,
                                    <floating*>r.c_out + c.j0 * T + c.p0, m * T, T)
    if not c.buf.in_buffers and c.s + c.tbb < T:
        # the next block overwrites the workspace: carry the states out of it (from
        # where they are: a reversed packed block where none of the chunk's columns
        # has started yet still holds a0, c0 — rows m apart; c0 NULL is zeros)
        check_block("states", c.buf.a_state, 2 * n_a, ms, ms, c.ws, c.ws_len, sizeof(floating))
        copy_rows(n_a, ms, <const floating*>c.a_prev, c.ld_ap, <floating*>c.buf.a_state, ms)
        c.a_prev, c.ld_ap = c.buf.a_state, ms
        if r.cell.has_c and c.c_prev != NULL:
            copy_rows(n_a, ms, <const floating*>c.c_prev, c.ld_cp, <floating*>c.buf.c_state, ms)
            c.c_prev, c.ld_cp = c.buf.c_state, ms


cdef inline void stream_packed_states(floating dummy, const Chunk* c) noexcept nogil:
    """A packed block's states (the workspace's) to their packed columns of the
    state buffers r.A, r.C (RUN_STATE_BUFFERS with lengths)."""
    cdef Py_ssize_t tt
    if c.ms == c.r.m:     # the block's packed columns are contiguous on both sides
        stream_packed_columns(dummy, c, 0, c.span, 0)
        return
    for tt in range(c.tbb):
        stream_packed_columns(dummy, c, column(c.r, c.p0 + tt, c.j0),
                              running(c.r.active, c.p0 + tt, c.j0, c.j1), tt * c.step)


cdef inline void stream_packed_columns(floating dummy, const Chunk* c, Py_ssize_t at,
                                       Py_ssize_t width, Py_ssize_t off) noexcept nogil:
    """width columns of the block's states from column off of the workspace to
    column at of r.A, r.C (at 0 and off 0: the block's first packed column)."""
    cdef const Forward* r = c.r
    cdef Py_ssize_t n_a = r.n_a, ld = r.ld
    cdef size_t item = sizeof(floating)
    if width <= 0:
        return
    if at == 0 and off == 0:
        at = column(r, c.p0, c.j0)
    check_block("A state buffer", <floating*>r.A + at, n_a, ld, width, r.A, n_a * ld, item)
    stream_rows(n_a, width, <floating*>c.Ab + off, c.buf.ld, <floating*>r.A + at, ld)
    if r.C != NULL:
        check_block("C state buffer", <floating*>r.C + at, n_a, ld, width, r.C, n_a * ld, item)
        stream_rows(n_a, width, <floating*>c.Cb + off, c.buf.ld, <floating*>r.C + at, ld)


cdef inline void states_out_whole(floating dummy, const Forward* r, Py_ssize_t j0,
                                  Py_ssize_t ms) noexcept nogil:
    """Columns j0..j0+ms-1 of the time-major states (r.A, r.C, all steps) into
    the outputs, whole rows at a time."""
    cdef Py_ssize_t n_a = r.n_a, m = r.m, T = r.T
    cdef size_t item = sizeof(floating)
    if r.a_out != NULL and r.a_out != r.A:     # (one step: the output is A itself)
        check_block("A rows", <floating*>r.A + j0, n_a, r.ld, (T - 1) * m + ms, r.A,
                    n_a * r.ld, item)
        check_block("a", <floating*>r.a_out + j0 * T, n_a, m * T, ms * T, r.a_out, n_a * m * T,
                    item)
        scatter_batch_major(n_a, ms, T, <floating*>r.A + j0, r.ld, m,
                            <floating*>r.a_out + j0 * T, m * T, T)
    if r.c_out != NULL and r.c_out != r.C:
        check_block("C rows", <floating*>r.C + j0, n_a, r.ld, (T - 1) * m + ms, r.C,
                    n_a * r.ld, item)
        check_block("c", <floating*>r.c_out + j0 * T, n_a, m * T, ms * T, r.c_out,
                    n_a * m * T, item)
        scatter_batch_major(n_a, ms, T, <floating*>r.C + j0, r.ld, m,
                            <floating*>r.c_out + j0 * T, m * T, T)


cdef int forward_chunk(floating dummy, const Forward* r, Py_ssize_t j0, Py_ssize_t j1,
                       floating* ws) noexcept nogil:
    """Run columns j0..j1-1 over all steps; ws: workspace_size() elements."""
    cdef Chunk c
    chunk_init(dummy, &c, r, j0, j1, ws)
    if c.buf.gather_x and c.buf.in_buffers and not r.gemm_only and not c.packed:
        # all steps into X at once: whole 64-byte lines of x (blocks of steps
        # would read the lines at their edges twice)
        check_block("X", <floating*>c.buf.X + j0, r.n_x, c.buf.ld, (r.T - 1) * r.m + c.ms, r.X,
                    r.n_x * c.buf.ld, sizeof(floating))
        gather_time_major(r.n_x, c.ms, r.T, <const floating*>r.x + j0 * r.sx1, r.sx0, r.sx1,
                          r.sx2, <floating*>c.buf.X + j0, c.buf.ld, r.m)
    c.s = 0
    while c.s < r.T:
        block_init(dummy, &c)
        block_inputs(dummy, &c)
        block_steps_run(dummy, &c)
        block_finish(dummy, &c)
        c.s += c.tbb
    if ((c.buf.in_buffers or r.mode == RUN_STATE_BUFFERS) and not r.gemm_only
            and not c.packed):
        states_out_whole(dummy, r, j0, c.ms)
    if r.a_out != NULL:
        output_head(r, j0, c.ms, <floating*>r.a_out + j0 * r.T)
    return 0


cdef int forward_step(floating dummy, const Forward* r, floating* ws) noexcept nogil:
    """T = 1 in r's own buffers (rows m apart, x read in place), all m columns
    at once: the cell functions' step without the blocks' bookkeeping, the same
    calls as forward_chunk's. ws: workspace_size(r, m) elements."""
    cdef Product p = product_of(PLAN_DIRECT, NULL)
    cdef bint concat = uses_concat(&r.cell, &r.w, 1)
    cdef Py_ssize_t m = r.m
    cdef const floating* x = <const floating*>r.x
    cdef floating* G = <floating*>r.G
    if concat:
        concat_product(dummy, r, m, <const floating*>r.a0, m, x, m, ws, G, m)
    else:
        project_inputs(&r.cell, &r.w, r.n_a, r.n_x, m, x, m, G, m)
    step_forward(&r.cell, &r.w, &p, r.n_a, m, G, m, <const floating*>r.b,
                 <const floating*>r.a0, m, <const floating*>r.c0, m, <floating*>r.C,
                 <floating*>r.A, not concat, not r.gemm_only, r.keep_gates)
    output_head(r, 0, m, <const floating*>r.a_out)
    return 0


cdef inline void stream_block_states(const Forward* r, Py_ssize_t tbb, Py_ssize_t ms,
                                     Py_ssize_t j0, Py_ssize_t p0, const floating* Ab,
                                     const floating* Cb, Py_ssize_t ldw) noexcept nogil:
    """Stream a block's states (tbb steps of columns j0..j0+ms-1 from step p0 on,
    in the workspace: rows ldw apart, steps ms apart) into the time-major state
    buffers r.A, r.C (RUN_STATE_BUFFERS)."""
    cdef Py_ssize_t n_a = r.n_a, m = r.m, ld = r.ld, tt
    cdef size_t item = sizeof(floating)
    cdef floating* A = <floating*>r.A + p0 * m + j0
    cdef floating* C = <floating*>r.C + p0 * m + j0 if r.cell.has_c else NULL
    check_block("A state buffer", A, n_a, ld, (tbb - 1) * m + ms, r.A, n_a * ld, item)
    if C != NULL:
        check_block("C state buffer", C, n_a, ld, (tbb - 1) * m + ms, r.C, n_a * ld, item)
    if ms == m:     # the block's steps are contiguous columns on both sides
        stream_rows(n_a, tbb * m, Ab, ldw, A, ld)
        if C != NULL:
            stream_rows(n_a, tbb * m, Cb, ldw, C, ld)
        return
    for tt in range(tbb):
        stream_rows(n_a, ms, Ab + tt * ms, ldw, A + tt * m, ld)
        if C != NULL:
            stream_rows(n_a, ms, Cb + tt * ms, ldw, C + tt * m, ld)


cdef inline void copy_block(const Forward* r, Py_ssize_t cols, const floating* Gw,
                            const floating* Aw, const floating* Cw, const floating* Xw,
                            Py_ssize_t ldw, Py_ssize_t col, Py_ssize_t u0, Py_ssize_t u1,
                            Py_ssize_t x0, Py_ssize_t x1) noexcept nogil:
    """Copy units u0..u1-1 and input rows x0..x1-1 of a block (its cols columns
    of each workspace buffer, rows ldw apart; Xw NULL: x is read in place) into
    the caches from column col on (RUN_COPIED_CACHES)."""
    cdef Py_ssize_t n_a = r.n_a, rows = r.cell.blocks * r.n_a, ld = r.ld, n = u1 - u0, q
    cdef size_t item = sizeof(floating)
    for q in range(r.cell.blocks):
        check_block("G copy", <floating*>r.G + (q * n_a + u0) * ld + col, n, ld, cols, r.G,
                    rows * ld, item)
        stream_rows(n, cols, Gw + (q * n_a + u0) * ldw, ldw,
                    <floating*>r.G + (q * n_a + u0) * ld + col, ld)
    if not r.cell.gates_are_state:
        check_block("A copy", <floating*>r.A + u0 * ld + col, n, ld, cols, r.A, n_a * ld, item)
        stream_rows(n, cols, Aw + u0 * ldw, ldw, <floating*>r.A + u0 * ld + col, ld)
    if r.cell.has_c:
        check_block("C copy", <floating*>r.C + u0 * ld + col, n, ld, cols, r.C, n_a * ld, item)
        stream_rows(n, cols, Cw + u0 * ldw, ldw, <floating*>r.C + u0 * ld + col, ld)
    if Xw != NULL:
        check_block("X copy", <floating*>r.X + x0 * ld + col, x1 - x0, ld, cols, r.X,
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


cdef void run_head(const Forward* r) noexcept nogil:
    if r.single:
        output_head[float](r, 0, r.m, <const float*>r.a_out)
    else:
        output_head[double](r, 0, r.m, <const double*>r.a_out)


cdef int forward_range(floating dummy, const Forward* r, Py_ssize_t first, Py_ssize_t last,
                       floating* ws) noexcept nogil:
    """Chunks first..last-1 of r (a split run when r runs split)."""
    cdef Py_ssize_t n = n_chunks(r.m), k, j0, j1
    cdef Split sp
    cdef int status = 0
    if runs_split(r) and first < last:
        split_init(dummy, &sp, r, ws, 1)
        split_work(&sp)
        cyrnn_wait_done(&sp.tickets, sp.total)
        if r.a_out != NULL:
            output_head(r, 0, r.m, <const floating*>r.a_out)
        return 0
    for k in range(first, last):
        if r.bounds != NULL:
            j0, j1 = r.bounds[k], r.bounds[k + 1]
        else:
            j0, j1 = chunk_start(r.m, k, n), chunk_start(r.m, k + 1, n)
        status = forward_chunk(dummy, r, j0, j1, ws)
        if status != 0:
            break
    return status


cdef int forward_chunks(const Forward* r, Py_ssize_t first, Py_ssize_t last,
                        void* ws) noexcept nogil:
    """Chunks first..last-1 of r, with one workspace of chunk_workspace()
    elements (NULL: none needed, or allocate one here; -1 when that fails).
    Callers pass a pooled one: fresh pages cost page faults. The forward's
    entry from Python and from threads: its one dtype dispatch."""
    cdef unsigned int csr = cyrnn_ftz_begin()
    cdef int status = 0
    cdef void* own = NULL
    cdef size_t need = chunk_workspace(r)
    probe_gil()
    if ws == NULL and need > 0:
        ws = own = malloc(need * item_size(r))
        if ws == NULL:
            cyrnn_ftz_end(csr)
            return -1
    if r.single:
        status = forward_range[float](0, r, first, last, <float*>ws)
    else:
        status = forward_range[double](0, r, first, last, <double*>ws)
    free(own)
    cyrnn_ftz_end(csr)
    return status
