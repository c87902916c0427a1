# The gate weights and their products: the input projection, the recurrent
# product of each forward step (the seam every plan plugs into), and the
# transposed products of backward.
#
# The recurrent product G[rows] += W_a[rows] @ a_prev runs under a plan: a
# `Product` says which, and `recurrent_product` / `recurrent_rows` are the only
# calls the drivers make for it (the chunked driver, split runs, the planner's
# timing). A new way of computing it is one more plan here.
from cython cimport floating

from _blas cimport gemm, gemv, gemm_atb, gemm_atb_pretransposed, gemm_transposed_result

cdef extern from "cyrnn_packed.h" nogil:
    const char* cyrnn_packed_isa()
    int cyrnn_packed_use_level(int level)
    Py_ssize_t cyrnn_packed_lanes_d()
    Py_ssize_t cyrnn_packed_lanes_f()
    void cyrnn_pack_d(const double* const* rows, const Py_ssize_t* ld, int gates,
                      Py_ssize_t n_a, Py_ssize_t k, Py_ssize_t U, double* out)
    void cyrnn_pack_f(const float* const* rows, const Py_ssize_t* ld, int gates,
                      Py_ssize_t n_a, Py_ssize_t k, Py_ssize_t U, float* out)
    void cyrnn_pack_columns_d(int gates, Py_ssize_t U, const double* B, Py_ssize_t ldb,
                              Py_ssize_t k, Py_ssize_t n, double* out)
    void cyrnn_pack_columns_f(int gates, Py_ssize_t U, const float* B, Py_ssize_t ldb,
                              Py_ssize_t k, Py_ssize_t n, float* out)
    void cyrnn_panel_product_d(const double* panel, Py_ssize_t k, int gates, Py_ssize_t U,
                               const double* Bp, Py_ssize_t n, double* G, Py_ssize_t ldg,
                               Py_ssize_t gate_stride, Py_ssize_t units)
    void cyrnn_panel_product_f(const float* panel, Py_ssize_t k, int gates, Py_ssize_t U,
                               const float* Bp, Py_ssize_t n, float* G, Py_ssize_t ldg,
                               Py_ssize_t gate_stride, Py_ssize_t units)


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


# The plans of the recurrent product (CYRNN_FORWARD_PLAN names them in this
# order: src/engine/plans.pxi chooses one per shape and machine).
cdef enum:
    PLAN_DIRECT = 0         # one GEMM on the stacked weights
    PLAN_TRANSPOSED = 1     # the transposed result added back (gemm_transposed_result)
    PLAN_GEMV = 2           # one column: a matrix-vector product
    PLAN_ROWS_256 = 3       # one GEMM per block of 256 rows of the stacked weights
    PLAN_ROWS_128 = 4
    PLAN_ROWS_64 = 5
    PLAN_PACKED = 6         # cyrnn's kernel on weights packed once (cyrnn_packed.h)


# The packed plan's weights: per pass of a step (src/_cells.pxd), the rows of
# its gates q0..q0+gates-1 in panels of `units` units, k = n_a columns
# (cyrnn_packed.h says the layout).
cdef struct PackedPass:
    int q0, gates
    Py_ssize_t units, panels, k
    const void* data

cdef struct PackedWeights:
    int passes
    PackedPass pass_[2]


cdef struct Product:
    int plan                # PLAN_*
    Py_ssize_t row_block    # the row-block plans' rows per GEMM, else 0
    # the transposed plan's (rows × columns) result, the packed plan's block of
    # packed columns (packed_scratch elements), else NULL
    void* scratch
    const PackedWeights* packed     # the packed plan's weights, else NULL


cdef inline Py_ssize_t plan_row_block(int plan) noexcept nogil:
    """The rows of each GEMM of a row-block plan, else 0 (one GEMM)."""
    return 256 >> (plan - PLAN_ROWS_256) if PLAN_ROWS_256 <= plan <= PLAN_ROWS_64 else 0


cdef inline Product product_of(int plan, void* scratch,
                               const PackedWeights* packed=NULL) noexcept nogil:
    cdef Product p
    p.plan, p.row_block = plan, plan_row_block(plan)
    p.scratch = scratch if plan == PLAN_TRANSPOSED or plan == PLAN_PACKED else NULL
    p.packed = packed if plan == PLAN_PACKED else NULL
    return p


cdef inline Py_ssize_t packed_lanes(bint single) noexcept nogil:
    return cyrnn_packed_lanes_f() if single else cyrnn_packed_lanes_d()


cdef inline Py_ssize_t packed_units(bint single, int gates) noexcept nogil:
    """Units per panel: a tile of 4 row vectors (3 for three gates)."""
    return packed_lanes(single) * (4 // gates if gates <= 2 else 1)


cdef inline size_t packed_size(const PackedPass* pk) noexcept nogil:
    """Elements of a pass's panels."""
    return <size_t>pk.panels * pk.k * pk.gates * pk.units


cdef inline void pack_pass(floating dummy, const GateWeights* w, Py_ssize_t n_a,
                           const PackedPass* pk, floating* out) noexcept nogil:
    """The recurrent weights of pk's gates into pk's panels at out."""
    cdef const floating* rows[4]
    cdef Py_ssize_t ld[4]
    cdef int g, q
    for g in range(pk.gates):
        q = pk.q0 + g
        if w.blocks == 1:
            rows[g], ld[g] = <const floating*>w.Wa[0] + q * n_a * w.ldwa[0], w.ldwa[0]
        else:
            rows[g], ld[g] = <const floating*>w.Wa[q], w.ldwa[q]
    if floating is float:
        cyrnn_pack_f(rows, ld, pk.gates, n_a, pk.k, pk.units, out)
    else:
        cyrnn_pack_d(rows, ld, pk.gates, n_a, pk.k, pk.units, out)


cdef inline const PackedPass* packed_pass_of(const PackedWeights* pw, int q0,
                                             int q1) noexcept nogil:
    """The packed pass of gates q0..q1-1, or NULL."""
    cdef int i
    for i in range(pw.passes):
        if pw.pass_[i].q0 == q0 and pw.pass_[i].gates == q1 - q0:
            return &pw.pass_[i]
    return NULL


# The packed plan runs a step's columns in blocks whose gates stay in L1 from
# the product to the cell's kernel (PACKED_TILE_BYTES of G per panel, or per
# group of panels at narrow widths), each
# block's columns of B packed once for all panels (the product's scratch).
cdef enum:
    PACKED_TILE_BYTES = 16384


cdef inline Py_ssize_t packed_columns(const PackedPass* pk, size_t item) noexcept nogil:
    """Columns per block of a pass."""
    return max(8, PACKED_TILE_BYTES // (pk.gates * pk.units * item))


cdef inline size_t packed_scratch(bint single, Py_ssize_t n_a, Py_ssize_t ms) noexcept nogil:
    """Elements of a block of packed columns for chunks of ms columns (any pass:
    three gates, the narrowest panels, have the widest blocks)."""
    cdef size_t item = sizeof(float) if single else sizeof(double)
    return n_a * min(ms, max(8, PACKED_TILE_BYTES // (3 * packed_lanes(single) * item)))


cdef inline void pack_columns(const PackedPass* pk, const floating* B, Py_ssize_t ldb,
                              Py_ssize_t n, floating* Bp) noexcept nogil:
    """B's n columns (k = n_a rows, ldb apart) into Bp as pk's tiles read them."""
    if floating is float:
        cyrnn_pack_columns_f(pk.gates, pk.units, B, ldb, pk.k, n, Bp)
    else:
        cyrnn_pack_columns_d(pk.gates, pk.units, B, ldb, pk.k, n, Bp)


cdef inline void panel_product(const PackedPass* pk, Py_ssize_t p, const floating* Bp,
                               Py_ssize_t n, floating* G, Py_ssize_t ldg,
                               Py_ssize_t gate_stride, Py_ssize_t n_a) noexcept nogil:
    """G += panel p's rows (its units of each gate, gate_stride apart in G; G
    points at the panel's first unit of its first gate) @ the n columns packed
    in Bp."""
    cdef Py_ssize_t U = pk.units, u0 = p * U
    cdef Py_ssize_t units = min(U, n_a - u0)
    cdef const floating* panel = <const floating*>pk.data + p * pk.k * pk.gates * U
    if floating is float:
        cyrnn_panel_product_f(panel, pk.k, pk.gates, U, Bp, n, G, ldg, gate_stride, units)
    else:
        cyrnn_panel_product_d(panel, pk.k, pk.gates, U, Bp, n, G, ldg, gate_stride, units)


cdef inline void packed_product(const PackedPass* pk, Py_ssize_t n_a, Py_ssize_t n,
                                const floating* B, Py_ssize_t ldb, floating* G,
                                Py_ssize_t ldg, floating* Bp) noexcept nogil:
    """G += the pass's gates' weights @ B, block by block of columns, panel by
    panel (the product alone: the forward fuses each panel with the cell's
    kernel, src/_cells.pxd)."""
    cdef Py_ssize_t cols = packed_columns(pk, sizeof(floating)), j0, nc, p
    j0 = 0
    while j0 < n:
        nc = min(cols, n - j0)
        pack_columns(pk, B + j0, ldb, nc, Bp)
        for p in range(pk.panels):
            panel_product(pk, p, Bp, nc, G + p * pk.units * ldg + j0, ldg, n_a * ldg, n_a)
        j0 += nc


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
                               Py_ssize_t ldg) noexcept nogil:
    """G (+)= W @ B for gates q0..q1-1 (n_a rows each, one after another in G):
    their recurrent weights (k = n_a) or input weights (k = n_x), one GEMM on
    stacked weights, else one per gate."""
    cdef const Py_ssize_t* ld
    cdef const void* const* W = weight_blocks(w, recurrent, &ld)
    cdef int q
    if w.blocks == 1:
        gemm(False, False, (q1 - q0) * n_a, n, k, <floating>1,
             <const floating*>W[0] + q0 * n_a * ld[0], ld[0], B, ldb, beta, G, ldg)
        return
    for q in range(q0, q1):
        gemm(False, False, n_a, n, k, <floating>1, <const floating*>W[q], ld[q], B, ldb, beta,
             G + (q - q0) * n_a * ldg, ldg)


cdef inline void recurrent_rows(const Product* p, const GateWeights* w, Py_ssize_t r0,
                                Py_ssize_t nr, Py_ssize_t n_a, Py_ssize_t n,
                                const floating* B, Py_ssize_t ldb, floating* G,
                                Py_ssize_t ldg) noexcept nogil:
    """Rows r0..r0+nr-1 of the stacked recurrent weights times B, added onto G
    (G points at the first of those rows), in the plan's row blocks. Split
    runs give each part one block of rows."""
    cdef const floating* Wa = <const floating*>w.Wa[0]
    cdef Py_ssize_t ld = w.ldwa[0], block = p.row_block if p.row_block > 0 else nr, i
    i = r0
    while i < r0 + nr:
        gemm(False, False, min(block, r0 + nr - i), n, n_a, <floating>1, Wa + i * ld, ld, B,
             ldb, <floating>1, G + (i - r0) * ldg, ldg)
        i += block


cdef inline void recurrent_product(const Product* p, const GateWeights* w, int q0, int q1,
                                   Py_ssize_t n_a, Py_ssize_t n, const floating* B,
                                   Py_ssize_t ldb, floating* G, Py_ssize_t ldg) noexcept nogil:
    """The seam: G += W_a @ B for gates q0..q1-1 (G points at gate q0's rows)
    under plan p."""
    cdef Py_ssize_t rows = (q1 - q0) * n_a
    cdef const floating* Wa = <const floating*>w.Wa[0] + q0 * n_a * w.ldwa[0]
    cdef const PackedPass* pk
    if p.plan == PLAN_PACKED and p.packed != NULL:
        pk = packed_pass_of(p.packed, q0, q1)
        if pk != NULL and p.scratch != NULL:
            packed_product(pk, n_a, n, B, ldb, G, ldg, <floating*>p.scratch)
            return
    if w.blocks != 1 or p.plan == PLAN_DIRECT:
        gates_product(w, True, q0, q1, n_a, n_a, n, B, ldb, <floating>1, G, ldg)
    elif p.plan == PLAN_GEMV and n == 1:
        gemv(False, rows, n_a, <floating>1, Wa, w.ldwa[0], B, ldb, <floating>1, G, ldg)
    elif p.plan == PLAN_TRANSPOSED and p.scratch != NULL:
        gemm_transposed_result(rows, n, n_a, Wa, w.ldwa[0], B, ldb, <floating>1, G, ldg,
                               <floating*>p.scratch)
    elif 0 < p.row_block < rows:
        recurrent_rows(p, w, q0 * n_a, rows, n_a, n, B, ldb, G, ldg)
    else:
        gates_product(w, True, q0, q1, n_a, n_a, n, B, ldb, <floating>1, G, ldg)


cdef inline void project_rows(int x_split, int x_dest, const GateWeights* w, Py_ssize_t r0,
                              Py_ssize_t nr, Py_ssize_t n_a, Py_ssize_t n_x, Py_ssize_t n,
                              const floating* X, Py_ssize_t ldx, floating* G,
                              Py_ssize_t ldg) noexcept nogil:
    """Rows r0..r0+nr-1 of the input projection Wx @ X (stacked weights) into G
    (row 0), where the cell places them: weight rows from x_split·n_a on go to
    G's rows from x_dest·n_a on (see CellSpec)."""
    cdef const floating* Wx = <const floating*>w.Wx[0]
    cdef Py_ssize_t split = x_split * n_a, lo, hi
    lo, hi = r0, min(r0 + nr, split)
    if hi > lo:
        gemm(False, False, hi - lo, n, n_x, <floating>1, Wx + lo * w.ldwx[0], w.ldwx[0], X, ldx,
             <floating>0, G + lo * ldg, ldg)
    lo, hi = max(r0, split), r0 + nr
    if hi > lo:
        gemm(False, False, hi - lo, n, n_x, <floating>1, Wx + lo * w.ldwx[0], w.ldwx[0], X, ldx,
             <floating>0, G + (lo + (x_dest - x_split) * n_a) * ldg, ldg)


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
        # One column against weights of 2^18 elements or more: matrix-vector
        # products (OpenBLAS packs transposed weights with strided reads on
        # every GEMM call; see benchmarks/README.md, "backward at m = 1").
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
