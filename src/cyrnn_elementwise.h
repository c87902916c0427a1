/* Fused elementwise passes of the RNN/LSTM kernels, for float and double.
 *
 * Every function here is one pass over (rows × m) blocks whose rows are `ld`
 * elements apart and whose m columns are contiguous: the layout of one time
 * step inside a (rows, T, m) time-major buffer. The Cython kernels call them
 * between BLAS calls, without the GIL. This file instantiates
 * cyrnn_elementwise_impl.h twice, with REAL = double (suffix _d) and float (_f).
 */
#ifndef CYRNN_ELEMENTWISE_H
#define CYRNN_ELEMENTWISE_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "cyrnn_math.h"

#if defined(_MSC_VER)
#define CYRNN_RESTRICT __restrict
#else
#define CYRNN_RESTRICT __restrict__
#endif

/* Compile the hot loops twice on x86-64 Linux/glibc: once for the baseline
 * (SSE2) that wheels must run on, once for x86-64-v3 (AVX2 + FMA), picked at
 * load time by CPU features ("arch=haswell" would match only that CPU model). */
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && \
    !defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 12 && !defined(CYRNN_NO_CLONES)
#define CYRNN_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#elif defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && \
    (defined(__GNUC__) || defined(__clang__)) && !defined(CYRNN_NO_CLONES)
#define CYRNN_HOT __attribute__((target_clones("avx2", "default")))
#else
#define CYRNN_HOT
#endif

/* Flush denormals to zero inside the kernels: arithmetic on denormal numbers is
 * up to 100x slower on x86, and gradients that vanish through time get there.
 * ARM sets the same flush (FPCR.FZ, inputs and results alike) so that results
 * do not depend on the platform. */
#if defined(__SSE2__) || defined(_M_X64)
#include <xmmintrin.h>
CYRNN_INLINE unsigned int cyrnn_ftz_begin(void)
{
    unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040);  /* FTZ | DAZ */
    return old;
}
CYRNN_INLINE void cyrnn_ftz_end(unsigned int old) { _mm_setcsr(old); }
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#include <stdint.h>
/* FPCR's bits above 26 are reserved (zero), so the old value fits 32 bits */
CYRNN_INLINE unsigned int cyrnn_ftz_begin(void)
{
    uint64_t old;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(old));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(old | ((uint64_t)1 << 24)));  /* FZ */
    return (unsigned int)old;
}
CYRNN_INLINE void cyrnn_ftz_end(unsigned int old)
{
    __asm__ __volatile__("msr fpcr, %0" : : "r"((uint64_t)old));
}
#else
CYRNN_INLINE unsigned int cyrnn_ftz_begin(void) { return 0; }
CYRNN_INLINE void cyrnn_ftz_end(unsigned int old) { (void)old; }
#endif

/* Non-temporal copies for the layout changes of large arrays (see
 * scatter_batch_major): stores that bypass the caches and do not read the
 * destination's cache lines first. SSE2, so every x86-64 build has them; other
 * targets use ordinary copies (CYRNN_HAVE_STREAM 0 keeps them off that path). */
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#include <stdint.h>
#define CYRNN_HAVE_STREAM 1
static void stream_copy_d(double *CYRNN_RESTRICT d, const double *CYRNN_RESTRICT s,
                          ptrdiff_t n)
{
    ptrdiff_t k = 0;
    for (; k < n && ((uintptr_t)(d + k) & 15); k++)   /* to a 16-byte boundary */
        d[k] = s[k];
    for (; k + 2 <= n; k += 2)
        _mm_stream_pd(d + k, _mm_loadu_pd(s + k));
    for (; k < n; k++)
        d[k] = s[k];
}
static void stream_copy_f(float *CYRNN_RESTRICT d, const float *CYRNN_RESTRICT s,
                          ptrdiff_t n)
{
    ptrdiff_t k = 0;
    for (; k < n && ((uintptr_t)(d + k) & 15); k++)
        d[k] = s[k];
    for (; k + 4 <= n; k += 4)
        _mm_stream_ps(d + k, _mm_loadu_ps(s + k));
    for (; k < n; k++)
        d[k] = s[k];
}
static void cyrnn_stream_fence(void) { _mm_sfence(); }
#else
#define CYRNN_HAVE_STREAM 0
static void stream_copy_d(double *d, const double *s, ptrdiff_t n)
{ memcpy(d, s, (size_t)n * sizeof(double)); }
static void stream_copy_f(float *d, const float *s, ptrdiff_t n)
{ memcpy(d, s, (size_t)n * sizeof(float)); }
static void cyrnn_stream_fence(void) {}
#endif

#define REAL double
#define SFX(name) name##_d
#define EXP cyrnn_exp_d
#define TANH cyrnn_tanh_d
#define SIGMOID cyrnn_sigmoid_d
#include "cyrnn_elementwise_impl.h"
#undef REAL
#undef SFX
#undef EXP
#undef TANH
#undef SIGMOID

#define REAL float
#define SFX(name) name##_f
#define EXP cyrnn_exp_f
#define TANH cyrnn_tanh_f
#define SIGMOID cyrnn_sigmoid_f
#include "cyrnn_elementwise_impl.h"
#undef REAL
#undef SFX
#undef EXP
#undef TANH
#undef SIGMOID

#endif
