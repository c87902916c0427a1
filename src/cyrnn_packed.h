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

/* ---------------------------------------------------------------- instantiations */
/* Each dtype's kernels at every level, its packing and its entry points
 * (cyrnn_packed_real.h): cyrnn_packed_lanes_d/_f, cyrnn_pack_d/_f,
 * cyrnn_pack_columns_d/_f, cyrnn_panel_product_d/_f. */
#define REAL double
#define RSFX(name) name##_d
#include "cyrnn_packed_real.h"
#undef REAL
#undef RSFX

#define REAL float
#define RSFX(name) name##_f
#include "cyrnn_packed_real.h"
#undef REAL
#undef RSFX

#endif
