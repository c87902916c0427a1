/* Training loops over flat arrays, instantiated by cyrnn_train.h for
 * REAL = double (suffix _d) and float (_f). The arrays passed to one call
 * never overlap (the callers own them), which lets the loops vectorise. */

/* x[i] = tanh(x[i] + b[i]) */
CYRNN_HOT static void SFX(tanh_bias)(REAL *CYRNN_RESTRICT x, const REAL *CYRNN_RESTRICT b,
                                     ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        x[i] = TANH(x[i] + b[i]);
}

/* g clipped to ±c (NaN stays NaN, as np.clip leaves it), then p += step·g:
 * the course's clip, then update_parameters with step = -learning_rate */
CYRNN_HOT static void SFX(clip_and_step)(REAL *CYRNN_RESTRICT p, REAL *CYRNN_RESTRICT g,
                                         ptrdiff_t n, REAL c, REAL step)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        REAL v = g[i] > c ? c : g[i];
        v = v < -c ? -c : v;
        g[i] = v;
        p[i] = p[i] + step * v;
    }
}

/* g clipped to ±c in place */
CYRNN_HOT static void SFX(clip_values)(REAL *CYRNN_RESTRICT g, ptrdiff_t n, REAL c)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        REAL v = g[i] > c ? c : g[i];
        g[i] = v < -c ? -c : v;
    }
}

/* p += step·g */
CYRNN_HOT static void SFX(sgd_step)(REAL *CYRNN_RESTRICT p, const REAL *CYRNN_RESTRICT g,
                                    ptrdiff_t n, REAL step)
{
    for (ptrdiff_t i = 0; i < n; i++)
        p[i] = p[i] + step * g[i];
}

/* Adam in the course's order (update_parameters_with_adam):
 * v = β1·v + (1-β1)·g; s = β2·s + (1-β2)·g²; p -= lr·(v/c1)/(√(s/c2) + ε),
 * c1 = 1 - β1ᵗ, c2 = 1 - β2ᵗ */
CYRNN_HOT static void SFX(adam_step)(REAL *CYRNN_RESTRICT p, const REAL *CYRNN_RESTRICT g,
                                     REAL *CYRNN_RESTRICT v, REAL *CYRNN_RESTRICT s,
                                     ptrdiff_t n, REAL beta1, REAL beta2, REAL c1, REAL c2,
                                     REAL lr, REAL eps)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        v[i] = beta1 * v[i] + (1 - beta1) * g[i];
        s[i] = beta2 * s[i] + (1 - beta2) * (g[i] * g[i]);
        p[i] = p[i] - lr * (v[i] / c1) / (SQRT(s[i] / c2) + eps);
    }
}

/* Σ g², accumulated in double in 8 lanes (so that it vectorises) */
CYRNN_HOT static double SFX(sum_squares)(const REAL *CYRNN_RESTRICT g, ptrdiff_t n)
{
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            lane[k] += (double)g[i + k] * (double)g[i + k];
    for (; i < n; i++)
        lane[0] += (double)g[i] * (double)g[i];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* g *= f */
CYRNN_HOT static void SFX(scale_values)(REAL *CYRNN_RESTRICT g, ptrdiff_t n, REAL f)
{
    for (ptrdiff_t i = 0; i < n; i++)
        g[i] = g[i] * f;
}
