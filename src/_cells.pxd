# The cells' steps, behind one interface the engine's driver calls
# (src/engine/). A cell's other facts (gates, states, parameter schema)
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

from _product cimport (GateWeights, Product, PackedPass, PLAN_PACKED, recurrent_product,
                       packed_pass_of, packed_columns, pack_columns, panel_product,
                       gates_product_t, PACKED_TILE_BYTES)
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


# A forward step is one or two passes (the reset-before GRU's candidate needs
# Γr·a_prev first); each pass is: its rows of G made ready for the product
# (prepare_rows), the recurrent product of its gates (src/_product.pxd, under
# the run's plan), then the cell's kernel on its units (step_kernel). The
# chunked driver runs a pass over every unit at once, split runs over a part
# of the units: the same calls.
cdef inline int step_passes(const CellSpec* cell) noexcept nogil:
    return 2 if cell.kind == CELL_GRU_RESET_BEFORE else 1


cdef inline void pass_gates(const CellSpec* cell, int pass_, int* q0, int* q1) noexcept nogil:
    """The gates whose recurrent product pass pass_ runs."""
    q0[0], q1[0] = 0, cell.gates
    if cell.kind == CELL_GRU_RESET_BEFORE:
        q0[0] = 0 if pass_ == 0 else 2
        q1[0] = 2 if pass_ == 0 else 3


cdef inline bint pass_on_reset_state(const CellSpec* cell, int pass_) noexcept nogil:
    """Whether the pass's product acts on Γr·a_prev (G block 3) instead of a_prev."""
    return cell.kind == CELL_GRU_RESET_BEFORE and pass_ == 1


cdef inline void prepare_rows(const CellSpec* cell, Py_ssize_t n_a, Py_ssize_t r0,
                              Py_ssize_t nr, Py_ssize_t ms, const floating* b, floating* G,
                              Py_ssize_t ld) noexcept nogil:
    """Rows r0..r0+nr-1 of G (G points at row 0) before their recurrent product
    adds onto them: the reset-after GRU's hc rows (block 2) start from bca, the
    other rows hold the input projection already."""
    cdef Py_ssize_t lo, hi
    if cell.kind == CELL_GRU:
        lo, hi = max(r0, 2 * n_a), min(r0 + nr, 3 * n_a)
        if hi > lo:
            fill_rows(hi - lo, ms, b + lo, G + lo * ld, ld)


cdef inline void step_kernel(const CellSpec* cell, int pass_, Py_ssize_t units,
                             Py_ssize_t n_a, Py_ssize_t ms, floating* G, Py_ssize_t ld,
                             const floating* b, const floating* a_prev, Py_ssize_t ld_ap,
                             const floating* c_prev, Py_ssize_t ld_cp, floating* c,
                             floating* a, bint keep_gates) noexcept nogil:
    """The cell's elementwise kernel of pass pass_ on `units` units: G, b, a_prev,
    c_prev (NULL: 0), c, a point at the first of them (G's gate blocks n_a·ld
    apart, the bias's n_a). keep_gates off: G need not hold the activated gates
    afterwards (no caches; the LSTM then skips storing them)."""
    cdef Py_ssize_t gs = n_a * ld
    if cell.kind == CELL_LSTM:
        # f, i, o = σ(·), c~ = tanh(·), c = f·c_prev + i·c~, a = o·tanh(c)
        lstm_forward_step(units, ms, G, ld, gs, b, n_a, c_prev, ld_cp, c, ld, a, ld, keep_gates)
    elif cell.kind == CELL_GRU:
        gru_forward_step(units, ms, G, ld, gs, b, n_a, a_prev, ld_ap, a, ld)
    elif cell.kind == CELL_GRU_RESET_BEFORE and pass_ == 0:
        gru_reset_step(units, ms, G, ld, gs, b, n_a, a_prev, ld_ap)
    elif cell.kind == CELL_GRU_RESET_BEFORE:
        gru_candidate_step(units, ms, G, ld, gs, b, n_a, a_prev, ld_ap, a, ld)
    else:
        # a = tanh(z + b), in place (a is G)
        rnn_forward_step(units, ms, G, ld, b)


cdef inline void packed_pass(const CellSpec* cell, int pass_, const PackedPass* pk,
                             Py_ssize_t n_a, Py_ssize_t ms, const floating* B, Py_ssize_t ldb,
                             floating* G, Py_ssize_t ld, const floating* b,
                             const floating* a_prev, Py_ssize_t ld_ap,
                             const floating* c_prev, Py_ssize_t ld_cp, floating* c,
                             floating* a, bint keep_gates, floating* Bp, Py_ssize_t first=0,
                             Py_ssize_t units=-1, bint kernels=True) noexcept nogil:
    """Pass pass_ of a step under the packed plan on units first..first+units-1
    (whole panels; -1: to the last): per block of columns (B's packed into Bp)
    and group of panels whose gates fill a tile (one panel at wide blocks), G +=
    their gates' weights @ B, then (kernels) the cell's kernel on those units and
    columns while their gates are in L1 (step_kernel's arguments; G at row 0)."""
    cdef Py_ssize_t gs = n_a * ld, U = pk.units, p, p0, p1, u0, j0, nc, together
    cdef Py_ssize_t cols = packed_columns(pk, sizeof(floating))
    cdef Py_ssize_t last = n_a if units < 0 else min(n_a, first + units)
    cdef Py_ssize_t end = (last + U - 1) // U
    j0 = 0
    while j0 < ms:
        nc = min(cols, ms - j0)
        pack_columns(pk, B + j0, ldb, nc, Bp)
        # as many panels as the tile's bytes hold at this width (narrow blocks: a
        # few columns of every unit), then the cell's kernel on all their units
        together = max(1, PACKED_TILE_BYTES // (pk.gates * U * nc * sizeof(floating)))
        p0 = first // U
        while p0 < end:
            p1 = min(end, p0 + together)
            for p in range(p0, p1):
                panel_product(pk, p, Bp, nc, G + pk.q0 * gs + p * U * ld + j0, ld, gs, n_a)
            u0 = p0 * U
            if kernels:
                step_kernel(cell, pass_, min(p1 * U, n_a) - u0, n_a, nc, G + u0 * ld + j0, ld,
                            b + u0, a_prev + u0 * ld_ap + j0, ld_ap,
                            c_prev + u0 * ld_cp + j0 if c_prev != NULL else NULL, ld_cp,
                            c + u0 * ld + j0 if c != NULL else NULL, a + u0 * ld + j0,
                            keep_gates)
            p0 = p1
        j0 += nc


cdef inline void step_forward(const CellSpec* cell, const GateWeights* w, const Product* p,
                              Py_ssize_t n_a, Py_ssize_t ms, floating* G, Py_ssize_t ld,
                              const floating* b, const floating* a_prev, Py_ssize_t ld_ap,
                              const floating* c_prev, Py_ssize_t ld_cp,
                              floating* c, floating* a, bint recurrent,
                              bint kernels, bint keep_gates=True) noexcept nogil:
    """One step from its input projection in G: per pass, the recurrent product
    (unless `recurrent` is off: a single step's concat GEMM did it) under plan
    p, then the kernel (off: the GEMMs alone, the floor): activated gates in G,
    the state a (and c) rows ld apart like G. c_prev NULL means 0."""
    cdef Py_ssize_t gs = n_a * ld
    cdef int pass_, q0, q1
    cdef const PackedPass* pk
    for pass_ in range(step_passes(cell)):
        pass_gates(cell, pass_, &q0, &q1)
        if kernels:
            prepare_rows(cell, n_a, q0 * n_a, (q1 - q0) * n_a, ms, b, G, ld)
        pk = packed_pass_of(p.packed, q0, q1) if (
            p.plan == PLAN_PACKED and p.packed != NULL and p.scratch != NULL and recurrent
            and kernels) else NULL
        if pk != NULL:
            packed_pass(cell, pass_, pk, n_a, ms,
                        G + 3 * gs if pass_on_reset_state(cell, pass_) else a_prev,
                        ld if pass_on_reset_state(cell, pass_) else ld_ap, G, ld, b, a_prev,
                        ld_ap, c_prev, ld_cp, c, a, keep_gates, <floating*>p.scratch)
            continue
        if recurrent and pass_on_reset_state(cell, pass_):
            recurrent_product(p, w, q0, q1, n_a, ms, G + 3 * gs, ld, G + q0 * gs, ld)
        elif recurrent:
            recurrent_product(p, w, q0, q1, n_a, ms, a_prev, ld_ap, G + q0 * gs, ld)
        if kernels:
            step_kernel(cell, pass_, n_a, n_a, ms, G, ld, b, a_prev, ld_ap, c_prev, ld_cp, c, a,
                        keep_gates)


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
