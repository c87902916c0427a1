# ------------------------------------------------------------------ split runs
# A narrow batch is one chunk, so n_threads had nothing to split (LSTM at
# m = 8: the second core idle). Under a row-block plan a step's recurrent
# products are independent GEMMs on blocks of R rows, so a step splits into
# parts that threads run at once: when R divides n_a (and n_a / R >= 2) every
# block is R units of one gate, and part p is the units p·R..(p+1)·R-1 of
# every gate, their GEMMs and their kernel (fused, up to n_a / R threads);
# otherwise, or for more threads, a step is two phases, the GEMMs one block
# each, then the kernels by units (the same calls either way). The next step
# needs all of a, so a step's parts finish before the next starts
# (cyrnn_phases.h: tickets, no deadlock on a shared executor). The rest of a
# block splits likewise: the input projection by rows, the gathers by input
# rows, the scatters, stages and carried states by units. How a problem splits
# depends on its sizes and plan only, and such problems always run split, with
# any number of threads (one runs every part): the same bits whatever
# n_threads and with or without caches. Every cell; the reset-before GRU's
# step is two stages (its candidate's product needs all of Γr·a_prev first),
# each split likewise. Not with variable lengths.
cdef extern from "cyrnn_phases.h" nogil:
    ctypedef struct cyrnn_tickets:
        pass
    long long cyrnn_claim(cyrnn_tickets* t)
    void cyrnn_ticket_done(cyrnn_tickets* t)
    void cyrnn_wait_done(cyrnn_tickets* t, long long count)
    void cyrnn_tickets_init(cyrnn_tickets* t)

cdef enum PhaseKind:
    PHASE_GATHER_ALL = 0    # direct: every step of x into the X cache
    PHASE_GATHER = 1        # a block's steps of x into the workspace
    PHASE_PROJECT = 2       # a block's input projection
    PHASE_STEP = 3          # fused: a stage of a step, recurrent products and kernels
    PHASE_STEP_GEMM = 4     # not fused: a stage's recurrent products
    PHASE_STEP_KERNEL = 5   # not fused: then its kernels
    PHASE_FINISH = 6        # workspace: stage, scatter, carry the states
    PHASE_SCATTER_ALL = 7   # direct: every step of the states out

cdef enum:
    # Unit parts of a split that is not fused: at least this many units each,
    # at most SPLIT_MAX_PARTS parts.
    SPLIT_MIN_UNITS = 8
    SPLIT_MAX_PARTS = 16


cdef Py_ssize_t split_run_count = 0


def _split_runs():
    """Split runs started in this process (a test hook: that sizes take the path)."""
    return split_run_count


cdef inline bint runs_split(const Forward* r) noexcept nogil:
    """Whether r runs split (above) rather than by chunks."""
    return (plan_row_block(r.plan) > 0 and r.offsets == NULL and n_chunks(r.m) == 1
            and r.w.blocks == 1 and not uses_concat(&r.cell, &r.w, r.T))


cdef struct Split:
    const Forward* r
    cyrnn_tickets tickets
    long long total             # tickets
    bint fused                  # one phase per step (R divides n_a)
    Py_ssize_t R                # the plan's row block
    Py_ssize_t units, unit_parts, proj_rows, proj_parts, tb
    # a step's stages: the recurrent products of gates q0[s]..q1[s]-1, then
    # their kernel (two for the reset-before GRU, else one)
    int stages
    int q0[2]
    int q1[2]
    Py_ssize_t gemm_parts[2]    # not fused: the stage's row blocks
    bint direct, staged, gather_x, gather_blocks
    Py_ssize_t ld, ldx          # row strides of the blocks' buffers and of X
    void* G                     # the blocks' buffers (direct: the caches)
    void* A
    void* C
    void* X
    void* a_state               # workspace: the states carried between blocks
    void* c_state
    void* ws
    Py_ssize_t ws_len


cdef struct Walk:
    # where a thread is in the run's phases: block [s, s + tbb) in processing
    # order, p0 its first step in time, k its phase (-1: before the blocks),
    # start the phase's first ticket
    Py_ssize_t s, tbb, p0, k
    long long start


cdef inline Py_ssize_t step_phases(const Split* sp) noexcept nogil:
    return sp.stages * (1 if sp.fused else 2)


cdef inline Py_ssize_t block_phases(const Split* sp, Py_ssize_t tbb) noexcept nogil:
    return sp.gather_blocks + 1 + tbb * step_phases(sp) + (0 if sp.direct else 1)


cdef inline void walk_block(const Split* sp, Walk* w) noexcept nogil:
    w.tbb = min(sp.tb, sp.r.T - w.s)
    w.p0 = sp.r.T - w.s - w.tbb if sp.r.reverse else w.s


cdef inline void walk_start(const Split* sp, Walk* w) noexcept nogil:
    w.start, w.s, w.k = 0, 0, -1 if sp.direct else 0
    walk_block(sp, w)


cdef inline int phase_kind(const Split* sp, const Walk* w, Py_ssize_t* i,
                           int* stage) noexcept nogil:
    """The kind of w's phase; for a step, its index in the block's processing
    order and the stage."""
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
        stage[0] = <int>k
        return PHASE_STEP
    stage[0] = <int>(k // 2)
    return PHASE_STEP_KERNEL if k % 2 else PHASE_STEP_GEMM


cdef inline Py_ssize_t phase_parts(const Split* sp, int kind, int stage) noexcept nogil:
    if kind == PHASE_PROJECT:
        return sp.proj_parts
    if kind == PHASE_STEP_GEMM:
        return sp.gemm_parts[stage]
    return sp.unit_parts


cdef inline Py_ssize_t walk_parts(const Split* sp, const Walk* w) noexcept nogil:
    """The parts of w's phase."""
    cdef Py_ssize_t i
    cdef int stage = 0
    return phase_parts(sp, phase_kind(sp, w, &i, &stage), stage)


cdef inline void walk_next(const Split* sp, Walk* w) noexcept nogil:
    w.start += walk_parts(sp, w)
    w.k += 1
    if w.s < sp.r.T and w.k == block_phases(sp, w.tbb):
        w.s += w.tbb
        w.k = 0
        if w.s < sp.r.T:
            walk_block(sp, w)


cdef inline void carve_workspace(const Forward* r, Py_ssize_t ms, Py_ssize_t ld, bint gather_x,
                                 floating* ws, floating** bufs) noexcept nogil:
    """The blocks' buffers in a workspace: bufs = G, A, C, X, a_state, c_state."""
    cdef Py_ssize_t n_a = r.n_a
    bufs[0] = ws
    bufs[1] = ws + r.cell.blocks * n_a * ld
    bufs[2] = bufs[1] + (0 if r.cell.gates_are_state else n_a * ld)
    bufs[3] = bufs[2] + (n_a * ld if r.cell.has_c else 0)
    bufs[4] = bufs[3] + (r.n_x * ld if gather_x else 0)
    bufs[5] = bufs[4] + n_a * ms
    if r.cell.gates_are_state:
        bufs[1] = bufs[0]


cdef void split_init(floating dummy, Split* sp, const Forward* r, floating* ws,
                     int threads) noexcept nogil:
    """Lay out a split run of r (runs_split(r)) in workspace ws, for threads."""
    global split_run_count
    cdef floating* bufs[6]
    cdef Py_ssize_t m = r.m, n_a = r.n_a, rows = r.cell.gates * r.n_a
    cdef Walk w
    cdef int q
    split_run_count += 1
    sp.r, sp.ws, sp.ws_len = r, ws, workspace_size(r, m)
    sp.R = plan_row_block(r.plan)
    cdef bint aligned = n_a % sp.R == 0 and n_a // sp.R >= 2
    sp.units = sp.R if aligned else max(<Py_ssize_t>SPLIT_MIN_UNITS,
                                         (n_a + SPLIT_MAX_PARTS - 1) // SPLIT_MAX_PARTS)
    sp.unit_parts = (n_a + sp.units - 1) // sp.units
    sp.stages = 2 if r.cell.kind == CELL_GRU_RESET_BEFORE else 1
    sp.q0[0], sp.q1[0] = 0, (2 if sp.stages == 2 else r.cell.gates)
    sp.q0[1], sp.q1[1] = 2, 3
    for q in range(sp.stages):
        sp.gemm_parts[q] = ((sp.q1[q] - sp.q0[q]) * n_a + sp.R - 1) // sp.R
    # fused while the unit parts keep the threads busy; more threads get the
    # blocks' GEMMs one by one (the same GEMMs and kernels: the same bits)
    sp.fused = aligned and threads <= sp.unit_parts
    sp.proj_rows = r.cell.gates * sp.R if aligned else sp.R
    sp.proj_parts = (rows + sp.proj_rows - 1) // sp.proj_rows
    sp.tb = block_steps(r, m)
    sp.staged = staged_caches(r, m)
    sp.direct = r.G != NULL and not sp.staged
    sp.gather_x = not r.x_time_major
    sp.gather_blocks = sp.gather_x and not sp.direct
    sp.ld = r.ld if sp.direct else block_ld(r, m)
    sp.ldx = sp.ld if sp.gather_x else r.T * m
    sp.a_state = sp.c_state = NULL
    if sp.direct:
        sp.G, sp.A, sp.C, sp.X = r.G, r.A, r.C, r.X
    else:
        carve_workspace(r, m, sp.ld, sp.gather_x, ws, bufs)
        sp.G, sp.A, sp.C, sp.X = bufs[0], bufs[1], bufs[2], bufs[3]
        sp.a_state, sp.c_state = bufs[4], bufs[5]
    if not sp.gather_x:
        sp.X = <void*>r.x
    # the tickets: every phase's parts (the end: the phase after the last)
    walk_start(sp, &w)
    while not (w.s >= r.T and (w.k > 0 or not sp.direct)):
        walk_next(sp, &w)
    sp.total = w.start
    cyrnn_tickets_init(&sp.tickets)


cdef inline void step_inputs(floating dummy, const Split* sp, const Walk* w, Py_ssize_t i,
                             const floating** a_prev, Py_ssize_t* ld_ap,
                             const floating** c_prev, Py_ssize_t* ld_cp) noexcept nogil:
    """The states step i of w's block (in processing order) starts from."""
    cdef const Forward* r = sp.r
    cdef Py_ssize_t m = r.m, col = w.p0 * m if sp.direct else 0, tt, prev
    cdef bint has_c = r.cell.has_c
    if i > 0:       # the step before, in the block
        tt = w.tbb - 1 - i if r.reverse else i
        prev = tt + 1 if r.reverse else tt - 1
        a_prev[0] = <const floating*>sp.A + col + prev * m
        c_prev[0] = <const floating*>sp.C + col + prev * m if has_c else NULL
        ld_ap[0] = ld_cp[0] = sp.ld
    elif w.s == 0:
        a_prev[0], c_prev[0] = <const floating*>r.a0, <const floating*>r.c0
        ld_ap[0] = ld_cp[0] = m
    elif sp.direct:     # the block before's last step, in the caches
        prev = w.p0 + w.tbb if r.reverse else w.p0 - 1
        a_prev[0] = <const floating*>sp.A + prev * m
        c_prev[0] = <const floating*>sp.C + prev * m if has_c else NULL
        ld_ap[0] = ld_cp[0] = sp.ld
    else:           # carried out of the workspace
        a_prev[0] = <const floating*>sp.a_state
        c_prev[0] = <const floating*>sp.c_state if has_c else NULL
        ld_ap[0] = ld_cp[0] = m


cdef void split_part(floating dummy, const Split* sp, const Walk* w, Py_ssize_t p) noexcept nogil:
    """Part p of w's phase."""
    cdef const Forward* r = sp.r
    cdef const CellSpec* cell = &r.cell
    cdef Py_ssize_t n_a = r.n_a, n_x = r.n_x, m = r.m, T = r.T, mT = r.m * r.T
    cdef Py_ssize_t ld = sp.ld, i = 0, tt, g, r0, nr, gs = r.n_a * sp.ld, lo, hi, half, dest
    cdef int stage = 0
    # part p's units, input rows (gathers, stages)
    cdef Py_ssize_t u0 = p * sp.units, R = min(sp.units, n_a - p * sp.units)
    cdef Py_ssize_t x0 = n_x * p // sp.unit_parts, x1 = n_x * (p + 1) // sp.unit_parts
    cdef Py_ssize_t col = w.p0 * m if sp.direct else 0     # the block's first column
    cdef floating* G = <floating*>sp.G + col
    cdef floating* A = <floating*>sp.A + col
    cdef floating* C = <floating*>sp.C + col if cell.has_c else NULL
    cdef const floating* X = <const floating*>sp.X + (w.p0 * m if sp.direct or not sp.gather_x
                                                      else 0)
    cdef const floating* x = <const floating*>r.x
    cdef const floating* Wa = <const floating*>r.w.Wa[0]
    cdef floating* a_out = <floating*>r.a_out
    cdef floating* c_out = <floating*>r.c_out
    cdef const floating* b = <const floating*>r.b
    cdef const floating* a_prev
    cdef const floating* c_prev
    cdef const floating* operand       # the stage's GEMM operand
    cdef Py_ssize_t ld_ap, ld_cp, ld_op
    cdef size_t item = sizeof(floating)
    cdef int kind = phase_kind(sp, w, &i, &stage)
    # the buffers the parts must stay inside (checked by the debug build): the
    # caches, or the workspace
    cdef const void* G_buf = r.G if sp.direct else sp.ws
    cdef const void* A_buf = r.A if sp.direct else sp.ws
    cdef const void* C_buf = r.C if sp.direct else sp.ws
    cdef const void* X_buf = r.x if not sp.gather_x else (r.X if sp.direct else sp.ws)
    cdef Py_ssize_t G_len = cell.blocks * n_a * ld if sp.direct else sp.ws_len
    cdef Py_ssize_t A_len = n_a * ld if sp.direct else sp.ws_len
    cdef Py_ssize_t X_len = n_x * mT if not sp.gather_x else (n_x * ld if sp.direct
                                                               else sp.ws_len)
    if kind == PHASE_STEP or kind == PHASE_STEP_GEMM or kind == PHASE_STEP_KERNEL:
        tt = w.tbb - 1 - i if r.reverse else i
        step_inputs(dummy, sp, w, i, &a_prev, &ld_ap, &c_prev, &ld_cp)
        G, A = G + tt * m, A + tt * m
        C = C + tt * m if cell.has_c else NULL
        operand, ld_op = a_prev, ld_ap
        if stage == 1:      # the reset-before GRU's candidate: on Γr·a_prev (block 3)
            operand, ld_op = G + 3 * gs, ld
        check_block("G step", G, cell.blocks * n_a, ld, m, G_buf, G_len, item)
        check_block("A step", A, n_a, ld, m, A_buf, A_len, item)
        if cell.has_c:
            check_block("C step", C, n_a, ld, m, C_buf, A_len, item)
    if kind == PHASE_GATHER_ALL:
        if sp.gather_x and not r.gemm_only:
            check_block("X", <floating*>sp.X + x0 * ld, x1 - x0, ld, mT, X_buf, X_len, item)
            gather_time_major(x1 - x0, m, T, x + x0 * r.sx0, r.sx0, r.sx1, r.sx2,
                              <floating*>sp.X + x0 * ld, ld, m)
    elif kind == PHASE_GATHER:
        if not r.gemm_only:
            check_block("X block", <floating*>sp.X + x0 * ld, x1 - x0, ld, w.tbb * m, X_buf,
                        X_len, item)
            gather_time_major(x1 - x0, m, w.tbb, x + x0 * r.sx0 + w.p0 * r.sx2, r.sx0, r.sx1,
                              r.sx2, <floating*>sp.X + x0 * ld, ld, m)
    elif kind == PHASE_PROJECT:
        # weight rows r0..r0+nr-1 of G = Wx @ X over the block's steps, into G's
        # rows as the cell places them (rows from x_split·n_a on go to x_dest's)
        r0 = p * sp.proj_rows
        nr = min(sp.proj_rows, cell.gates * n_a - r0)
        check_block("X block", X, n_x, sp.ldx, w.tbb * m, X_buf, X_len, item)
        for half in range(2):
            lo = r0 if half == 0 else max(r0, cell.x_split * n_a)
            hi = min(r0 + nr, cell.x_split * n_a) if half == 0 else r0 + nr
            if hi <= lo:
                continue
            dest = lo + (cell.x_dest - cell.x_split) * n_a if half == 1 else lo
            check_block("G block", G + dest * ld, hi - lo, ld, w.tbb * m, G_buf, G_len, item)
            gemm(False, False, hi - lo, w.tbb * m, n_x, <floating>1,
                 <const floating*>r.w.Wx[0] + lo * r.w.ldwx[0], r.w.ldwx[0], X, sp.ldx,
                 <floating>0, G + dest * ld, ld)
    elif kind == PHASE_STEP_GEMM:
        # block p of the stage's row blocks (gates_product's GEMMs, one each)
        r0 = sp.q0[stage] * n_a + p * sp.R
        nr = min(sp.R, sp.q1[stage] * n_a - r0)
        if cell.kind == CELL_GRU and not r.gemm_only:
            # the rows of hc (block 2) start from bca: the product adds onto it
            lo, hi = max(r0, 2 * n_a), min(r0 + nr, 3 * n_a)
            if hi > lo:
                fill_rows(hi - lo, m, b + lo, G + lo * ld, ld)
        gemm(False, False, nr, m, n_a, <floating>1, Wa + r0 * r.w.ldwa[0], r.w.ldwa[0],
             operand, ld_op, <floating>1, G + r0 * ld, ld)
    elif kind == PHASE_STEP:
        # the plan's row blocks of part p's units, one per gate of the stage
        if cell.kind == CELL_GRU and not r.gemm_only:
            fill_rows(R, m, b + 2 * n_a + u0, G + (2 * n_a + u0) * ld, ld)
        for g in range(sp.q0[stage], sp.q1[stage]):
            gemm(False, False, R, m, n_a, <floating>1, Wa + (g * n_a + u0) * r.w.ldwa[0],
                 r.w.ldwa[0], operand, ld_op, <floating>1, G + (g * n_a + u0) * ld, ld)
    elif kind == PHASE_FINISH:
        if sp.staged:
            stage_block(r, w.tbb * m, G, A, C, <floating*>sp.X if sp.gather_x and r.X != NULL
                        else NULL, ld, w.p0 * m, u0, u0 + R, x0, x1)
        if a_out != NULL and not r.gemm_only:
            check_block("a", a_out + u0 * mT + w.p0, R, mT, (m - 1) * T + w.tbb, a_out,
                        n_a * mT, item)
            scatter_batch_major(R, m, w.tbb, A + u0 * ld, ld, m, a_out + u0 * mT + w.p0, mT, T)
            if c_out != NULL:
                scatter_batch_major(R, m, w.tbb, C + u0 * ld, ld, m, c_out + u0 * mT + w.p0,
                                    mT, T)
        if w.s + w.tbb < T:
            # the next block overwrites the workspace: carry the states out of it
            tt = 0 if r.reverse else w.tbb - 1
            copy_rows(R, m, A + tt * m + u0 * ld, ld, <floating*>sp.a_state + u0 * m, m)
            if cell.has_c:
                copy_rows(R, m, C + tt * m + u0 * ld, ld, <floating*>sp.c_state + u0 * m, m)
    elif kind == PHASE_SCATTER_ALL:
        if a_out != NULL and not r.gemm_only:
            scatter_batch_major(R, m, T, <floating*>sp.A + u0 * ld, ld, m, a_out + u0 * mT, mT,
                                T)
        if c_out != NULL and not r.gemm_only:
            scatter_batch_major(R, m, T, <floating*>sp.C + u0 * ld, ld, m, c_out + u0 * mT, mT,
                                T)
    if (kind == PHASE_STEP or kind == PHASE_STEP_KERNEL) and not r.gemm_only:
        # part p's units: the stage's kernel (activated gates, c and a)
        if cell.kind == CELL_LSTM:
            lstm_forward_step(R, m, G + u0 * ld, ld, gs, b + u0, n_a,
                              c_prev + u0 * ld_cp if c_prev != NULL else NULL, ld_cp,
                              C + u0 * ld, ld, A + u0 * ld, ld, r.keep_gates)
        elif cell.kind == CELL_GRU:
            gru_forward_step(R, m, G + u0 * ld, ld, gs, b + u0, n_a, a_prev + u0 * ld_ap, ld_ap,
                             A + u0 * ld, ld)
        elif cell.kind == CELL_GRU_RESET_BEFORE and stage == 0:
            gru_reset_step(R, m, G + u0 * ld, ld, gs, b + u0, n_a, a_prev + u0 * ld_ap, ld_ap)
        elif cell.kind == CELL_GRU_RESET_BEFORE:
            gru_candidate_step(R, m, G + u0 * ld, ld, gs, b + u0, n_a, a_prev + u0 * ld_ap,
                               ld_ap, A + u0 * ld, ld)
        else:
            rnn_forward_step(R, m, G + u0 * ld, ld, b + u0)


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


cdef void split_run(Split* sp, const Forward* r, void* ws) noexcept nogil:
    """A split run of r on the calling thread alone."""
    if r.single:
        split_init[float](0, sp, r, <float*>ws, 1)
    else:
        split_init[double](0, sp, r, <double*>ws, 1)
    split_work(sp)
    cyrnn_wait_done(&sp.tickets, sp.total)
