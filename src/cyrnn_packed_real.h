/* One dtype of the packed kernel (see cyrnn_packed.h): REAL and RSFX (its name
 * suffix, _d or _f) defined by the includer. The kernels of every instruction-
 * set level this build holds (cyrnn_packed_impl.h, or cyrnn_packed_plain.h),
 * then the dtype's entry points, which pick the level that runs. */

/* the levels' register budgets: VBYTES (vector bytes), NRMAX4 / NRMAX3 (widest
 * row-vector tile for 4 / 3 row vectors), CMRMAX (rows of a column tile) */
#if CYRNN_PK_DISPATCH
#define VBYTES 64
#define NRMAX4 6
#define NRMAX3 8
#define CMRMAX 8
#define ISFX(name) RSFX(name##_avx512)
#define PK_TARGET __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))
#include "cyrnn_packed_impl.h"
#define VBYTES 32
#define NRMAX4 2
#define NRMAX3 3
#define CMRMAX 4
#define ISFX(name) RSFX(name##_avx2)
#define PK_TARGET __attribute__((target("avx2,fma")))
#include "cyrnn_packed_impl.h"
#endif
#if CYRNN_PK_VECTORS
#if CYRNN_PK_DISPATCH || !(defined(__AVX512F__) || defined(__AVX2__) || defined(__aarch64__))
#define VBYTES 16               /* SSE2 (x86-64's baseline), other 16-byte vectors */
#define NRMAX4 2
#define NRMAX3 3
#define CMRMAX 4
#elif defined(__AVX512F__)
#define VBYTES 64
#define NRMAX4 6
#define NRMAX3 8
#define CMRMAX 8
#elif defined(__AVX2__)
#define VBYTES 32
#define NRMAX4 2
#define NRMAX3 3
#define CMRMAX 4
#else
#define VBYTES 16               /* NEON: 32 registers */
#define NRMAX4 6
#define NRMAX3 8
#define CMRMAX 8
#endif
#define ISFX(name) RSFX(name##_base)
#define PK_TARGET
#include "cyrnn_packed_impl.h"
#else
#define ISFX(name) RSFX(name##_base)
#include "cyrnn_packed_plain.h"
#endif

#if CYRNN_PK_DISPATCH
#define PK_PICK(name, args)                                                     \
    (cyrnn_packed_level() == 2 ? RSFX(name##_avx512) args                      \
     : cyrnn_packed_level() == 1 ? RSFX(name##_avx2) args : RSFX(name##_base) args)
#else
#define PK_PICK(name, args) RSFX(name##_base) args
#endif

/* Elements per vector of the kernel that runs: panels hold multiples of it. */
static ptrdiff_t RSFX(cyrnn_packed_lanes)(void) { return PK_PICK(pk_lanes, ()); }

/* Pack rows [gate q][unit u] = rows[q] + u·ld[q] (k elements each) of `gates`
 * gates of n_a units into panels of U units: panels·k·gates·U elements. */
static void RSFX(cyrnn_pack)(const REAL *const *rows, const ptrdiff_t *ld, int gates,
                             ptrdiff_t n_a, ptrdiff_t k, ptrdiff_t U, REAL *out)
{
    /* row by row (contiguous reads), each into its panel's column (the panel,
     * k·gates·U elements, stays in cache while its rows are written) */
    for (ptrdiff_t p = 0; p * U < n_a; p++)
        for (int g = 0; g < gates; g++)
            for (ptrdiff_t u = 0; u < U; u++) {
                REAL *o = out + (p * k * gates + g) * U + u;
                const REAL *row = rows[g] + (p * U + u) * ld[g];
                if (p * U + u < n_a)
                    for (ptrdiff_t kk = 0; kk < k; kk++)
                        o[kk * gates * U] = row[kk];
                else
                    for (ptrdiff_t kk = 0; kk < k; kk++)
                        o[kk * gates * U] = 0;
            }
}

/* B's columns 0..n-1 (k rows, ldb apart) packed as a pass of `gates` gates in
 * panels of U units reads them: k·n elements at out. */
static void RSFX(cyrnn_pack_columns)(int gates, ptrdiff_t U, const REAL *B, ptrdiff_t ldb,
                                     ptrdiff_t k, ptrdiff_t n, REAL *out)
{
    PK_PICK(pk_pack_columns, (gates, U, B, ldb, k, n, out));
}

/* G[g·gate_stride + u·ldg + j] += Σ_k panel[k][g][u] · B[k][j] for the
 * panel's first `units` units (≤ U), g < gates, j < n; Bp: B's n columns
 * packed by cyrnn_pack_columns. */
static void RSFX(cyrnn_panel_product)(const REAL *panel, ptrdiff_t k, int gates, ptrdiff_t U,
                                      const REAL *Bp, ptrdiff_t n, REAL *G, ptrdiff_t ldg,
                                      ptrdiff_t gate_stride, ptrdiff_t units)
{
    PK_PICK(pk_panel_product, (panel, k, gates, U, Bp, n, G, ldg, gate_stride, units));
}

#undef PK_PICK
