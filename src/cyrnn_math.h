/* Branch-free exp, tanh and sigmoid that compilers vectorise.
 *
 * Why: the elementwise passes of an RNN evaluate exp/tanh once per gate element;
 * scalar libm calls there cost more than the GEMMs at common sizes. These use
 * only +, *, compares/selects and integer add/shift, so GCC and Clang turn the
 * loops that call them into SIMD code.
 *
 * Accuracy (tests/test_math.py checks it against NumPy over wide ranges):
 * double within a few ulp (relative error < 1e-15), float < 5e-7 relative.
 * NaN propagates and +-inf saturate. Results below ~1e-307 (double) or ~2e-38
 * (float) flush to zero, as the kernels also run with flush-to-zero. tanh goes
 * through expm1, which stays accurate near 0 where 1 - 2/(e^2x + 1) cancels.
 * exp and expm1 take only non-positive arguments (all their callers' are), which
 * spares the overflow handling: 3-5% of an LSTM forward at the small shapes.
 */
#ifndef CYRNN_MATH_H
#define CYRNN_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER)
#define CYRNN_INLINE static __forceinline
#else
#define CYRNN_INLINE static inline __attribute__((always_inline))
#endif

CYRNN_INLINE uint64_t cyrnn_bits_d(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }
CYRNN_INLINE double cyrnn_from_bits_d(uint64_t u) { double x; memcpy(&x, &u, 8); return x; }
CYRNN_INLINE uint32_t cyrnn_bits_f(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
CYRNN_INLINE float cyrnn_from_bits_f(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }

/* q(r) = (e^r - 1 - r) / r^2 on |r| <= ln2/2, so that e^r = 1 + r + r^2·q(r) and
 * e^r - 1 = r + r^2·q(r): the degree-9 minimax polynomial for relative error
 * (Remez in 50-digit arithmetic: src/gen_exp_coefficients.py). With
 * them e^r and e^r - 1 are within 1.6e-17 and 4e-17 relative (0.15 and 0.36 of
 * half an ulp), against 5e-18 and 1.3e-17 for the degree-11 Taylor polynomial
 * used before, two multiply-adds fewer per exponential. */
CYRNN_INLINE double cyrnn_expq_d(double r)
{
    double p = 2.5068165882732464e-08;
    p = p * r + 2.7620034098799e-07;
    p = p * r + 2.7557355491050247e-06;
    p = p * r + 2.480152142270869e-05;
    p = p * r + 0.00019841269784702861;
    p = p * r + 0.0013888888917121425;
    p = p * r + 0.00833333333335618;
    p = p * r + 0.041666666666624344;
    p = p * r + 0.16666666666666644;
    return p * r + 0.5000000000000001;
}

/* exp(x) for x <= 0 (NaN passes through), double: every caller exponentiates a
 * non-positive number (sigmoid's -|x|, softmax's x - max), so there is no
 * overflow branch. x = n·ln2 + r with |r| <= ln2/2 (Cody-Waite), e^r as
 * 1 + r + r^2·q(r) (see cyrnn_expq_d), then 2^n built in the exponent
 * bits: kd = 1.5·2^52 + n holds n in its low mantissa bits, and only the low 12
 * bits survive the shift, so the add wraps into the exponent. */
CYRNN_INLINE double cyrnn_exp_d(double x)
{
    const double lo = -707.7;
    const double shifter = 6755399441055744.0;
    const double ln2_hi = 6.93147180369123816490e-01;
    const double ln2_lo = 1.90821492927058770002e-10;
    double xc = x < lo ? lo : x;            /* NaN passes */
    double kd = xc * 1.4426950408889634 + shifter;
    double n = kd - shifter;
    double r = (xc - n * ln2_hi) - n * ln2_lo;
    double p = cyrnn_expq_d(r);
    p = p * r + 1.0;
    p = p * r + 1.0;
    double y = p * cyrnn_from_bits_d((cyrnn_bits_d(kd) + 1023u) << 52);
    return x < lo ? 0.0 : y;
}

/* q(r) for float: the degree-4 minimax polynomial (same method); e^r and
 * e^r - 1 within 1e-8 and 2.4e-8 relative (a third and four fifths of half an
 * ulp), one multiply-add fewer than the degree-5 Taylor polynomial before. */
CYRNN_INLINE float cyrnn_expq_f(float r)
{
    float p = 0.001390128512866795f;
    p = p * r + 0.008363140746951103f;
    p = p * r + 0.04166685417294502f;
    p = p * r + 0.16666577756404877f;
    return p * r + 0.5f;
}

/* exp(x) for x <= 0, float: same scheme with cyrnn_expq_f. */
CYRNN_INLINE float cyrnn_exp_f(float x)
{
    const float lo = -86.6f;
    const float shifter = 12582912.0f;      /* 1.5 * 2^23 */
    float xc = x < lo ? lo : x;
    float kd = xc * 1.44269504f + shifter;
    float n = kd - shifter;
    float r = (xc - n * 0.693145752f) - n * 1.42860677e-06f;
    float p = cyrnn_expq_f(r);
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    float y = p * cyrnn_from_bits_f((cyrnn_bits_f(kd) + 127u) << 23);
    return x < lo ? 0.0f : y;
}

/* expm1(y) for y <= 0 (NaN passes through), double. Same reduction as exp;
 * the polynomial is for e^r - 1 (no cancellation near 0), and
 * expm1(y) = 2^n·p + (2^n - 1) with 2^n - 1 exact for the n in [-58, 0] used
 * here, so the result is accurate to a few ulp relative even for tiny |y|. */
CYRNN_INLINE double cyrnn_expm1_neg_d(double y)
{
    const double shifter = 6755399441055744.0;
    const double ln2_hi = 6.93147180369123816490e-01;
    const double ln2_lo = 1.90821492927058770002e-10;
    double yc = y < -40.0 ? -40.0 : y;          /* expm1(-40) == -1 in double */
    double kd = yc * 1.4426950408889634 + shifter;
    double n = kd - shifter;
    double r = (yc - n * ln2_hi) - n * ln2_lo;
    double p = cyrnn_expq_d(r);
    p = (p * r) * r + r;                        /* e^r - 1 */
    double s = cyrnn_from_bits_d((cyrnn_bits_d(kd) + 1023u) << 52);   /* 2^n */
    return s * p + (s - 1.0);
}

CYRNN_INLINE float cyrnn_expm1_neg_f(float y)
{
    const float shifter = 12582912.0f;
    float yc = y < -20.0f ? -20.0f : y;         /* expm1(-20) == -1 in float */
    float kd = yc * 1.44269504f + shifter;
    float n = kd - shifter;
    float r = (yc - n * 0.693145752f) - n * 1.42860677e-06f;
    float p = cyrnn_expq_f(r);
    p = (p * r) * r + r;
    float s = cyrnn_from_bits_f((cyrnn_bits_f(kd) + 127u) << 23);
    return s * p + (s - 1.0f);
}

/* sigmoid(x) = num/den with e = exp(-|x|): den = 1 + e, num = x >= 0 ? 1 : e.
 * tanh(x)    = num/den with t = expm1(-2|x|): den = 2 + t, num = -t·sign(x).
 * Both exponentials take non-positive arguments, so they cannot overflow. */
CYRNN_INLINE double cyrnn_sigmoid_d(double x)
{
    double e = cyrnn_exp_d(-fabs(x));
    return (x >= 0 ? 1.0 : e) / (1.0 + e);
}

CYRNN_INLINE double cyrnn_tanh_d(double x)
{
    double t = cyrnn_expm1_neg_d(-2.0 * fabs(x));
    return (x < 0 ? t : -t) / (2.0 + t);
}

CYRNN_INLINE float cyrnn_sigmoid_f(float x)
{
    float e = cyrnn_exp_f(-fabsf(x));
    return (x >= 0 ? 1.0f : e) / (1.0f + e);
}

CYRNN_INLINE float cyrnn_tanh_f(float x)
{
    float t = cyrnn_expm1_neg_f(-2.0f * fabsf(x));
    return (x < 0 ? t : -t) / (2.0f + t);
}

#endif
