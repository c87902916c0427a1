# The cells' steps, behind one interface the engine's driver calls
# (src/_engine.pyx). A cell's other facts (gates, states, parameter schema)
# are its description in cyrnn/_cells.py; the codes below match its `kind`.
#
# A step is everything that happens at one time step once the driver has put
# the input projection Wx @ x into the step's gate buffer G: the recurrent
# products (GEMMs on a_prev, or, for the reset-before GRU, on Γr·a_prev) and
# the cell's fused elementwise kernels (cyrnn_elementwise_impl.h); backward,
# the gate gradients and the gradient sent to a_prev. Every buffer is one
# (rows × ms) block: rows `ld` elements apart, ms contiguous batch columns.
# G holds `blocks` row blocks of n_a rows, block k starting at row k·n_a.
from cython cimport floating

from _blas cimport gemm, gemv, gemm_atb, gemm_atb_pretransposed, gemm_transposed_result
from _elementwise cimport (rnn_forward_step, lstm_forward_step, rnn_backward_step,
                           lstm_backward_step, fill_rows, gru_forward_step, gru_reset_step,
                           gru_candidate_step, gru_backward_step, gru_candidate_backward,
                           gru_reset_backward)

cdef enum CellKind:
    CELL_RNN = 0
    CELL_LSTM = 1
    CELL_GRU = 2                # reset after the recurrent product
    CELL_GRU_RESET_BEFORE = 3


cdef struct CellSpec:
    int kind
    int gates               # row blocks of the stacked gate weights
    int blocks              # row blocks of G (the caches' gate buffer)
    int bias_blocks         # row blocks of the stacked bias = G's first blocks
    bint has_c              # carries a cell state c besides a
    # The gate block is the hidden state buffer (the RNN: z, then tanh(z) in
    # place), and backward's gate gradients start as the upstream da.
    bint gates_are_state
    # Where the input projection goes: weight blocks [0, x_split) into G's
    # blocks [0, x_split), the rest from G block x_dest on.
    int x_split, x_dest
    # The recurrent weights' gradient: blocks [0, a_split) against a_prev, the
    # rest against G block a_src (the reset-before GRU's Γr·a_prev).
    int a_split, a_src
    # A single step may run as one GEMM on concat = [a_prev; x] (the recurrent
    # product adds onto the input projection, row for row).
    bint concat_step


cdef inline CellSpec cell_spec(int kind) noexcept nogil:
    cdef CellSpec s
    s.kind = kind
    s.has_c, s.gates_are_state, s.concat_step = False, False, False
    s.a_src = -1
    if kind == CELL_LSTM:
        s.gates, s.blocks, s.bias_blocks, s.has_c, s.concat_step = 4, 4, 4, True, True
    elif kind == CELL_GRU:
        # G: Γr, Γu, hc, c~; the candidate's input product goes to block 3
        s.gates, s.blocks, s.bias_blocks = 3, 4, 4
    elif kind == CELL_GRU_RESET_BEFORE:
        # G: Γr, Γu, c~, ra
        s.gates, s.blocks, s.bias_blocks = 3, 4, 3
    else:
        s.gates, s.blocks, s.bias_blocks, s.gates_are_state = 1, 1, 1, True
    s.x_split, s.x_dest = s.gates, s.gates
    s.a_split = s.gates
    if kind == CELL_GRU:
        s.x_split, s.x_dest = 2, 3
    elif kind == CELL_GRU_RESET_BEFORE:
        s.a_split, s.a_src = 2, 3
    return s


cdef struct GateWeights:
    # The stacked gate weights as `blocks` row blocks of block_rows rows each:
    # one block (all gates stacked, one GEMM) or one per gate (the cell
    # functions with large weights, which are not worth copying per call).
    int blocks
    Py_ssize_t block_rows
    const void* Wx[4]       # on the inputs: block_rows × n_x, rows ldwx[q] apart
    const void* Wa[4]       # on the hidden state: block_rows × n_a, rows ldwa[q] apart
    Py_ssize_t ldwx[4]
    Py_ssize_t ldwa[4]
    # Each row is [Wa | Wx] in one piece (Wx[q] = Wa[q] + n_a): a single step
    # can then run as one GEMM on concat = [a_prev; x].
    bint on_concat


cdef inline const void* const* weight_blocks(const GateWeights* w, bint recurrent,
                                             const Py_ssize_t** ld) noexcept nogil:
    """The row blocks of the recurrent (else input) weights; their row strides into ld."""
    if recurrent:
        ld[0] = &w.ldwa[0]
        return &w.Wa[0]
    ld[0] = &w.ldwx[0]
    return &w.Wx[0]


cdef inline void gates_product(const GateWeights* w, bint recurrent, int q0, int q1,
                               Py_ssize_t n_a, Py_ssize_t k, Py_ssize_t n, const floating* B,
                               Py_ssize_t ldb, floating beta, floating* G,
                               Py_ssize_t ldg, floating* scratch=NULL,
                               bint use_gemv=False, Py_ssize_t row_block=0) noexcept nogil:
    """G (+)= W @ B for gates q0..q1-1 (n_a rows each, one after another in G):
    their recurrent weights (k = n_a) or input weights (k = n_x). The forward
    plans (src/_engine.pyx), stacked weights only: scratch ((q1-q0)·n_a·n
    elements) for the transposed result (gemm_transposed_result), else NULL;
    use_gemv: a single column as a matrix-vector product; row_block > 0: one
    GEMM per block of that many rows (OpenBLAS runs narrow products on tall
    stacked weights up to 2x faster so, by a block size that depends on the
    machine and the shape)."""
    cdef const Py_ssize_t* ld
    cdef const void* const* W = weight_blocks(w, recurrent, &ld)
    cdef int q
    cdef Py_ssize_t rows = (q1 - q0) * n_a, r0
    if w.blocks == 1 and 0 < row_block < rows and scratch == NULL and not (use_gemv and n == 1):
        r0 = 0
        while r0 < rows:
            gemm(False, False, min(row_block, rows - r0), n, k, <floating>1,
                 <const floating*>W[0] + (q0 * n_a + r0) * ld[0], ld[0], B, ldb, beta,
                 G + r0 * ldg, ldg)
            r0 += row_block
        return
    if w.blocks == 1 and use_gemv and n == 1:
        gemv(False, (q1 - q0) * n_a, k, <floating>1, <const floating*>W[0] + q0 * n_a * ld[0],
             ld[0], B, ldb, beta, G, ldg)
        return
    if w.blocks == 1 and scratch != NULL:
        gemm_transposed_result((q1 - q0) * n_a, n, k, <const floating*>W[0] + q0 * n_a * ld[0],
                               ld[0], B, ldb, beta, G, ldg, scratch)
        return
    if w.blocks == 1:
        gemm(False, False, (q1 - q0) * n_a, n, k, <floating>1,
             <const floating*>W[0] + q0 * n_a * ld[0], ld[0], B, ldb, beta, G, ldg)
        return
    for q in range(q0, q1):
        gemm(False, False, n_a, n, k, <floating>1, <const floating*>W[q], ld[q], B, ldb, beta,
             G + (q - q0) * n_a * ldg, ldg)


cdef inline void gates_product_t(const GateWeights* w, bint recurrent, int q0, int q1,
                                 Py_ssize_t n_a, Py_ssize_t k, Py_ssize_t n,
                                 const floating* dG, Py_ssize_t ldg, floating beta,
                                 floating* out, Py_ssize_t ldo, const floating* Wt,
                                 floating* work) noexcept nogil:
    """out (+)= W.T @ dG for gates q0..q1-1 (dG: their rows one after another),
    summed over the gates. Wt: the stacked recurrent weights transposed
    (n_a × block_rows, one block only), or NULL."""
    cdef const Py_ssize_t* ld
    cdef const void* const* W = weight_blocks(w, recurrent, &ld)
    cdef int q
    if n == 1 and n_a > 0 and <double>(q1 - q0) * n_a * k >= 262144:
        # One column (batch 1, or the last one running) against weights of 2^18
        # elements or more: matrix-vector products. OpenBLAS packs the
        # transposed weights with strided reads on every GEMM call, slow once
        # they outgrow L2 (gemm_atb's threshold). Measured in an interleaved A/B
        # (2-core Xeon, AVX-512, SciPy's OpenBLAS 0.3.30, 1 thread), backward at
        # m = 1: LSTM n_a = 256 float64 0.65x the time, float32 0.93x; below
        # the threshold (LSTM n_a = 128, GRU n_a = 32) gemv was 0-25% slower,
        # so those keep the GEMM. The forward's products (not transposed) were
        # no faster as gemv and stay GEMMs.
        if w.blocks == 1:
            gemv(True, (q1 - q0) * n_a, k, <floating>1,
                 <const floating*>W[0] + q0 * n_a * ld[0], ld[0], dG, ldg, beta, out, ldo)
            return
        for q in range(q0, q1):
            gemv(True, n_a, k, <floating>1, <const floating*>W[q], ld[q],
                 dG + (q - q0) * n_a * ldg, ldg, beta if q == q0 else <floating>1, out, ldo)
        return
    if w.blocks == 1:
        gemm_atb_pretransposed(Wt + q0 * n_a if recurrent and Wt != NULL else NULL,
                               w.block_rows, k, n, (q1 - q0) * n_a, <floating>1,
                               <const floating*>W[0] + q0 * n_a * ld[0], ld[0], dG, ldg, beta,
                               out, ldo, work)
        return
    for q in range(q0, q1):
        gemm_atb(k, n, n_a, <floating>1, <const floating*>W[q], ld[q],
                 dG + (q - q0) * n_a * ldg, ldg, beta if q == q0 else <floating>1, out, ldo,
                 work)


cdef inline void step_forward(const CellSpec* cell, const GateWeights* w, Py_ssize_t n_a,
                              Py_ssize_t ms, floating* G, Py_ssize_t ld, const floating* b,
                              const floating* a_prev, Py_ssize_t ld_ap,
                              const floating* c_prev, Py_ssize_t ld_cp,
                              floating* c, floating* a, bint recurrent,
                              bint kernels, floating* scratch=NULL,
                              bint keep_gates=True, bint use_gemv=False,
                              Py_ssize_t row_block=0) noexcept nogil:
    """One step from its input projection in G: the recurrent products (unless
    `recurrent` is off: a single step's concat GEMM did them), then the
    kernels (off: the GEMMs alone, the floor): activated gates in G, the state
    a (and c) rows ld apart like G. c_prev NULL means 0. scratch: the
    recurrent products' (gates_product), or NULL; use_gemv, row_block likewise.
    keep_gates off: G need not hold the activated gates afterwards (no caches;
    the LSTM then skips storing them)."""
    cdef Py_ssize_t gs = n_a * ld
    if cell.kind == CELL_GRU:
        # hc = bca, then [Γr; Γu; hc] += W_a @ a_prev in one GEMM
        if kernels:
            fill_rows(n_a, ms, b + 2 * n_a, G + 2 * gs, ld)
        gates_product(w, True, 0, 3, n_a, n_a, ms, a_prev, ld_ap, <floating>1, G, ld, scratch,
                      use_gemv, row_block)
        if kernels:
            gru_forward_step(n_a, ms, G, ld, gs, b, n_a, a_prev, ld_ap, a, ld)
    elif cell.kind == CELL_GRU_RESET_BEFORE:
        # the candidate's recurrent product needs Γr first: two GEMMs
        gates_product(w, True, 0, 2, n_a, n_a, ms, a_prev, ld_ap, <floating>1, G, ld,
                      scratch, use_gemv, row_block)
        if kernels:
            gru_reset_step(n_a, ms, G, ld, gs, b, n_a, a_prev, ld_ap)
        gates_product(w, True, 2, 3, n_a, n_a, ms, G + 3 * gs, ld, <floating>1, G + 2 * gs, ld,
                      scratch, use_gemv, row_block)
        if kernels:
            gru_candidate_step(n_a, ms, G, ld, gs, b, n_a, a_prev, ld_ap, a, ld)
    else:
        if recurrent:
            gates_product(w, True, 0, cell.gates, n_a, n_a, ms, a_prev, ld_ap, <floating>1, G,
                          ld, scratch, use_gemv, row_block)
        if not kernels:
            return
        if cell.kind == CELL_LSTM:
            # f, i, o = σ(·), c~ = tanh(·), c = f·c_prev + i·c~, a = o·tanh(c)
            lstm_forward_step(n_a, ms, G, ld, gs, b, n_a, c_prev, ld_cp, c, ld, a, ld,
                              keep_gates)
        else:
            # a = tanh(z + b), in place (a is G)
            rnn_forward_step(n_a, ms, G, ld, b)


cdef inline void step_backward(const CellSpec* cell, const GateWeights* w, Py_ssize_t n_a,
                               Py_ssize_t m, const floating* G, const floating* c,
                               Py_ssize_t ld, const floating* a_prev, Py_ssize_t ld_ap,
                               const floating* c_prev, Py_ssize_t ld_cp,
                               const floating* da_up, Py_ssize_t ld_du,
                               floating* da_next, Py_ssize_t ld_dn, bint has_next, floating* dc,
                               floating* dG, Py_ssize_t ld_dg, bint recurrent, bint kernels,
                               const floating* Wt, floating* work) noexcept nogil:
    """The step's gate gradients dG from the upstream da_up plus da_next (the
    gradient from the step after, when has_next; rows ld_dn apart, like dc), and
    (unless `recurrent` is off: a single step's concat GEMM does it) the
    gradient of a_prev into da_next. G, c: the forward's activated gates and
    cell state of the step (rows ld apart); dc carries the gradient of c in
    and out. A cell with gates_are_state reads
    da_up from dG itself. Wt: the stacked recurrent weights transposed, or NULL."""
    cdef Py_ssize_t gs = n_a * ld, dgs = n_a * ld_dg
    if cell.kind == CELL_GRU:
        if kernels:
            gru_backward_step(n_a, m, G, ld, gs, a_prev, ld_ap, da_up, ld_du, da_next, ld_dn,
                              has_next, dG, ld_dg, dgs)
        # da_next += W_a.T @ [dΓr; dΓu; dhc]
        gates_product_t(w, True, 0, 3, n_a, n_a, m, dG, ld_dg, <floating>1, da_next, ld_dn,
                        Wt, work)
    elif cell.kind == CELL_GRU_RESET_BEFORE:
        if kernels:
            gru_candidate_backward(n_a, m, G, ld, gs, a_prev, ld_ap, da_up, ld_du, da_next,
                                   ld_dn, has_next, dG, ld_dg, dgs)
        # dra = Wc_a.T @ dc~, then dΓr and da_next += dra·Γr
        gates_product_t(w, True, 2, 3, n_a, n_a, m, dG + 2 * dgs, ld_dg, <floating>0,
                        dG + 3 * dgs, ld_dg, Wt, work)
        if kernels:
            gru_reset_backward(n_a, m, G, ld, a_prev, ld_ap, da_next, ld_dn, dG, ld_dg, dgs)
        gates_product_t(w, True, 0, 2, n_a, n_a, m, dG, ld_dg, <floating>1, da_next, ld_dn,
                        Wt, work)
    else:
        if kernels:
            if cell.kind == CELL_LSTM:
                lstm_backward_step(n_a, m, G, ld, gs, c, ld, c_prev, ld_cp, da_up, ld_du,
                                   da_next if has_next else NULL, ld_dn, dc, ld_dn, dG, ld_dg,
                                   dgs)
            else:
                # dz = (da + da_next)·(1 − a²), in place over dG (a is G)
                rnn_backward_step(n_a, m, dG, ld_dg, da_next if has_next else NULL, ld_dn, G, ld)
        if recurrent:
            # da_next = Wa.T @ dG   (after the last step this is da0)
            gates_product_t(w, True, 0, cell.gates, n_a, n_a, m, dG, ld_dg, <floating>0,
                            da_next, ld_dn, Wt, work)
