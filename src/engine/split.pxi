# ------------------------------------------------------------------ split runs
# A narrow batch is one chunk, so the chunks leave threads nothing to share.
# Under a row-block plan a step's recurrent products are independent GEMMs on
# blocks of R rows, so a step splits into parts that threads run at once: when
# R divides n_a (and n_a / R >= 2) every block is R units of one gate, and
# part p is the units p·R..(p+1)·R-1 of every gate, their GEMMs and their
# kernel (fused, up to n_a / R threads); otherwise, or for more threads, a
# step's pass is two phases, the GEMMs one block each, then the kernels by
# units. The next step needs all of a, so a step's parts finish before the
# next starts (cyrnn_phases.h: tickets, no deadlock on a shared executor). The
# rest of a block splits likewise: the input projection by rows, the gathers by
# input rows, the scatters, copies and carried states by units. Parts call the
# chunked driver's own pieces (the cell's step passes, project_rows,
# copy_block). How a problem splits depends on its sizes and plan only, and
# such problems always run split, with any number of threads (one runs every
# part): the same bits whatever n_threads and with or without caches. Not with
# variable lengths.
cdef extern from "cyrnn_phases.h" nogil:
    ctypedef struct cyrnn_tickets:
        pass
    long long cyrnn_claim(cyrnn_tickets* t)
    void cyrnn_ticket_done(cyrnn_tickets* t)
    void cyrnn_wait_done(cyrnn_tickets* t, long long count)
    void cyrnn_tickets_init(cyrnn_tickets* t)

cdef enum PhaseKind:
    PHASE_GATHER_ALL = 0    # in buffers: every step of x into X
    PHASE_GATHER = 1        # a block's steps of x into the workspace
    PHASE_PROJECT = 2       # a block's input projection
    PHASE_STEP = 3          # fused: a pass of a step, recurrent products and kernels
    PHASE_STEP_GEMM = 4     # not fused: a pass's recurrent products
    PHASE_STEP_KERNEL = 5   # not fused: then its kernels
    PHASE_FINISH = 6        # workspace: copy, scatter, carry the states
    PHASE_SCATTER_ALL = 7   # in buffers: every step of the states out

cdef enum:
    # Unit parts of a split that is not fused: at least this many units each,
    # at most SPLIT_MAX_PARTS parts.
    SPLIT_MIN_UNITS = 8
    SPLIT_MAX_PARTS = 16


cdef inline bint runs_split(const Forward* r) noexcept nogil:
    """Whether r runs split (above) rather than by chunks."""
    return ((plan_row_block(r.plan) > 0 or r.plan == PLAN_PACKED) and r.offsets == NULL
            and n_chunks(r.m) == 1 and r.w.blocks == 1
            and not uses_concat(&r.cell, &r.w, r.T))


# Under the packed plan a part is whole panels of every pass (the kernel fuses
# a panel's product with its units' kernel), two parts per thread up to
# SPLIT_MAX_PARTS, each with its own block of packed columns in the workspace:
# every output's sum runs over k in one order whatever the parts, so they may
# follow the threads. The input projection's GEMMs may not (OpenBLAS's bits
# depend on a GEMM's shape): PACKED_PROJECT_ROWS rows each, whatever the threads.
cdef enum:
    PACKED_PROJECT_ROWS = 256
    PACKED_SPLIT_MIN_MACS = 1 << 20    # a step's multiply-adds worth splitting


cdef inline Py_ssize_t packed_part_units(const Forward* r) noexcept nogil:
    """Units per part of a packed split run: a multiple of every pass's panel."""
    cdef Py_ssize_t widest = 1, panels, parts
    cdef int pass_, q0, q1
    for pass_ in range(step_passes(&r.cell)):
        pass_gates(&r.cell, pass_, &q0, &q1)
        widest = max(widest, packed_units(r.single, q1 - q0))
    panels = (r.n_a + widest - 1) // widest
    parts = min(<Py_ssize_t>SPLIT_MAX_PARTS, 2 * r.threads if r.threads > 1 else 1)
    if <double>r.cell.gates * r.n_a * r.n_a * r.m < PACKED_SPLIT_MIN_MACS:
        parts = 1   # (a step this small costs less than the threads' meeting)
    return widest * ((panels + parts - 1) // parts)


cdef inline Py_ssize_t packed_parts(const Forward* r) noexcept nogil:
    """The parts of r's packed split run (1 when r runs by chunks)."""
    if r.plan != PLAN_PACKED or not runs_split(r):
        return 1
    cdef Py_ssize_t units = packed_part_units(r)
    return (r.n_a + units - 1) // units


cdef struct Split:
    const Forward* r
    cyrnn_tickets tickets
    long long total             # tickets
    bint fused                  # one phase per pass of a step (R divides n_a)
    Py_ssize_t R                # the plan's row block
    Product product
    Py_ssize_t units, unit_parts, proj_rows, proj_parts, tb
    int passes                  # a step's passes (src/_cells.pxd step_passes)
    Py_ssize_t gemm_parts[2]    # not fused: each pass's row blocks
    BlockBuffers buf            # where the blocks live
    bint gather_blocks          # gather x block by block (into the workspace)
    Py_ssize_t ldx              # X's row stride
    void* ws
    Py_ssize_t ws_len


cdef struct Walk:
    # where a thread is in the run's phases: block [s, s + tbb) in processing
    # order, p0 its first step in time, k its phase (-1: before the blocks),
    # start the phase's first ticket
    Py_ssize_t s, tbb, p0, k
    long long start


cdef inline Py_ssize_t step_phases(const Split* sp) noexcept nogil:
    return sp.passes * (1 if sp.fused else 2)


cdef inline Py_ssize_t block_phases(const Split* sp, Py_ssize_t tbb) noexcept nogil:
    return sp.gather_blocks + 1 + tbb * step_phases(sp) + (0 if sp.buf.in_buffers else 1)


cdef inline void walk_block(const Split* sp, Walk* w) noexcept nogil:
    w.tbb = min(sp.tb, sp.r.T - w.s)
    w.p0 = sp.r.T - w.s - w.tbb if sp.r.reverse else w.s


cdef inline void walk_start(const Split* sp, Walk* w) noexcept nogil:
    w.start, w.s, w.k = 0, 0, -1 if sp.buf.in_buffers else 0
    walk_block(sp, w)


cdef inline int phase_kind(const Split* sp, const Walk* w, Py_ssize_t* i,
                           int* pass_) noexcept nogil:
    """The kind of w's phase; for a step, its index in the block's processing
    order and the pass."""
    if w.k < 0:
        return PHASE_GATHER_ALL
    if w.s >= sp.r.T:
        return PHASE_SCATTER_ALL
    cdef Py_ssize_t k = w.k
    if sp.gather_blocks:
        if k == 0:
            return PHASE_GATHER
        k -= 1
    if k == 0:
        return PHASE_PROJECT
    k -= 1
    if k >= w.tbb * step_phases(sp):
        return PHASE_FINISH
    i[0] = k // step_phases(sp)
    k = k % step_phases(sp)
    if sp.fused:
        pass_[0] = <int>k
        return PHASE_STEP
    pass_[0] = <int>(k // 2)
    return PHASE_STEP_KERNEL if k % 2 else PHASE_STEP_GEMM


cdef inline Py_ssize_t phase_parts(const Split* sp, int kind, int pass_) noexcept nogil:
    if kind == PHASE_PROJECT:
        return sp.proj_parts
    if kind == PHASE_STEP_GEMM:
        return sp.gemm_parts[pass_]
    return sp.unit_parts


cdef inline Py_ssize_t walk_parts(const Split* sp, const Walk* w) noexcept nogil:
    """The parts of w's phase."""
    cdef Py_ssize_t i
    cdef int pass_ = 0
    return phase_parts(sp, phase_kind(sp, w, &i, &pass_), pass_)


cdef inline void walk_next(const Split* sp, Walk* w) noexcept nogil:
    w.start += walk_parts(sp, w)
    w.k += 1
    if w.s < sp.r.T and w.k == block_phases(sp, w.tbb):
        w.s += w.tbb
        w.k = 0
        if w.s < sp.r.T:
            walk_block(sp, w)


cdef void split_init(floating dummy, Split* sp, const Forward* r, floating* ws,
                     int threads) noexcept nogil:
    """Lay out a split run of r (runs_split(r)) in workspace ws, for threads."""
    global split_run_count
    cdef Py_ssize_t m = r.m, n_a = r.n_a, rows = r.cell.gates * r.n_a
    cdef Walk w
    cdef int pass_, q0, q1
    split_run_count += 1
    sp.r, sp.ws, sp.ws_len = r, ws, workspace_size(r, m)
    cdef bint packed = r.plan == PLAN_PACKED
    # (the packed plan: each part's block of packed columns at the workspace's end)
    sp.product = product_of(r.plan, ws + sp.ws_len - plan_scratch(r, m) if packed else NULL,
                            r.packed)
    sp.R = packed_part_units(r) if packed else sp.product.row_block
    cdef bint aligned = packed or n_a % sp.R == 0 and n_a // sp.R >= 2
    sp.units = sp.R if aligned else max(<Py_ssize_t>SPLIT_MIN_UNITS,
                                         (n_a + SPLIT_MAX_PARTS - 1) // SPLIT_MAX_PARTS)
    sp.unit_parts = (n_a + sp.units - 1) // sp.units
    sp.passes = step_passes(&r.cell)
    for pass_ in range(sp.passes):
        pass_gates(&r.cell, pass_, &q0, &q1)
        sp.gemm_parts[pass_] = ((q1 - q0) * n_a + sp.R - 1) // sp.R
    # fused while the unit parts keep the threads busy; more threads get the
    # blocks' GEMMs one by one (the same GEMMs and kernels: the same bits);
    # packed parts always fuse
    sp.fused = packed or aligned and threads <= sp.unit_parts
    sp.proj_rows = (PACKED_PROJECT_ROWS if packed else r.cell.gates * sp.R if aligned
                    else sp.R)
    sp.proj_parts = (rows + sp.proj_rows - 1) // sp.proj_rows
    sp.tb = block_steps(r, m)
    block_buffers(dummy, &sp.buf, r, m, ws)
    sp.gather_blocks = sp.buf.gather_x and not sp.buf.in_buffers
    sp.ldx = sp.buf.ld if sp.buf.gather_x else r.T * m
    # the tickets: every phase's parts (the end: the phase after the last)
    walk_start(sp, &w)
    while not (w.s >= r.T and (w.k > 0 or not sp.buf.in_buffers)):
        walk_next(sp, &w)
    sp.total = w.start
    cyrnn_tickets_init(&sp.tickets)


cdef inline void step_inputs(floating dummy, const Split* sp, const Walk* w, Py_ssize_t i,
                             const floating** a_prev, Py_ssize_t* ld_ap,
                             const floating** c_prev, Py_ssize_t* ld_cp) noexcept nogil:
    """The states step i of w's block (in processing order) starts from."""
    cdef const Forward* r = sp.r
    cdef Py_ssize_t m = r.m, col = w.p0 * m if sp.buf.in_buffers else 0, tt, prev
    cdef bint has_c = r.cell.has_c
    if i > 0:       # the step before, in the block
        tt = w.tbb - 1 - i if r.reverse else i
        prev = tt + 1 if r.reverse else tt - 1
        a_prev[0] = <const floating*>sp.buf.A + col + prev * m
        c_prev[0] = <const floating*>sp.buf.C + col + prev * m if has_c else NULL
        ld_ap[0] = ld_cp[0] = sp.buf.ld
    elif w.s == 0:
        a_prev[0], c_prev[0] = <const floating*>r.a0, <const floating*>r.c0
        ld_ap[0] = ld_cp[0] = m
    elif sp.buf.in_buffers:     # the block before's last step
        prev = w.p0 + w.tbb if r.reverse else w.p0 - 1
        a_prev[0] = <const floating*>sp.buf.A + prev * m
        c_prev[0] = <const floating*>sp.buf.C + prev * m if has_c else NULL
        ld_ap[0] = ld_cp[0] = sp.buf.ld
    else:           # carried out of the workspace
        a_prev[0] = <const floating*>sp.buf.a_state
        c_prev[0] = <const floating*>sp.buf.c_state if has_c else NULL
        ld_ap[0] = ld_cp[0] = m


cdef inline void part_units(const Split* sp, Py_ssize_t p, Py_ssize_t* u0,
                            Py_ssize_t* units) noexcept nogil:
    u0[0] = p * sp.units
    units[0] = min(sp.units, sp.r.n_a - u0[0])


cdef void split_step(floating dummy, const Split* sp, const Walk* w, int kind, Py_ssize_t i,
                     int pass_, Py_ssize_t p) noexcept nogil:
    """Part p of a step phase: step i of w's block (processing order), pass pass_."""
    cdef const Forward* r = sp.r
    cdef const CellSpec* cell = &r.cell
    cdef Py_ssize_t n_a = r.n_a, m = r.m, ld = sp.buf.ld, gs = r.n_a * sp.buf.ld
    cdef Py_ssize_t tt = w.tbb - 1 - i if r.reverse else i
    cdef Py_ssize_t col = (w.p0 * m if sp.buf.in_buffers else 0) + tt * m, u0, units, r0, nr
    cdef floating* G = <floating*>sp.buf.G + col
    cdef floating* A = <floating*>sp.buf.A + col
    cdef floating* C = <floating*>sp.buf.C + col if cell.has_c else NULL
    cdef const floating* b = <const floating*>r.b
    cdef const floating* a_prev
    cdef const floating* c_prev
    cdef Py_ssize_t ld_ap, ld_cp, ld_op
    cdef int q0, q1, g
    step_inputs(dummy, sp, w, i, &a_prev, &ld_ap, &c_prev, &ld_cp)
    # the pass's product operand: a_prev, or Γr·a_prev (G block 3)
    cdef const floating* operand = G + 3 * gs if pass_on_reset_state(cell, pass_) else a_prev
    ld_op = ld if pass_on_reset_state(cell, pass_) else ld_ap
    check_split_step(dummy, sp, G, A, C)
    pass_gates(cell, pass_, &q0, &q1)
    part_units(sp, p, &u0, &units)
    if kind == PHASE_STEP_GEMM:
        # block p of the pass's row blocks
        r0 = q0 * n_a + p * sp.R
        nr = min(sp.R, q1 * n_a - r0)
        if not r.gemm_only:
            prepare_rows(cell, n_a, r0, nr, m, b, G, ld)
        recurrent_rows(&sp.product, &r.w, r0, nr, n_a, m, operand, ld_op, G + r0 * ld, ld)
        return
    if kind == PHASE_STEP and sp.product.plan == PLAN_PACKED:
        # part p's panels, each product fused with its units' kernel
        check_block("packed columns", <floating*>sp.product.scratch
                    + p * packed_scratch(r.single, n_a, m), 1, 0,
                    packed_scratch(r.single, n_a, m), sp.ws, sp.ws_len, sizeof(floating))
        for g in range(q0, q1):
            if not r.gemm_only:
                prepare_rows(cell, n_a, g * n_a + u0, units, m, b, G, ld)
        packed_pass(cell, pass_, packed_pass_of(sp.product.packed, q0, q1), n_a, m, operand,
                    ld_op, G, ld, b, a_prev, ld_ap, c_prev, ld_cp, C, A, r.keep_gates,
                    <floating*>sp.product.scratch + p * packed_scratch(r.single, n_a, m), u0,
                    units, not r.gemm_only)
        return
    if kind == PHASE_STEP:
        # the plan's row blocks of part p's units, one per gate of the pass
        for g in range(q0, q1):
            if not r.gemm_only:
                prepare_rows(cell, n_a, g * n_a + u0, units, m, b, G, ld)
            recurrent_rows(&sp.product, &r.w, g * n_a + u0, units, n_a, m, operand, ld_op,
                           G + (g * n_a + u0) * ld, ld)
    if not r.gemm_only:
        step_kernel(cell, pass_, units, n_a, m, G + u0 * ld, ld, b + u0, a_prev + u0 * ld_ap,
                    ld_ap, c_prev + u0 * ld_cp if c_prev != NULL else NULL, ld_cp,
                    C + u0 * ld if C != NULL else NULL, A + u0 * ld, r.keep_gates)


cdef inline void check_split_step(floating dummy, const Split* sp, const floating* G,
                                  const floating* A, const floating* C) noexcept nogil:
    cdef const Forward* r = sp.r
    cdef size_t item = sizeof(floating)
    cdef Py_ssize_t n_a = r.n_a, m = r.m
    check_block("G step", G, r.cell.blocks * n_a, sp.buf.ld, m, r.G if sp.buf.in_buffers else sp.ws,
                r.cell.blocks * n_a * sp.buf.ld if sp.buf.in_buffers else sp.ws_len, item)
    check_block("A step", A, n_a, sp.buf.ld, m, r.A if sp.buf.in_buffers else sp.ws,
                n_a * sp.buf.ld if sp.buf.in_buffers else sp.ws_len, item)
    if C != NULL:
        check_block("C step", C, n_a, sp.buf.ld, m, r.C if sp.buf.in_buffers else sp.ws,
                    n_a * sp.buf.ld if sp.buf.in_buffers else sp.ws_len, item)


cdef void split_block_part(floating dummy, const Split* sp, const Walk* w, int kind,
                           Py_ssize_t p) noexcept nogil:
    """Part p of a gather, projection, finish or scatter phase."""
    cdef const Forward* r = sp.r
    cdef Py_ssize_t n_a = r.n_a, n_x = r.n_x, m = r.m, T = r.T, mT = r.m * r.T, ld = sp.buf.ld
    cdef Py_ssize_t u0, units, r0, tt
    cdef Py_ssize_t x0 = n_x * p // sp.unit_parts, x1 = n_x * (p + 1) // sp.unit_parts
    cdef Py_ssize_t col = w.p0 * m if sp.buf.in_buffers else 0     # the block's first column
    cdef floating* G = <floating*>sp.buf.G + col
    cdef floating* A = <floating*>sp.buf.A + col
    cdef floating* C = <floating*>sp.buf.C + col if r.cell.has_c else NULL
    cdef floating* X = <floating*>sp.buf.X
    cdef const floating* x = <const floating*>r.x
    cdef floating* a_out = <floating*>r.a_out
    cdef floating* c_out = <floating*>r.c_out
    cdef size_t item = sizeof(floating)
    cdef const void* X_buf = r.x if not sp.buf.gather_x else (r.X if sp.buf.in_buffers else sp.ws)
    cdef Py_ssize_t X_len = n_x * mT if not sp.buf.gather_x else (n_x * ld if sp.buf.in_buffers
                                                               else sp.ws_len)
    part_units(sp, p, &u0, &units)
    if kind == PHASE_GATHER_ALL and sp.buf.gather_x and not r.gemm_only:
        check_block("X", X + x0 * ld, x1 - x0, ld, mT, X_buf, X_len, item)
        gather_time_major(x1 - x0, m, T, x + x0 * r.sx0, r.sx0, r.sx1, r.sx2, X + x0 * ld, ld, m)
    elif kind == PHASE_GATHER and not r.gemm_only:
        check_block("X block", X + x0 * ld, x1 - x0, ld, w.tbb * m, X_buf, X_len, item)
        gather_time_major(x1 - x0, m, w.tbb, x + x0 * r.sx0 + w.p0 * r.sx2, r.sx0, r.sx1,
                          r.sx2, X + x0 * ld, ld, m)
    elif kind == PHASE_PROJECT:
        X += w.p0 * m if sp.buf.in_buffers or not sp.buf.gather_x else 0
        r0 = p * sp.proj_rows
        check_block("X block", X, n_x, sp.ldx, w.tbb * m, X_buf, X_len, item)
        project_rows(r.cell.x_split, r.cell.x_dest, &r.w, r0,
                     min(sp.proj_rows, r.cell.gates * n_a - r0), n_a, n_x, w.tbb * m, X,
                     sp.ldx, G, ld)
    elif kind == PHASE_FINISH:
        if r.mode == RUN_COPIED_CACHES:
            copy_block(r, w.tbb * m, G, A, C, X if sp.buf.gather_x and r.X != NULL else NULL, ld,
                       w.p0 * m, u0, u0 + units, x0, x1)
        if r.mode == RUN_STATE_BUFFERS and not r.gemm_only:
            stream_states_part(r, w, u0, units, A, C, ld)
        elif a_out != NULL and not r.gemm_only:
            check_block("a", a_out + u0 * mT + w.p0, units, mT, (m - 1) * T + w.tbb, a_out,
                        n_a * mT, item)
            scatter_batch_major(units, m, w.tbb, A + u0 * ld, ld, m, a_out + u0 * mT + w.p0,
                                mT, T)
            if c_out != NULL:
                scatter_batch_major(units, m, w.tbb, C + u0 * ld, ld, m,
                                    c_out + u0 * mT + w.p0, mT, T)
        if w.s + w.tbb < T:
            # the next block overwrites the workspace: carry the states out of it
            tt = 0 if r.reverse else w.tbb - 1
            copy_rows(units, m, A + tt * m + u0 * ld, ld, <floating*>sp.buf.a_state + u0 * m, m)
            if r.cell.has_c:
                copy_rows(units, m, C + tt * m + u0 * ld, ld, <floating*>sp.buf.c_state + u0 * m,
                          m)
    elif kind == PHASE_SCATTER_ALL and not r.gemm_only:
        if a_out != NULL:
            scatter_batch_major(units, m, T, <floating*>sp.buf.A + u0 * ld, ld, m, a_out + u0 * mT,
                                mT, T)
        if c_out != NULL:
            scatter_batch_major(units, m, T, <floating*>sp.buf.C + u0 * ld, ld, m,
                                c_out + u0 * mT, mT, T)


cdef inline void stream_states_part(const Forward* r, const Walk* w, Py_ssize_t u0,
                                    Py_ssize_t units, const floating* A, const floating* C,
                                    Py_ssize_t ldw) noexcept nogil:
    """Units u0..u0+units-1 of a block's states (the workspace's, rows ldw apart)
    into the time-major state buffers (RUN_STATE_BUFFERS: a time-major out)."""
    cdef Py_ssize_t cols = w.tbb * r.m, at = u0 * r.ld + w.p0 * r.m
    cdef size_t item = sizeof(floating)
    check_block("A state buffer", <floating*>r.A + at, units, r.ld, cols, r.A, r.n_a * r.ld,
                item)
    stream_rows(units, cols, A + u0 * ldw, ldw, <floating*>r.A + at, r.ld)
    if r.cell.has_c:
        check_block("C state buffer", <floating*>r.C + at, units, r.ld, cols, r.C,
                    r.n_a * r.ld, item)
        stream_rows(units, cols, C + u0 * ldw, ldw, <floating*>r.C + at, r.ld)


cdef void split_part(floating dummy, const Split* sp, const Walk* w, Py_ssize_t p) noexcept nogil:
    """Part p of w's phase."""
    cdef Py_ssize_t i = 0
    cdef int pass_ = 0
    cdef int kind = phase_kind(sp, w, &i, &pass_)
    if kind == PHASE_STEP or kind == PHASE_STEP_GEMM or kind == PHASE_STEP_KERNEL:
        split_step(dummy, sp, w, kind, i, pass_, p)
    else:
        split_block_part(dummy, sp, w, kind, p)


cdef void split_work(Split* sp) noexcept nogil:
    """Run tickets of sp until none is left (from any thread, several at once)."""
    cdef unsigned int csr = cyrnn_ftz_begin()
    cdef long long k
    cdef Walk w
    walk_start(sp, &w)
    probe_gil()
    while True:
        k = cyrnn_claim(&sp.tickets)
        if k >= sp.total:
            break
        while k >= w.start + walk_parts(sp, &w):
            walk_next(sp, &w)
        cyrnn_wait_done(&sp.tickets, w.start)
        if sp.r.single:
            split_part[float](0, sp, &w, k - w.start)
        else:
            split_part[double](0, sp, &w, k - w.start)
        cyrnn_ticket_done(&sp.tickets)
    cyrnn_ftz_end(csr)
