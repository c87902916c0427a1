# ------------------------------------------------------------------ the backward driver
# Per step, last to first: the cell's backward kernels and the gradient of
# a_prev (src/_cells.pxd step_backward); then the weight gradients as
# whole-sequence GEMMs on SciPy's BLAS.

cdef struct Backward:
    CellSpec cell
    Py_ssize_t n_x, n_a, m, T, T_da
    const void* da          # (n_a, m, T_da), element strides sd0..sd2
    Py_ssize_t sd0, sd1, sd2
    const void* G           # the forward's caches, time-major (rows, T, m)
    const void* A
    const void* C
    const void* X           # (n_x, T, m)
    const void* a0          # (n_a, m)
    const void* c0          # (n_a, m); NULL: zeros
    GateWeights w
    void* dA                # scratch (n_a, T_da, m): the upstream da, time-major (= dG
                            # when gates_are_state)
    void* dG                # scratch (blocks·n_a, T_da, m): gate gradients
    void* dX                # (n_x, T_da, m) scratch, or dx itself when T_da == 1
    void* dc                # (n_a, m): gradient of c carried in (zeros, or dc_next) and out
    void* dx                # outputs: (n_x, m, T_da)
    void* da0               # (n_a, m)
    void* dWx               # gates·n_a × n_x, rows lddwx apart
    void* dWa               # gates·n_a × n_a, rows lddwa apart
    void* db                # (bias_blocks·n_a,)
    Py_ssize_t lddwx, lddwa
    bint reverse            # the forward ran from T-1 down to 0 (then T_da == T)
    bint gemm_only
    bint single
    # Variable lengths: the forward's packed layout (see Forward), or NULL. The
    # caller then gives a0, c0 permuted, dA (dG for the RNN) packed, dX as a
    # packed (n_x, offsets[T_da]) buffer it scatters itself, and da0, dc zeroed.
    const Py_ssize_t* offsets
    const Py_ssize_t* active


cdef inline void input_gradients(const CellSpec* cell, const GateWeights* w, Py_ssize_t n_a,
                                 Py_ssize_t n_x, Py_ssize_t n, const floating* dG,
                                 const floating* X, Py_ssize_t ldx, floating* dX, floating* dWx,
                                 Py_ssize_t lddwx, floating* work) noexcept nogil:
    """dX = Wx.T @ dG and dWx = dG @ X.T over n columns (dG's rows n apart),
    reading dG's blocks where the cell placed the input projection."""
    cdef Py_ssize_t split = cell.x_split * n_a, rows = cell.gates * n_a
    cdef const floating* dG2 = dG + cell.x_dest * n_a * n
    gates_product_t(w, False, 0, cell.x_split, n_a, n_x, n, dG, n, <floating>0, dX, n, NULL,
                    work)
    gemm_abt(split, n_x, n, <floating>1, dG, n, X, ldx, <floating>0, dWx, lddwx, work)
    if split < rows:
        gates_product_t(w, False, cell.x_split, cell.gates, n_a, n_x, n, dG2, n, <floating>1,
                        dX, n, NULL, work)
        gemm_abt(rows - split, n_x, n, <floating>1, dG2, n, X, ldx, <floating>0,
                 dWx + split * lddwx, lddwx, work)


cdef enum:
    BACKWARD_STACK_ELEMENTS = 1024  # a small call's backward scratch on the stack


cdef struct BackwardScratch:
    void* work          # the BLAS helpers' work (abt_work, atb_work), then what follows
    void* dG            # gate gradients (the caller's, or in `work`)
    void* dA
    void* cat           # a single step's concat = [a0; x] and its gradient
    void* dcat
    void* Wt            # the stacked recurrent weights transposed, or NULL


cdef int backward_scratch(floating dummy, const Backward* r, bint concat, Py_ssize_t Tdm,
                          BackwardScratch* s, floating* stack,
                          size_t stack_size) noexcept nogil:
    """backward_all's scratch, in `stack` (stack_size elements: small calls)
    when it fits, else allocated; -1 when it cannot be had."""
    cdef const CellSpec* cell = &r.cell
    cdef Py_ssize_t n_x = r.n_x, n_a = r.n_a, m = r.m, width = r.n_a + r.n_x
    cdef Py_ssize_t rows = cell.gates * n_a, grows = cell.blocks * n_a
    cdef bint dbl = sizeof(floating) == 8
    # (abt_work is largest for the fewest rows: n_a covers the GEMMs on row blocks)
    cdef size_t work_size = max(
        atb_work(n_a, m, r.w.block_rows, dbl), atb_work(n_x, Tdm, r.w.block_rows, dbl),
        abt_work(n_a, n_a, m), abt_work(n_a, n_a, Tdm - m), abt_work(n_a, n_x, Tdm),
        abt_work(n_a, n_a, Tdm), atb_work(width, m, r.w.block_rows, dbl),
        abt_work(rows, width, m))
    # dG (and dA) here when the caller gave none (the cell functions: small;
    # sequences pass pooled arrays); concat and its gradient for one step
    cdef size_t own = 0 if r.dG != NULL else (grows + (0 if cell.gates_are_state else n_a)) * Tdm
    cdef size_t cat_size = 2 * width * m if concat else 0
    cdef floating* work = stack
    cdef floating* Wt = NULL
    if work_size + own + cat_size > stack_size:
        work = <floating*>malloc((work_size + own + cat_size) * sizeof(floating) + 1)
    if work == NULL:
        return -1
    s.work, s.dG, s.dA = work, r.dG, r.dA
    if own:
        s.dG = work + work_size
        s.dA = s.dG if cell.gates_are_state else <floating*>s.dG + grows * Tdm
    s.cat = work + work_size + own
    s.dcat = <floating*>s.cat + width * m
    if r.w.blocks == 1 and transpose_weights_once(n_a, m, rows, r.T_da, dbl):
        # Wt = Wa.T (n_a × rows; a 2-D transpose is gather's n = 1 case)
        Wt = <floating*>malloc(rows * n_a * sizeof(floating))
        if Wt != NULL:
            gather_time_major(1, rows, n_a, <const floating*>r.w.Wa[0], 0, r.w.ldwa[0], 1,
                              Wt, 0, rows)
    s.Wt = Wt
    return 0


cdef void backward_steps(floating dummy, const Backward* r, const BackwardScratch* s,
                         bint concat, Py_ssize_t Tm, Py_ssize_t Tdm) noexcept nogil:
    """The steps, last to first: each step's gate gradients dG from da (and the
    gradients carried from the step after), and the gradient sent to a_prev."""
    cdef const CellSpec* cell = &r.cell
    cdef Py_ssize_t n_a = r.n_a, m = r.m, T = r.T, k, t, prev, ct, n, nc, at
    cdef bint packed = r.offsets != NULL
    cdef Py_ssize_t first = T - 1 if r.reverse else 0   # the step that starts from a0, c0
    cdef const floating* G = <const floating*>r.G
    cdef const floating* A = <const floating*>r.A
    cdef const floating* C = <const floating*>r.C
    cdef floating* dA = <floating*>s.dA
    cdef floating* dG = <floating*>s.dG
    cdef floating* da0 = <floating*>r.da0
    cdef floating* dc = <floating*>r.dc
    cdef const floating* Wt = <const floating*>s.Wt
    cdef floating* work = <floating*>s.work
    cdef const floating* c0 = <const floating*>r.c0
    cdef size_t item = sizeof(floating)
    for k in range(r.T_da):
        t = k if r.reverse else r.T_da - 1 - k
        prev = t + 1 if r.reverse else t - 1
        # step t's columns (packed: its first n, the ones still running)
        if packed:
            ct, n = r.offsets[t], r.active[t]
        else:
            ct, n = t * m, m
        if n == 0:
            continue
        check_block("G step", G + ct, cell.blocks * n_a, Tm, n, r.G, cell.blocks * n_a * Tm,
                    item)
        if cell.has_c:
            check_block("C step", C + ct, n_a, Tm, n, r.C, n_a * Tm, item)
        # the columns whose a_prev is a state (the rest start from a0, c0 here)
        nc = 0 if t == first else n
        if packed and r.reverse:
            nc = r.active[prev] if prev < T else 0
        if nc > 0:
            at = r.offsets[prev] if packed else prev * m
            check_block("A_prev", A + at, n_a, Tm, nc, r.A, n_a * Tm, item)
            # dG[t] from da[t] + da_next (and dc carried), then da_next for the
            # step before (after the last step this is da0); see step_backward
            step_backward(cell, &r.w, n_a, nc, G + ct, C + ct if cell.has_c else NULL, Tm,
                          A + at, Tm, C + at if cell.has_c else NULL, Tm, dA + ct, Tdm, da0, m,
                          k > 0, dc, dG + ct, Tdm, not concat, not r.gemm_only, Wt, work)
        if n > nc:
            step_backward(cell, &r.w, n_a, n - nc, G + ct + nc,
                          C + ct + nc if cell.has_c else NULL, Tm,
                          <const floating*>r.a0 + nc, m, c0 + nc if c0 != NULL else NULL, m,
                          dA + ct + nc, Tdm, da0 + nc, m, k > 0,
                          dc + nc if dc != NULL else NULL, dG + ct + nc, Tdm, not concat,
                          not r.gemm_only, Wt, work)
        if concat:
            break


cdef void concat_gradients(floating dummy, const Backward* r, const BackwardScratch* s,
                           Py_ssize_t Tm, Py_ssize_t Tdm) noexcept nogil:
    """A single step on [a0; x]: dcat = W.T @ dG, dW = dG @ [a0; x].T."""
    cdef Py_ssize_t n_a = r.n_a, n_x = r.n_x, m = r.m, width = r.n_a + r.n_x
    cdef floating* cat = <floating*>s.cat
    cdef floating* dcat = <floating*>s.dcat
    cdef floating* dG = <floating*>s.dG
    cdef int q
    copy_rows(n_a, m, <const floating*>r.a0, m, cat, m)
    copy_rows(n_x, m, <const floating*>r.X, Tm, cat + n_a * m, m)
    for q in range(r.w.blocks):
        gemm_atb(width, m, r.w.block_rows, <floating>1, <const floating*>r.w.Wa[q],
                 r.w.ldwa[q], dG + q * r.w.block_rows * Tdm, Tdm,
                 <floating>(0 if q == 0 else 1), dcat, m, <floating*>s.work)
    copy_rows(n_a, m, dcat, m, <floating*>r.da0, m)
    copy_rows(n_x, m, dcat + n_a * m, m, <floating*>r.dX, Tdm)
    gemm_abt(r.cell.gates * n_a, width, m, <floating>1, dG, Tdm, cat, m, <floating>0,
             <floating*>r.dWa, r.lddwa, <floating*>s.work)


cdef floating* packed_prev_states(floating dummy, const Backward* r, Py_ssize_t Tm,
                                  Py_ssize_t Tdm) noexcept nogil:
    """Each step's a_prev, packed like dG (a step's columns are a prefix of the
    step before's), in a new buffer (NULL when it cannot be had)."""
    cdef Py_ssize_t n_a = r.n_a, T = r.T, t, prev, n, nc
    cdef const floating* A = <const floating*>r.A
    cdef floating* A_prev = <floating*>malloc(n_a * Tdm * sizeof(floating) + 1)
    if A_prev == NULL:
        return NULL
    for t in range(r.T_da):
        # as in the step loop: states for the first nc columns, a0 for the rest
        prev = t + 1 if r.reverse else t - 1
        n = r.active[t]
        nc = (r.active[prev] if prev < T else 0) if r.reverse else (n if t > 0 else 0)
        if nc > 0:
            copy_rows(n_a, nc, A + r.offsets[prev], Tm, A_prev + r.offsets[t], Tdm)
        copy_rows(n_a, n - nc, <const floating*>r.a0 + nc, r.m, A_prev + r.offsets[t] + nc, Tdm)
    return A_prev


cdef int weight_gradients(floating dummy, const Backward* r, const BackwardScratch* s,
                          Py_ssize_t Tm, Py_ssize_t Tdm) noexcept nogil:
    """dX and dWx from the input projection; dWa = dG @ A_prev.T over all steps
    (whole-sequence GEMMs). -1 when scratch cannot be had."""
    cdef const CellSpec* cell = &r.cell
    cdef Py_ssize_t n_a = r.n_a, m = r.m, rows = cell.gates * n_a
    cdef Py_ssize_t arows = cell.a_split * n_a
    cdef Py_ssize_t first = r.T - 1 if r.reverse else 0
    cdef const floating* A = <const floating*>r.A
    cdef floating* dG = <floating*>s.dG
    cdef floating* work = <floating*>s.work
    cdef floating* dWa = <floating*>r.dWa
    cdef floating* A_prev
    input_gradients(cell, &r.w, n_a, r.n_x, Tdm, dG, <const floating*>r.X, Tm,
                    <floating*>r.dX, <floating*>r.dWx, r.lddwx, work)
    # the blocks against a_prev: the first step against a0, the others against A
    if r.offsets != NULL:
        A_prev = packed_prev_states(dummy, r, Tm, Tdm)
        if A_prev == NULL:
            return -1
        gemm_abt(arows, n_a, Tdm, <floating>1, dG, Tdm, A_prev, Tdm, <floating>0, dWa, r.lddwa,
                 work)
        free(A_prev)
    else:
        gemm_abt(arows, n_a, m, <floating>1, dG + first * m, Tdm, <const floating*>r.a0, m,
                 <floating>0, dWa, r.lddwa, work)
        gemm_abt(arows, n_a, Tdm - m, <floating>1, dG if r.reverse else dG + m, Tdm,
                 A + m if r.reverse else A, Tm, <floating>1, dWa, r.lddwa, work)
    if arows < rows:
        # the other blocks against the G block they multiplied (Γr·a_prev)
        gemm_abt(rows - arows, n_a, Tdm, <floating>1, dG + arows * Tdm, Tdm,
                 <const floating*>r.G + cell.a_src * n_a * Tm, Tm, <floating>0,
                 dWa + arows * r.lddwa, r.lddwa, work)
    return 0


cdef int backward_all(floating dummy, const Backward* r) noexcept nogil:
    """Backpropagate through the first T_da steps. -1 when scratch cannot be had."""
    cdef bint packed = r.offsets != NULL
    # columns of the forward's buffers (Tm) and of the first T_da steps (Tdm)
    cdef Py_ssize_t Tm = r.offsets[r.T] if packed else r.T * r.m
    cdef Py_ssize_t Tdm = r.offsets[r.T_da] if packed else r.T_da * r.m
    cdef bint concat = uses_concat(&r.cell, &r.w, r.T_da) and not packed
    cdef BackwardScratch s
    cdef int status = 0
    cdef floating stack[BACKWARD_STACK_ELEMENTS]
    if r.T_da == 0:
        return 0
    if backward_scratch(dummy, r, concat, Tdm, &s, stack, BACKWARD_STACK_ELEMENTS) != 0:
        return -1
    # the contract on steps, as a block check: T_da <= T, and all T when reversed
    check_block("steps of da", r.G, 1, 1, r.T + 1 if r.reverse and r.T_da != r.T else r.T_da,
                r.G, r.T, sizeof(floating))
    if not r.gemm_only and not packed and r.T_da == 1 and r.sd1 == 1:
        copy_rows(r.n_a, r.m, <const floating*>r.da, r.sd0, <floating*>s.dA, Tdm)
    elif not r.gemm_only and not packed:
        gather_time_major(r.n_a, r.m, r.T_da, <const floating*>r.da, r.sd0, r.sd1, r.sd2,
                          <floating*>s.dA, Tdm, r.m)
    backward_steps(dummy, r, &s, concat, Tm, Tdm)
    free(s.Wt)
    if concat:
        concat_gradients(dummy, r, &s, Tm, Tdm)
    else:
        status = weight_gradients(dummy, r, &s, Tm, Tdm)
    if status == 0 and not r.gemm_only:
        # db = dG.sum(1) over the bias's blocks
        row_sums(r.cell.bias_blocks * r.n_a, Tdm, <floating*>s.dG, Tdm, <floating*>r.db)
        if r.dX != r.dx and not packed:
            scatter_batch_major(r.n_x, r.m, r.T_da, <floating*>r.dX, Tdm, r.m,
                                <floating*>r.dx, r.m * r.T_da, r.T_da)
    if s.work != <void*>stack:
        free(s.work)  # last: it may hold dG
    return status


cdef int backward_run(const Backward* r) noexcept nogil:
    cdef unsigned int csr = cyrnn_ftz_begin()
    cdef int status
    probe_gil()
    if r.single:
        status = backward_all[float](0, r)
    else:
        status = backward_all[double](0, r)
    cyrnn_ftz_end(csr)
    return status
