/* One instantiation of the packed kernel (see cyrnn_packed.h): REAL, RSFX,
 * ISFX (name suffix), VBYTES (vector bytes), NRMAX4 / NRMAX3 (the widest
 * column tile that fits the registers with 4 / 3 row vectors), CMRMAX (the
 * most rows of a tile along columns), PK_TARGET.
 * Undefines its per-ISA macros at the end so the next level can be included. */

#define PK_LANES ((ptrdiff_t)(VBYTES / sizeof(REAL)))

typedef REAL ISFX(pk_vec) __attribute__((vector_size(VBYTES)));
/* the same vector at any element alignment (panels and tiles are aligned, but
 * loads through this type stay correct wherever a buffer lands) */
typedef REAL ISFX(pk_uvec) __attribute__((vector_size(VBYTES), aligned(sizeof(REAL))));

static ptrdiff_t ISFX(pk_lanes)(void) { return PK_LANES; }

/* tile(a, k, b, ldb, out): out[j][r][lane] = Σ_kk a[kk][r][lane] · b[kk·ldb + j]
 * for RV row vectors and NR columns, accumulated in registers. */
#define PK_TILE(RV, NR)                                                                \
PK_TARGET static void ISFX(pk_tile_##RV##_##NR)(                                       \
    const REAL *CYRNN_PK_RESTRICT a, ptrdiff_t k, const REAL *CYRNN_PK_RESTRICT b,     \
    ptrdiff_t ldb, REAL *CYRNN_PK_RESTRICT out)                                        \
{                                                                                      \
    ISFX(pk_vec) acc[RV][NR];                                                          \
    CYRNN_PK_UNROLL for (int r = 0; r < RV; r++)                                       \
        CYRNN_PK_UNROLL for (int j = 0; j < NR; j++)                                   \
            acc[r][j] = (ISFX(pk_vec)){0};                                             \
    for (ptrdiff_t kk = 0; kk < k; kk++) {                                             \
        ISFX(pk_vec) av[RV];                                                           \
        const REAL *ak = a + kk * RV * PK_LANES;                                       \
        const REAL *bk = b + kk * ldb;                                                 \
        CYRNN_PK_UNROLL for (int r = 0; r < RV; r++)                                   \
            av[r] = *(const ISFX(pk_uvec) *)(ak + r * PK_LANES);                       \
        CYRNN_PK_UNROLL for (int j = 0; j < NR; j++) {                                 \
            const ISFX(pk_vec) bj = bk[j] - (ISFX(pk_vec)){0};  /* (x - 0 folds: a broadcast) */ \
            CYRNN_PK_UNROLL for (int r = 0; r < RV; r++)                               \
                acc[r][j] += av[r] * bj;                                               \
        }                                                                              \
    }                                                                                  \
    CYRNN_PK_UNROLL for (int j = 0; j < NR; j++)                                       \
        CYRNN_PK_UNROLL for (int r = 0; r < RV; r++)                                   \
            *(ISFX(pk_uvec) *)(out + (j * RV + r) * PK_LANES) = acc[r][j];             \
}

PK_TILE(4, 1)
PK_TILE(4, 2)
PK_TILE(3, 1)
PK_TILE(3, 2)
PK_TILE(3, 3)
#if NRMAX4 >= 4
PK_TILE(4, 4)
PK_TILE(4, 6)
PK_TILE(3, 4)
PK_TILE(3, 8)
#endif

/* Wide column blocks turn the tile around: vectors along the columns of B (the
 * rows of G are contiguous columns, so the sums go onto G a vector at a time),
 * each of PK_MR rows of the panel broadcast. One FMA chain per output over k
 * as above, so either tile gives the same bits. PK_MR divides every panel's
 * gates·U rows (a multiple of the lanes). */
#define PK_MR (PK_LANES < CMRMAX ? PK_LANES : CMRMAX)

#define PK_CTILE(NV)                                                                   \
PK_TARGET static void ISFX(pk_ctile_##NV)(                                             \
    const REAL *CYRNN_PK_RESTRICT a, ptrdiff_t rows, ptrdiff_t k,                      \
    const REAL *CYRNN_PK_RESTRICT b, REAL *CYRNN_PK_RESTRICT out)                      \
{                                                                                      \
    ISFX(pk_vec) acc[PK_MR][NV];                                                       \
    CYRNN_PK_UNROLL for (int i = 0; i < PK_MR; i++)                                    \
        CYRNN_PK_UNROLL for (int v = 0; v < NV; v++)                                   \
            acc[i][v] = (ISFX(pk_vec)){0};                                             \
    for (ptrdiff_t kk = 0; kk < k; kk++) {                                             \
        ISFX(pk_vec) bv[NV];                                                           \
        const REAL *ak = a + kk * rows;                                                \
        CYRNN_PK_UNROLL for (int v = 0; v < NV; v++)                                   \
            bv[v] = *(const ISFX(pk_uvec) *)(b + (kk * NV + v) * PK_LANES);            \
        CYRNN_PK_UNROLL for (int i = 0; i < PK_MR; i++) {                              \
            const ISFX(pk_vec) ai = ak[i] - (ISFX(pk_vec)){0};                         \
            CYRNN_PK_UNROLL for (int v = 0; v < NV; v++)                               \
                acc[i][v] += ai * bv[v];                                               \
        }                                                                              \
    }                                                                                  \
    CYRNN_PK_UNROLL for (int i = 0; i < PK_MR; i++)                                    \
        CYRNN_PK_UNROLL for (int v = 0; v < NV; v++)                                   \
            *(ISFX(pk_uvec) *)(out + (i * NV + v) * PK_LANES) = acc[i][v];             \
}

PK_CTILE(1)
PK_CTILE(2)
PK_CTILE(3)

/* The width of the next column tile when `left` columns are left: whole
 * vectors of columns (up to 3) while a vector's worth is left, then the widest
 * row-vector tile that fits the registers (NRMAX), 4, 3 (the widest for three
 * row vectors on 16 registers), 2, 1 (so m = 1 does no padded work). */
static ptrdiff_t ISFX(pk_tile_width)(int rv, ptrdiff_t left)
{
    if (left >= PK_LANES)
        return (left >= 3 * PK_LANES ? 3 : left / PK_LANES) * PK_LANES;
    if (rv == 4) {
#if NRMAX4 >= 4
        if (left >= 6) return 6;
        if (left >= 4) return 4;
#endif
        return left >= 2 ? 2 : 1;
    }
#if NRMAX4 >= 4
    if (left >= 8) return 8;
    if (left >= 4) return 4;
#else
    if (left >= 3) return 3;
#endif
    return left >= 2 ? 2 : 1;
}

PK_TARGET static void ISFX(pk_tile_run)(int rv, ptrdiff_t nr, const REAL *a, ptrdiff_t k,
                                          const REAL *b, REAL *tile)
{
#define PK_CASE(RV, NR) if (rv == RV && nr == NR) { ISFX(pk_tile_##RV##_##NR)(a, k, b, NR, tile); return; }
#if NRMAX4 >= 4
    PK_CASE(4, 6) PK_CASE(4, 4) PK_CASE(3, 8) PK_CASE(3, 4)
#endif
    PK_CASE(4, 2) PK_CASE(4, 1) PK_CASE(3, 3) PK_CASE(3, 2) PK_CASE(3, 1)
#undef PK_CASE
}

/* Columns 0..n-1 of B (k rows, ldb apart) as the tiles read them: tile by
 * tile (pk_tile_width), each k-major (its nr columns of row 0, of row 1, ...),
 * so the tile at column j starts at out + k·j. */
static void ISFX(pk_pack_columns)(int gates, ptrdiff_t U, const REAL *CYRNN_PK_RESTRICT B,
                                  ptrdiff_t ldb, ptrdiff_t k, ptrdiff_t n,
                                  REAL *CYRNN_PK_RESTRICT out)
{
    const int rv = (int)(gates * U / PK_LANES);
    ptrdiff_t j = 0;
    while (j < n) {
        const ptrdiff_t nr = ISFX(pk_tile_width)(rv, n - j);
        REAL *o = out + k * j;
        if (nr == 1) {
            for (ptrdiff_t kk = 0; kk < k; kk++)
                o[kk] = B[kk * ldb + j];
        } else {
            for (ptrdiff_t kk = 0; kk < k; kk++)
                for (ptrdiff_t c = 0; c < nr; c++)
                    o[kk * nr + c] = B[kk * ldb + j + c];
        }
        j += nr;
    }
}

/* G += the panel's rows @ the n columns packed by pk_pack_columns. */
PK_TARGET static void ISFX(pk_panel_product)(
    const REAL *CYRNN_PK_RESTRICT panel, ptrdiff_t k, int gates, ptrdiff_t U,
    const REAL *CYRNN_PK_RESTRICT Bp, ptrdiff_t n, REAL *CYRNN_PK_RESTRICT G,
    ptrdiff_t ldg, ptrdiff_t gate_stride, ptrdiff_t units)
{
    const int rv = (int)(gates * U / PK_LANES);
    REAL tile[8 * 4 * (VBYTES / sizeof(REAL))] __attribute__((aligned(64)));
    const ptrdiff_t rows = gates * U;
    ptrdiff_t j = 0;
    while (j < n) {
        const ptrdiff_t nr = ISFX(pk_tile_width)(rv, n - j);
        if (nr >= PK_LANES) {
            /* whole vectors of columns: PK_MR rows at a time, onto G's rows */
            const ptrdiff_t nv = nr / PK_LANES;
            for (ptrdiff_t r0 = 0; r0 < rows; r0 += PK_MR) {
                if (nv == 3)
                    ISFX(pk_ctile_3)(panel + r0, rows, k, Bp + k * j, tile);
                else if (nv == 2)
                    ISFX(pk_ctile_2)(panel + r0, rows, k, Bp + k * j, tile);
                else
                    ISFX(pk_ctile_1)(panel + r0, rows, k, Bp + k * j, tile);
                for (ptrdiff_t i = 0; i < PK_MR; i++) {
                    const ptrdiff_t g = (r0 + i) / U, u = (r0 + i) % U;
                    if (u >= units)
                        continue;
                    REAL *out = G + g * gate_stride + u * ldg + j;
                    const REAL *t = tile + i * nr;
                    for (ptrdiff_t c = 0; c < nr; c++)
                        out[c] += t[c];
                }
            }
            j += nr;
            continue;
        }
        ISFX(pk_tile_run)(rv, nr, panel, k, Bp + k * j, tile);
        /* tile[c][r][lane]: row vector r = g·U/lanes + u/lanes, so unit u of
         * gate g of column c sits at (c·rv + g·U/lanes)·lanes + u */
        for (ptrdiff_t c = 0; c < nr; c++)
            for (int g = 0; g < gates; g++) {
                const REAL *t = tile + (c * rv + g * (U / PK_LANES)) * PK_LANES;
                REAL *out = G + g * gate_stride + j + c;
                for (ptrdiff_t u = 0; u < units; u++)
                    out[u * ldg] += t[u];
            }
        j += nr;
    }
}

#undef PK_TILE
#undef PK_CTILE
#undef PK_MR
#undef CMRMAX
#undef PK_LANES
#undef VBYTES
#undef NRMAX4
#undef NRMAX3
#undef ISFX
#undef PK_TARGET
