/* Template body of cyrnn_elementwise.h: REAL, SFX, EXP, TANH, SIGMOID are set
 * by the includer. Sizes are ptrdiff_t so m·T never overflows. */

/* a = tanh(z + b), in place: z is the (n_a × m) pre-activation of one step. */
CYRNN_HOT static void SFX(rnn_forward_step)(
    ptrdiff_t n_a, ptrdiff_t m, REAL *CYRNN_RESTRICT z, ptrdiff_t ld,
    const REAL *CYRNN_RESTRICT b)
{
    for (ptrdiff_t i = 0; i < n_a; i++) {
        REAL *zi = z + i * ld;
        const REAL bi = b[i];
        for (ptrdiff_t j = 0; j < m; j++)
            zi[j] = TANH(zi[j] + bi);
    }
}

/* The four gate activations of one element with one shared division:
 * r = 1/(d_f·d_i·d_c·d_o), then each 1/d_k is r times the other three. The
 * denominators lie in [1, 2], so the product cannot overflow; the extra
 * roundings cost a few ulp. */
CYRNN_INLINE void SFX(lstm_gates)(REAL zf, REAL zi, REAL zc, REAL zo,
                                  REAL *f, REAL *u, REAL *cc, REAL *o)
{
    REAL nf, df, ni, di, nc, dc, no, dn;
    SIGMOID_ND(zf, &nf, &df);
    SIGMOID_ND(zi, &ni, &di);
    TANH_ND(zc, &nc, &dc);
    SIGMOID_ND(zo, &no, &dn);
    REAL p1 = df * di, p2 = dc * dn;
    REAL r = 1 / (p1 * p2);
    REAL r1 = r * p2, r2 = r * p1;      /* 1/(df·di), 1/(dc·dn) */
    *f = nf * (r1 * di);
    *u = ni * (r1 * df);
    *cc = nc * (r2 * dn);
    *o = no * (r2 * dc);
}

/* One LSTM step after the gate GEMM. g holds the four gate pre-activations
 * (f, i, c~, o), gate_stride elements apart; they are replaced by the
 * activated gates. c = f*c_prev + i*c~, a = o*tanh(c). c_prev NULL means 0. */
CYRNN_HOT static void SFX(lstm_forward_step)(
    ptrdiff_t n_a, ptrdiff_t m, REAL *CYRNN_RESTRICT g, ptrdiff_t ld_g,
    ptrdiff_t gate_stride, const REAL *CYRNN_RESTRICT b,
    const REAL *CYRNN_RESTRICT c_prev, ptrdiff_t ld_cp,
    REAL *CYRNN_RESTRICT c, ptrdiff_t ld_c, REAL *CYRNN_RESTRICT a, ptrdiff_t ld_a)
{
    for (ptrdiff_t i = 0; i < n_a; i++) {
        REAL *CYRNN_RESTRICT gf = g + i * ld_g;
        REAL *CYRNN_RESTRICT gi = gf + gate_stride;
        REAL *CYRNN_RESTRICT gc = gi + gate_stride;
        REAL *CYRNN_RESTRICT go = gc + gate_stride;
        const REAL bf = b[i], bi = b[n_a + i], bc = b[2 * n_a + i], bo = b[3 * n_a + i];
        REAL *CYRNN_RESTRICT ci = c + i * ld_c;
        REAL *CYRNN_RESTRICT ai = a + i * ld_a;
        if (c_prev) {
            const REAL *CYRNN_RESTRICT cpi = c_prev + i * ld_cp;
            for (ptrdiff_t j = 0; j < m; j++) {
                REAL f, u, cc, o, nt, dt;
                SFX(lstm_gates)(gf[j] + bf, gi[j] + bi, gc[j] + bc, go[j] + bo, &f, &u, &cc, &o);
                REAL cn = f * cpi[j] + u * cc;
                gf[j] = f; gi[j] = u; gc[j] = cc; go[j] = o;
                ci[j] = cn;
                TANH_ND(cn, &nt, &dt);
                ai[j] = o * nt / dt;
            }
        } else {
            for (ptrdiff_t j = 0; j < m; j++) {
                REAL f, u, cc, o, nt, dt;
                SFX(lstm_gates)(gf[j] + bf, gi[j] + bi, gc[j] + bc, go[j] + bo, &f, &u, &cc, &o);
                REAL cn = u * cc;
                gf[j] = f; gi[j] = u; gc[j] = cc; go[j] = o;
                ci[j] = cn;
                TANH_ND(cn, &nt, &dt);
                ai[j] = o * nt / dt;
            }
        }
    }
}

/* dz = (da + da_next) * (1 - a^2), in place over da. da_next NULL means 0. */
CYRNN_HOT static void SFX(rnn_backward_step)(
    ptrdiff_t n_a, ptrdiff_t m, REAL *CYRNN_RESTRICT dz, ptrdiff_t ld_dz,
    const REAL *CYRNN_RESTRICT da_next, ptrdiff_t ld_dn,
    const REAL *CYRNN_RESTRICT a, ptrdiff_t ld_a)
{
    for (ptrdiff_t i = 0; i < n_a; i++) {
        REAL *CYRNN_RESTRICT dzi = dz + i * ld_dz;
        const REAL *CYRNN_RESTRICT ai = a + i * ld_a;
        if (da_next) {
            const REAL *CYRNN_RESTRICT dni = da_next + i * ld_dn;
            for (ptrdiff_t j = 0; j < m; j++)
                dzi[j] = (dzi[j] + dni[j]) * (1 - ai[j] * ai[j]);
        } else {
            for (ptrdiff_t j = 0; j < m; j++)
                dzi[j] = dzi[j] * (1 - ai[j] * ai[j]);
        }
    }
}

/* Gate gradients of one LSTM step (the corrected notebook equations):
 *   da  = da_up + da_next                  (NULL da_next means 0)
 *   dc += da * o * (1 - tanh(c)^2)         (dc: gradient arriving at c⟨t⟩)
 *   do  = da * tanh(c) * o(1-o);   dc~ = dc * i * (1 - c~^2)
 *   di  = dc * c~ * i(1-i);        df  = dc * c_prev * f(1-f)
 *   dc_prev = dc * f, written back into dc.  c_prev NULL means 0. */
CYRNN_HOT static void SFX(lstm_backward_step)(
    ptrdiff_t n_a, ptrdiff_t m,
    const REAL *CYRNN_RESTRICT g, ptrdiff_t ld_g, ptrdiff_t gate_stride,
    const REAL *CYRNN_RESTRICT c, ptrdiff_t ld_c,
    const REAL *CYRNN_RESTRICT c_prev, ptrdiff_t ld_cp,
    const REAL *CYRNN_RESTRICT da_up, ptrdiff_t ld_du,
    const REAL *CYRNN_RESTRICT da_next, ptrdiff_t ld_dn,
    REAL *CYRNN_RESTRICT dc, ptrdiff_t ld_dc,
    REAL *CYRNN_RESTRICT dg, ptrdiff_t ld_dg, ptrdiff_t dgate_stride)
{
    for (ptrdiff_t i = 0; i < n_a; i++) {
        const REAL *CYRNN_RESTRICT gf = g + i * ld_g;
        const REAL *CYRNN_RESTRICT gi = gf + gate_stride;
        const REAL *CYRNN_RESTRICT gc = gi + gate_stride;
        const REAL *CYRNN_RESTRICT go = gc + gate_stride;
        const REAL *CYRNN_RESTRICT ci = c + i * ld_c;
        const REAL *CYRNN_RESTRICT dui = da_up + i * ld_du;
        const REAL *CYRNN_RESTRICT dni = da_next ? da_next + i * ld_dn : NULL;
        const REAL *CYRNN_RESTRICT cpi = c_prev ? c_prev + i * ld_cp : NULL;
        REAL *CYRNN_RESTRICT dci = dc + i * ld_dc;
        REAL *CYRNN_RESTRICT dgf = dg + i * ld_dg;
        REAL *CYRNN_RESTRICT dgi = dgf + dgate_stride;
        REAL *CYRNN_RESTRICT dgc = dgi + dgate_stride;
        REAL *CYRNN_RESTRICT dgo = dgc + dgate_stride;
        for (ptrdiff_t j = 0; j < m; j++) {
            REAL da = dni ? dui[j] + dni[j] : dui[j];
            REAL cp = cpi ? cpi[j] : 0;
            REAL f = gf[j], u = gi[j], cc = gc[j], o = go[j];
            REAL tc = TANH(ci[j]);
            REAL dcn = dci[j] + da * o * (1 - tc * tc);
            dgo[j] = da * tc * o * (1 - o);
            dgc[j] = dcn * u * (1 - cc * cc);
            dgi[j] = dcn * cc * u * (1 - u);
            dgf[j] = dcn * cp * f * (1 - f);
            dci[j] = dcn * f;
        }
    }
}

/* Softmax down each column of the (n × ncols) block y (row stride ld), after
 * adding the bias b[row] (NULL: none). Stable per column: each column's own
 * max is subtracted. Columns are done in chunks so the max/sum vectors stay in
 * registers/L1 and the row loops vectorise across columns. */
CYRNN_HOT static void SFX(softmax_columns)(
    ptrdiff_t n, ptrdiff_t ncols, REAL *CYRNN_RESTRICT y, ptrdiff_t ld,
    const REAL *CYRNN_RESTRICT b)
{
    enum { CHUNK = 256 };
    REAL colmax[CHUNK], colsum[CHUNK];
    if (n <= 0)
        return;
    for (ptrdiff_t j0 = 0; j0 < ncols; j0 += CHUNK) {
        ptrdiff_t w = ncols - j0 < CHUNK ? ncols - j0 : CHUNK;
        for (ptrdiff_t j = 0; j < w; j++) {
            colmax[j] = -(REAL)INFINITY;
            colsum[j] = 0;
        }
        for (ptrdiff_t i = 0; i < n; i++) {
            REAL *CYRNN_RESTRICT yi = y + i * ld + j0;
            const REAL bi = b ? b[i] : 0;
            for (ptrdiff_t j = 0; j < w; j++) {
                REAL v = yi[j] + bi;
                yi[j] = v;
                /* written so NaN in a column makes that column's max NaN */
                colmax[j] = (v > colmax[j] || v != v) ? v : colmax[j];
            }
        }
        for (ptrdiff_t i = 0; i < n; i++) {
            REAL *CYRNN_RESTRICT yi = y + i * ld + j0;
            for (ptrdiff_t j = 0; j < w; j++) {
                REAL e = EXP(yi[j] - colmax[j]);
                yi[j] = e;
                colsum[j] += e;
            }
        }
        for (ptrdiff_t j = 0; j < w; j++)
            colsum[j] = 1 / colsum[j];
        for (ptrdiff_t i = 0; i < n; i++) {
            REAL *CYRNN_RESTRICT yi = y + i * ld + j0;
            for (ptrdiff_t j = 0; j < w; j++)
                yi[j] *= colsum[j];
        }
    }
}

/* y = sigmoid(x) elementwise over n contiguous values (may be in place). */
CYRNN_HOT static void SFX(sigmoid_array)(ptrdiff_t n, const REAL *x, REAL *y)
{
    for (ptrdiff_t j = 0; j < n; j++)
        y[j] = SIGMOID(x[j]);
}

/* out[r] = sum of the ncols values of row r (row stride ld). */
static void SFX(row_sums)(ptrdiff_t rows, ptrdiff_t ncols,
                          const REAL *CYRNN_RESTRICT x, ptrdiff_t ld,
                          REAL *CYRNN_RESTRICT out)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        const REAL *xr = x + r * ld;
        REAL s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        ptrdiff_t j = 0;
        for (; j + 4 <= ncols; j += 4) {
            s0 += xr[j]; s1 += xr[j + 1]; s2 += xr[j + 2]; s3 += xr[j + 3];
        }
        for (; j < ncols; j++)
            s0 += xr[j];
        out[r] = (s0 + s1) + (s2 + s3);
    }
}

/* Layout changes between the user's (n, m, T) arrays and time-major (n, T, m)
 * buffers, tiled so both sides are read/written in cache-line runs. */
enum { SFX(TILE) = 16 };

/* dst (n, T, m) contiguous  <-  src (n, m, T) with element strides s0, s1, s2. */
static void SFX(gather_time_major)(ptrdiff_t n, ptrdiff_t m, ptrdiff_t T,
                                   const REAL *CYRNN_RESTRICT src, ptrdiff_t s0,
                                   ptrdiff_t s1, ptrdiff_t s2, REAL *CYRNN_RESTRICT dst)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        const REAL *si = src + i * s0;
        REAL *di = dst + i * T * m;
        for (ptrdiff_t j0 = 0; j0 < m; j0 += SFX(TILE))
            for (ptrdiff_t t0 = 0; t0 < T; t0 += SFX(TILE)) {
                ptrdiff_t j1 = j0 + SFX(TILE) < m ? j0 + SFX(TILE) : m;
                ptrdiff_t t1 = t0 + SFX(TILE) < T ? t0 + SFX(TILE) : T;
                for (ptrdiff_t j = j0; j < j1; j++)
                    for (ptrdiff_t t = t0; t < t1; t++)
                        di[t * m + j] = si[j * s1 + t * s2];
            }
    }
}

/* dst (n, m, T) contiguous  <-  the first T steps of src (n, T_src, m), whose
 * rows are ld elements apart (ld = T_src·m). */
static void SFX(scatter_batch_major)(ptrdiff_t n, ptrdiff_t m, ptrdiff_t T,
                                     const REAL *CYRNN_RESTRICT src, ptrdiff_t ld,
                                     REAL *CYRNN_RESTRICT dst)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        const REAL *si = src + i * ld;
        REAL *di = dst + i * m * T;
        for (ptrdiff_t j0 = 0; j0 < m; j0 += SFX(TILE))
            for (ptrdiff_t t0 = 0; t0 < T; t0 += SFX(TILE)) {
                ptrdiff_t j1 = j0 + SFX(TILE) < m ? j0 + SFX(TILE) : m;
                ptrdiff_t t1 = t0 + SFX(TILE) < T ? t0 + SFX(TILE) : T;
                for (ptrdiff_t j = j0; j < j1; j++)
                    for (ptrdiff_t t = t0; t < t1; t++)
                        di[j * T + t] = si[t * m + j];
            }
    }
}
