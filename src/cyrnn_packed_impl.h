/* One instantiation of the packed kernel (see cyrnn_packed.h): REAL, RSFX,
 * ISFX (name suffix), VBYTES (vector bytes), NRMAX4 / NRMAX3 (the widest
 * column tile that fits the registers with 4 / 3 row vectors), PK_TARGET.
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

/* Columns j0.. of a tile of width nr (the widest of NRMAX, 4, 2, 1 that fits
 * what is left; NRMAX3's 3 where it is the widest) into tile[]. */
PK_TARGET static ptrdiff_t ISFX(pk_tile_run)(int rv, const REAL *a, ptrdiff_t k,
                                               const REAL *b, ptrdiff_t ldb, ptrdiff_t left,
                                               REAL *tile)
{
    if (rv == 4) {
#if NRMAX4 >= 4
        if (left >= 6) { ISFX(pk_tile_4_6)(a, k, b, ldb, tile); return 6; }
        if (left >= 4) { ISFX(pk_tile_4_4)(a, k, b, ldb, tile); return 4; }
#endif
        if (left >= 2) { ISFX(pk_tile_4_2)(a, k, b, ldb, tile); return 2; }
        ISFX(pk_tile_4_1)(a, k, b, ldb, tile);
        return 1;
    }
#if NRMAX4 >= 4
    if (left >= 8) { ISFX(pk_tile_3_8)(a, k, b, ldb, tile); return 8; }
    if (left >= 4) { ISFX(pk_tile_3_4)(a, k, b, ldb, tile); return 4; }
#else
    if (left >= 3) { ISFX(pk_tile_3_3)(a, k, b, ldb, tile); return 3; }
#endif
    if (left >= 2) { ISFX(pk_tile_3_2)(a, k, b, ldb, tile); return 2; }
    ISFX(pk_tile_3_1)(a, k, b, ldb, tile);
    return 1;
}

PK_TARGET static void ISFX(pk_panel_product)(
    const REAL *CYRNN_PK_RESTRICT panel, ptrdiff_t k, int gates, ptrdiff_t U,
    const REAL *CYRNN_PK_RESTRICT B, ptrdiff_t ldb, ptrdiff_t n, REAL *CYRNN_PK_RESTRICT G,
    ptrdiff_t ldg, ptrdiff_t gate_stride, ptrdiff_t units)
{
    const int rv = (int)(gates * U / PK_LANES);
    if ((rv != 3 && rv != 4) || U % PK_LANES) {
        /* (no layout the engine packs; kept correct for any other) */
        for (int g = 0; g < gates; g++)
            for (ptrdiff_t u = 0; u < units; u++)
                for (ptrdiff_t j = 0; j < n; j++) {
                    REAL s = 0;
                    for (ptrdiff_t kk = 0; kk < k; kk++)
                        s += panel[(kk * gates + g) * U + u] * B[kk * ldb + j];
                    G[g * gate_stride + u * ldg + j] += s;
                }
        return;
    }
    REAL tile[8 * 4 * (VBYTES / sizeof(REAL))] __attribute__((aligned(64)));
    ptrdiff_t j = 0;
    while (j < n) {
        const ptrdiff_t nr = ISFX(pk_tile_run)(rv, panel, k, B + j, ldb, n - j, tile);
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
#undef PK_LANES
#undef VBYTES
#undef NRMAX4
#undef NRMAX3
#undef ISFX
#undef PK_TARGET
