/* The packed recurrent product: G[gates of a panel of units] += W_a · B, with
 * W_a packed once per call (or per model) into panels the kernel streams.
 *
 * Layout. A pass multiplies the rows of `gates` gates (q0 .. q0+gates-1 of the
 * stacked weights, n_a rows each). Its units are cut into panels of U units
 * (U a multiple of the vector's lanes; the last panel padded with zero rows),
 * and panel p is stored k-major: for each k, the U weights of each gate, one
 * gate after another (gates·U elements, gates·U/lanes vectors). So one tile of
 * the product holds every gate of its units, which is what the cell's kernel
 * needs next, and every load of the panel is one whole vector.
 *
 * Kernel. A tile is the panel's RV = gates·U/lanes row vectors times NR
 * columns of B, accumulated in registers over k in the order 0..k-1 (one FMA
 * chain per output: the same bits whatever the tile, the panel split among
 * threads or the column blocking), then added onto G (which holds the input
 * projection). Columns run in tiles of the widest NR that fits the registers,
 * the remainder in narrower tiles, so m = 1 does no padded work.
 *
 * One source for every ISA: GCC/Clang vector extensions compiled per level
 * (AVX-512, AVX2+FMA, and 16-byte vectors: SSE2 or NEON), picked once at
 * run time on x86-64 like the elementwise passes' clones; plain C loops where
 * vector extensions are missing (MSVC).
 */
#ifndef CYRNN_PACKED_H
#define CYRNN_PACKED_H

#include <stddef.h>
#include <string.h>
#include "cyrnn_math.h"

#if defined(_MSC_VER)
#define CYRNN_PK_RESTRICT __restrict
#else
#define CYRNN_PK_RESTRICT __restrict__
#endif

/* CYRNN_PK_PLAIN: the plain-C kernel on any compiler (CI tests it with GCC) */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(_MSC_VER) && !defined(CYRNN_PK_PLAIN)
#define CYRNN_PK_VECTORS 1
#else
#define CYRNN_PK_VECTORS 0
#endif

/* x86-64 with GCC/Clang: three levels compiled side by side, dispatched at run
 * time (a -march build, CYRNN_NO_CLONES, compiles the one its flags allow). */
#if CYRNN_PK_VECTORS && defined(__x86_64__) && !defined(CYRNN_NO_CLONES)
#define CYRNN_PK_DISPATCH 1
#else
#define CYRNN_PK_DISPATCH 0
#endif

#define CYRNN_PK_UNROLL _Pragma("GCC unroll 16")

/* ---------------------------------------------------------------- instantiations */
#define REAL double
#define RSFX(name) name##_d

#if CYRNN_PK_DISPATCH
#define VBYTES 64
#define NRMAX4 6
#define NRMAX3 8
#define CMRMAX 8
#define ISFX(name) name##_d_avx512
#define PK_TARGET __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))
#include "cyrnn_packed_impl.h"
#define VBYTES 32
#define NRMAX4 2
#define NRMAX3 3
#define CMRMAX 4
#define ISFX(name) name##_d_avx2
#define PK_TARGET __attribute__((target("avx2,fma")))
#include "cyrnn_packed_impl.h"
#define VBYTES 16
#define NRMAX4 2
#define NRMAX3 3
#define CMRMAX 4
#define ISFX(name) name##_d_base
#define PK_TARGET
#include "cyrnn_packed_impl.h"
#elif CYRNN_PK_VECTORS
#if defined(__AVX512F__)
#define VBYTES 64
#define NRMAX4 6
#define NRMAX3 8
#define CMRMAX 8
#elif defined(__AVX2__)
#define VBYTES 32
#define NRMAX4 2
#define NRMAX3 3
#define CMRMAX 4
#elif defined(__aarch64__)
#define VBYTES 16
#define NRMAX4 6
#define NRMAX3 8
#define CMRMAX 8
#else
#define VBYTES 16
#define NRMAX4 2
#define NRMAX3 3
#define CMRMAX 4
#endif
#define ISFX(name) name##_d_base
#define PK_TARGET
#include "cyrnn_packed_impl.h"
#else
#define ISFX(name) name##_d_base
#include "cyrnn_packed_plain.h"
#endif
#undef REAL
#undef RSFX

#define REAL float
#define RSFX(name) name##_f

#if CYRNN_PK_DISPATCH
#define VBYTES 64
#define NRMAX4 6
#define NRMAX3 8
#define CMRMAX 8
#define ISFX(name) name##_f_avx512
#define PK_TARGET __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))
#include "cyrnn_packed_impl.h"
#define VBYTES 32
#define NRMAX4 2
#define NRMAX3 3
#define CMRMAX 4
#define ISFX(name) name##_f_avx2
#define PK_TARGET __attribute__((target("avx2,fma")))
#include "cyrnn_packed_impl.h"
#define VBYTES 16
#define NRMAX4 2
#define NRMAX3 3
#define CMRMAX 4
#define ISFX(name) name##_f_base
#define PK_TARGET
#include "cyrnn_packed_impl.h"
#elif CYRNN_PK_VECTORS
#if defined(__AVX512F__)
#define VBYTES 64
#define NRMAX4 6
#define NRMAX3 8
#define CMRMAX 8
#elif defined(__AVX2__)
#define VBYTES 32
#define NRMAX4 2
#define NRMAX3 3
#define CMRMAX 4
#elif defined(__aarch64__)
#define VBYTES 16
#define NRMAX4 6
#define NRMAX3 8
#define CMRMAX 8
#else
#define VBYTES 16
#define NRMAX4 2
#define NRMAX3 3
#define CMRMAX 4
#endif
#define ISFX(name) name##_f_base
#define PK_TARGET
#include "cyrnn_packed_impl.h"
#else
#define ISFX(name) name##_f_base
#include "cyrnn_packed_plain.h"
#endif
#undef REAL
#undef RSFX

/* ---------------------------------------------------------------- dispatch */
/* 2: AVX-512, 1: AVX2 + FMA, 0: 16-byte vectors (or plain C). */
static int cyrnn_packed_level_cached = -1;

static int cyrnn_packed_level(void)
{
    int level = cyrnn_packed_level_cached;
    if (level >= 0)
        return level;
    level = 0;
#if CYRNN_PK_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
        level = 2;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        level = 1;
#endif
    cyrnn_packed_level_cached = level;   /* (threads racing here store the same) */
    return level;
}

/* Tests: run a lower level than the machine's best (what a smaller CPU would
 * run); -1 restores the best. Only between calls: a call packs and multiplies
 * at one level. Returns the level now in force. */
static int cyrnn_packed_use_level(int level)
{
    cyrnn_packed_level_cached = -1;
    int best = cyrnn_packed_level();
    cyrnn_packed_level_cached = level >= 0 && level < best ? level : best;
    return cyrnn_packed_level_cached;
}

/* The ISA the kernel runs ("avx512", "avx2", "sse2/neon", "plain"). */
static const char *cyrnn_packed_isa(void)
{
#if CYRNN_PK_DISPATCH
    static const char *names[3] = {"sse2", "avx2", "avx512"};
    return names[cyrnn_packed_level()];
#elif CYRNN_PK_VECTORS && defined(__AVX512F__)
    return "avx512";
#elif CYRNN_PK_VECTORS && defined(__AVX2__)
    return "avx2";
#elif CYRNN_PK_VECTORS && defined(__aarch64__)
    return "neon";
#elif CYRNN_PK_VECTORS && defined(__SSE2__)
    return "sse2";
#elif CYRNN_PK_VECTORS
    return "vector16";
#else
    return "plain";
#endif
}

#if CYRNN_PK_DISPATCH
#define CYRNN_PK_PICK(name, sfx, args)                                          \
    (cyrnn_packed_level() == 2 ? name##_##sfx##_avx512 args                     \
     : cyrnn_packed_level() == 1 ? name##_##sfx##_avx2 args : name##_##sfx##_base args)
#else
#define CYRNN_PK_PICK(name, sfx, args) name##_##sfx##_base args
#endif

/* Elements per vector of the kernel that runs: panels hold multiples of it. */
static ptrdiff_t cyrnn_packed_lanes_d(void) { return CYRNN_PK_PICK(pk_lanes, d, ()); }
static ptrdiff_t cyrnn_packed_lanes_f(void) { return CYRNN_PK_PICK(pk_lanes, f, ()); }

/* Pack rows [gate q][unit u] = rows[q] + u·ld[q] (k elements each) of `gates`
 * gates of n_a units into panels of U units: panels·k·gates·U elements. */
static void cyrnn_pack_d(const double *const *rows, const ptrdiff_t *ld, int gates,
                         ptrdiff_t n_a, ptrdiff_t k, ptrdiff_t U, double *out)
{
    /* row by row (contiguous reads), each into its panel's column (the panel,
     * k·gates·U elements, stays in cache while its rows are written) */
    for (ptrdiff_t p = 0; p * U < n_a; p++)
        for (int g = 0; g < gates; g++)
            for (ptrdiff_t u = 0; u < U; u++) {
                double *o = out + (p * k * gates + g) * U + u;
                const double *row = rows[g] + (p * U + u) * ld[g];
                if (p * U + u < n_a)
                    for (ptrdiff_t kk = 0; kk < k; kk++)
                        o[kk * gates * U] = row[kk];
                else
                    for (ptrdiff_t kk = 0; kk < k; kk++)
                        o[kk * gates * U] = 0.0;
            }
}

static void cyrnn_pack_f(const float *const *rows, const ptrdiff_t *ld, int gates,
                         ptrdiff_t n_a, ptrdiff_t k, ptrdiff_t U, float *out)
{
    /* row by row (contiguous reads), each into its panel's column (the panel,
     * k·gates·U elements, stays in cache while its rows are written) */
    for (ptrdiff_t p = 0; p * U < n_a; p++)
        for (int g = 0; g < gates; g++)
            for (ptrdiff_t u = 0; u < U; u++) {
                float *o = out + (p * k * gates + g) * U + u;
                const float *row = rows[g] + (p * U + u) * ld[g];
                if (p * U + u < n_a)
                    for (ptrdiff_t kk = 0; kk < k; kk++)
                        o[kk * gates * U] = row[kk];
                else
                    for (ptrdiff_t kk = 0; kk < k; kk++)
                        o[kk * gates * U] = 0.0f;
            }
}

/* B's columns 0..n-1 (k rows, ldb apart) packed as a pass of `gates` gates in
 * panels of U units reads them: k·n elements at out. */
static void cyrnn_pack_columns_d(int gates, ptrdiff_t U, const double *B, ptrdiff_t ldb,
                                 ptrdiff_t k, ptrdiff_t n, double *out)
{
    CYRNN_PK_PICK(pk_pack_columns, d, (gates, U, B, ldb, k, n, out));
}

static void cyrnn_pack_columns_f(int gates, ptrdiff_t U, const float *B, ptrdiff_t ldb,
                                 ptrdiff_t k, ptrdiff_t n, float *out)
{
    CYRNN_PK_PICK(pk_pack_columns, f, (gates, U, B, ldb, k, n, out));
}

/* G[g·gate_stride + u·ldg + j] += Σ_k panel[k][g][u] · B[k][j] for the
 * panel's first `units` units (≤ U), g < gates, j < n; Bp: B's n columns
 * packed by cyrnn_pack_columns. */
static void cyrnn_panel_product_d(const double *panel, ptrdiff_t k, int gates, ptrdiff_t U,
                                  const double *Bp, ptrdiff_t n, double *G, ptrdiff_t ldg,
                                  ptrdiff_t gate_stride, ptrdiff_t units)
{
    CYRNN_PK_PICK(pk_panel_product, d, (panel, k, gates, U, Bp, n, G, ldg, gate_stride, units));
}

static void cyrnn_panel_product_f(const float *panel, ptrdiff_t k, int gates, ptrdiff_t U,
                                  const float *Bp, ptrdiff_t n, float *G, ptrdiff_t ldg,
                                  ptrdiff_t gate_stride, ptrdiff_t units)
{
    CYRNN_PK_PICK(pk_panel_product, f, (panel, k, gates, U, Bp, n, G, ldg, gate_stride, units));
}

#endif
