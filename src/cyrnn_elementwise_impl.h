/* Template body of cyrnn_elementwise.h: REAL, SFX, EXP, TANH, SIGMOID are set
 * by the includer. Sizes are ptrdiff_t so m·T never overflows. */

/* Short rows are processed several at a time through small contiguous
 * buffers, zero-padded to a whole number of 64-byte vectors (8 doubles, 16
 * floats): the vector loops then run without scalar tails or per-row loop
 * overhead (at m = 10, per-row tails in scalar code cost more than the vector
 * part). Longer rows are processed in place, in chunks of at most PACK columns;
 * copying them costs more than it saves. "Short" is below 16 elements, and for
 * the LSTM forward pass (seven loops per row) below two vectors: there float
 * rows of 16 and 24 run 15% faster grouped (the RNN's one tanh loop does not). */
enum { SFX(PACK) = 256, SFX(VEC) = 64 / sizeof(REAL) };

CYRNN_INLINE ptrdiff_t SFX(rows_per_group)(ptrdiff_t m, ptrdiff_t short_below)
{
    return m > 0 && m < short_below ? (SFX(PACK) - SFX(VEC)) / m : 1;
}

/* k rounded up to a multiple of VEC, with buf[k..] zeroed up to it. */
CYRNN_INLINE ptrdiff_t SFX(pad)(ptrdiff_t k, REAL *buf)
{
    ptrdiff_t padded = (k + SFX(VEC) - 1) / SFX(VEC) * SFX(VEC);
    for (ptrdiff_t q = k; q < padded; q++)
        buf[q] = 0;
    return padded;
}

/* buf = tanh of rows i0..i1-1 of x (row stride ld, m columns; plus b[i] when b
 * is given), flat, zero-padded to whole vectors (see pad). */
CYRNN_INLINE void SFX(tanh_rows)(ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t m,
                                 const REAL *CYRNN_RESTRICT x, ptrdiff_t ld,
                                 const REAL *CYRNN_RESTRICT b, REAL *CYRNN_RESTRICT buf)
{
    ptrdiff_t k = 0;
    for (ptrdiff_t i = i0; i < i1; i++)
        for (ptrdiff_t j = 0; j < m; j++)
            buf[k++] = b ? x[i * ld + j] + b[i] : x[i * ld + j];
    const ptrdiff_t padded = SFX(pad)(k, buf);
    for (ptrdiff_t q = 0; q < padded; q++)
        buf[q] = TANH(buf[q]);
}

/* a = tanh(z + b), in place: z is the (n_a × m) pre-activation of one step. */
CYRNN_HOT static void SFX(rnn_forward_step)(
    ptrdiff_t n_a, ptrdiff_t m, REAL *CYRNN_RESTRICT z, ptrdiff_t ld,
    const REAL *CYRNN_RESTRICT b)
{
    const ptrdiff_t rows = SFX(rows_per_group)(m, 16);
    if (rows == 1) {
        for (ptrdiff_t i = 0; i < n_a; i++) {
            REAL *CYRNN_RESTRICT zi = z + i * ld;
            const REAL bi = b[i];
            for (ptrdiff_t j = 0; j < m; j++)
                zi[j] = TANH(zi[j] + bi);
        }
        return;
    }
    REAL buf[SFX(PACK)];
    for (ptrdiff_t i0 = 0; i0 < n_a; i0 += rows) {
        const ptrdiff_t i1 = i0 + rows < n_a ? i0 + rows : n_a;
        SFX(tanh_rows)(i0, i1, m, z, ld, b, buf);
        ptrdiff_t k = 0;
        for (ptrdiff_t i = i0; i < i1; i++)
            for (ptrdiff_t j = 0; j < m; j++)
                z[i * ld + j] = buf[k++];
    }
}

/* The LSTM step on L contiguous elements: gates activated in place (bias
 * added first unless bias is NULL), c = f*c_prev + i*c~ (c_prev NULL: 0),
 * a = o*tanh(c). One simple loop per nonlinearity: a single fused loop holding
 * five exp evaluations runs out of vector registers and is ~25% slower. */
CYRNN_INLINE void SFX(lstm_forward_run)(
    ptrdiff_t L, REAL *CYRNN_RESTRICT gf, REAL *CYRNN_RESTRICT gi,
    REAL *CYRNN_RESTRICT gc, REAL *CYRNN_RESTRICT go, const REAL *bias,
    const REAL *CYRNN_RESTRICT cp, REAL *CYRNN_RESTRICT c, REAL *CYRNN_RESTRICT a)
{
    if (bias) {
        const REAL bf = bias[0], bi = bias[1], bc = bias[2], bo = bias[3];
        for (ptrdiff_t j = 0; j < L; j++) gf[j] = SIGMOID(gf[j] + bf);
        for (ptrdiff_t j = 0; j < L; j++) gi[j] = SIGMOID(gi[j] + bi);
        for (ptrdiff_t j = 0; j < L; j++) gc[j] = TANH(gc[j] + bc);
        for (ptrdiff_t j = 0; j < L; j++) go[j] = SIGMOID(go[j] + bo);
    } else {
        for (ptrdiff_t j = 0; j < L; j++) gf[j] = SIGMOID(gf[j]);
        for (ptrdiff_t j = 0; j < L; j++) gi[j] = SIGMOID(gi[j]);
        for (ptrdiff_t j = 0; j < L; j++) gc[j] = TANH(gc[j]);
        for (ptrdiff_t j = 0; j < L; j++) go[j] = SIGMOID(go[j]);
    }
    if (cp)
        for (ptrdiff_t j = 0; j < L; j++) c[j] = gf[j] * cp[j] + gi[j] * gc[j];
    else
        for (ptrdiff_t j = 0; j < L; j++) c[j] = gi[j] * gc[j];
    for (ptrdiff_t j = 0; j < L; j++) a[j] = go[j] * TANH(c[j]);
}

/* One LSTM step after the gate GEMM. g holds the four gate pre-activations
 * (f, i, c~, o) of n_a units, gate_stride elements apart, their biases b_stride
 * apart in b (a run over some of a layer's units); with keep_gates they are replaced
 * by the activated gates (the caches), else left as they are: the activations
 * then go through small buffers that stay in L1 instead of being stored back to
 * g (inference; same arithmetic, same bits). c = f*c_prev + i*c~,
 * a = o*tanh(c). c_prev NULL means 0. */
CYRNN_HOT static void SFX(lstm_forward_step)(
    ptrdiff_t n_a, ptrdiff_t m, REAL *CYRNN_RESTRICT g, ptrdiff_t ld_g,
    ptrdiff_t gate_stride, const REAL *CYRNN_RESTRICT b, ptrdiff_t b_stride,
    const REAL *CYRNN_RESTRICT c_prev, ptrdiff_t ld_cp,
    REAL *CYRNN_RESTRICT c, ptrdiff_t ld_c, REAL *CYRNN_RESTRICT a, ptrdiff_t ld_a,
    int keep_gates)
{
    const ptrdiff_t rows = SFX(rows_per_group)(m, 2 * SFX(VEC));
    if (rows == 1 && !keep_gates) {
        REAL pf[SFX(PACK)], pi[SFX(PACK)], pc[SFX(PACK)], po[SFX(PACK)];
        for (ptrdiff_t i = 0; i < n_a; i++) {
            const REAL *gf = g + i * ld_g;
            const REAL bias[4] = {b[i], b[b_stride + i], b[2 * b_stride + i], b[3 * b_stride + i]};
            for (ptrdiff_t j0 = 0; j0 < m; j0 += SFX(PACK)) {
                const ptrdiff_t w = m - j0 < SFX(PACK) ? m - j0 : SFX(PACK);
                memcpy(pf, gf + j0, w * sizeof(REAL));
                memcpy(pi, gf + gate_stride + j0, w * sizeof(REAL));
                memcpy(pc, gf + 2 * gate_stride + j0, w * sizeof(REAL));
                memcpy(po, gf + 3 * gate_stride + j0, w * sizeof(REAL));
                SFX(lstm_forward_run)(w, pf, pi, pc, po, bias,
                                      c_prev ? c_prev + i * ld_cp + j0 : NULL,
                                      c + i * ld_c + j0, a + i * ld_a + j0);
            }
        }
        return;
    }
    if (rows == 1) {
        for (ptrdiff_t i = 0; i < n_a; i++) {
            REAL *gf = g + i * ld_g;
            const REAL bias[4] = {b[i], b[b_stride + i], b[2 * b_stride + i], b[3 * b_stride + i]};
            for (ptrdiff_t j0 = 0; j0 < m; j0 += SFX(PACK)) {
                const ptrdiff_t w = m - j0 < SFX(PACK) ? m - j0 : SFX(PACK);
                SFX(lstm_forward_run)(w, gf + j0, gf + gate_stride + j0,
                                      gf + 2 * gate_stride + j0, gf + 3 * gate_stride + j0,
                                      bias, c_prev ? c_prev + i * ld_cp + j0 : NULL,
                                      c + i * ld_c + j0, a + i * ld_a + j0);
            }
        }
        return;
    }
    REAL pf[SFX(PACK)], pi[SFX(PACK)], pc[SFX(PACK)], po[SFX(PACK)];
    REAL pcp[SFX(PACK)], pcn[SFX(PACK)], pa[SFX(PACK)];
    for (ptrdiff_t i0 = 0; i0 < n_a; i0 += rows) {
        const ptrdiff_t i1 = i0 + rows < n_a ? i0 + rows : n_a;
        ptrdiff_t k = 0;
        for (ptrdiff_t i = i0; i < i1; i++) {
            const REAL *gf = g + i * ld_g;
            const REAL bf = b[i], bi = b[b_stride + i], bc = b[2 * b_stride + i], bo = b[3 * b_stride + i];
            for (ptrdiff_t j = 0; j < m; j++, k++) {
                pf[k] = gf[j] + bf;
                pi[k] = gf[gate_stride + j] + bi;
                pc[k] = gf[2 * gate_stride + j] + bc;
                po[k] = gf[3 * gate_stride + j] + bo;
                if (c_prev)
                    pcp[k] = c_prev[i * ld_cp + j];
            }
        }
        ptrdiff_t padded = SFX(pad)(k, pf);
        SFX(pad)(k, pi);
        SFX(pad)(k, pc);
        SFX(pad)(k, po);
        if (c_prev)
            SFX(pad)(k, pcp);
        SFX(lstm_forward_run)(padded, pf, pi, pc, po, NULL, c_prev ? pcp : NULL, pcn, pa);
        /* two loops rather than a test inside one, and the second column by
         * column: GCC turns row-by-row copy loops into per-row memcpy (rep movs
         * for m elements: 2.3x slower at m = 1) */
        k = 0;
        if (keep_gates) {
            for (ptrdiff_t i = i0; i < i1; i++) {
                REAL *gf = g + i * ld_g;
                for (ptrdiff_t j = 0; j < m; j++, k++) {
                    gf[j] = pf[k];
                    gf[gate_stride + j] = pi[k];
                    gf[2 * gate_stride + j] = pc[k];
                    gf[3 * gate_stride + j] = po[k];
                    c[i * ld_c + j] = pcn[k];
                    a[i * ld_a + j] = pa[k];
                }
            }
        } else {
            for (ptrdiff_t j = 0; j < m; j++)
                for (ptrdiff_t i = i0; i < i1; i++) {
                    c[i * ld_c + j] = pcn[(i - i0) * m + j];
                    a[i * ld_a + j] = pa[(i - i0) * m + j];
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

/* Gate gradients of one LSTM step for row i (the corrected notebook equations):
 *   da  = da_up + da_next                  (NULL da_next means 0)
 *   dc += da * o * (1 - tanh(c)^2)         (dc: gradient arriving at c⟨t⟩)
 *   do  = da * tanh(c) * o(1-o);   dc~ = dc * i * (1 - c~^2)
 *   di  = dc * c~ * i(1-i);        df  = dc * c_prev * f(1-f)
 *   dc_prev = dc * f, written back into dc.  c_prev NULL means 0.
 * tanh(c) comes from tc when tanh_given (a constant at each call site, so the
 * loop is compiled branch-free both ways), else it is computed inline. */
CYRNN_INLINE void SFX(lstm_backward_row)(
    ptrdiff_t i, ptrdiff_t m, int tanh_given, const REAL *CYRNN_RESTRICT tc,
    const REAL *CYRNN_RESTRICT g, ptrdiff_t ld_g, ptrdiff_t gate_stride,
    const REAL *CYRNN_RESTRICT c, ptrdiff_t ld_c,
    const REAL *CYRNN_RESTRICT c_prev, ptrdiff_t ld_cp,
    const REAL *CYRNN_RESTRICT da_up, ptrdiff_t ld_du,
    const REAL *CYRNN_RESTRICT da_next, ptrdiff_t ld_dn,
    REAL *CYRNN_RESTRICT dc, ptrdiff_t ld_dc,
    REAL *CYRNN_RESTRICT dg, ptrdiff_t ld_dg, ptrdiff_t dgate_stride)
{
    const REAL *CYRNN_RESTRICT gf = g + i * ld_g;
    const REAL *CYRNN_RESTRICT gi = gf + gate_stride;
    const REAL *CYRNN_RESTRICT gc = gi + gate_stride;
    const REAL *CYRNN_RESTRICT go = gc + gate_stride;
    const REAL *CYRNN_RESTRICT ci = c + i * ld_c;
    const REAL *CYRNN_RESTRICT dui = da_up + i * ld_du;
    REAL *CYRNN_RESTRICT dci = dc + i * ld_dc;
    REAL *CYRNN_RESTRICT dgf = dg + i * ld_dg;
    REAL *CYRNN_RESTRICT dgi = dgf + dgate_stride;
    REAL *CYRNN_RESTRICT dgc = dgi + dgate_stride;
    REAL *CYRNN_RESTRICT dgo = dgc + dgate_stride;
    const REAL *CYRNN_RESTRICT dni = da_next ? da_next + i * ld_dn : NULL;
    const REAL *CYRNN_RESTRICT cpi = c_prev ? c_prev + i * ld_cp : NULL;
    for (ptrdiff_t j = 0; j < m; j++) {
        REAL da = dni ? dui[j] + dni[j] : dui[j];
        REAL cp = cpi ? cpi[j] : 0;
        REAL f = gf[j], u = gi[j], cc = gc[j], o = go[j];
        REAL t = tanh_given ? tc[j] : TANH(ci[j]);
        REAL dcn = dci[j] + da * o * (1 - t * t);
        dgo[j] = da * t * o * (1 - o);
        dgc[j] = dcn * u * (1 - cc * cc);
        dgi[j] = dcn * cc * u * (1 - u);
        dgf[j] = dcn * cp * f * (1 - f);
        dci[j] = dcn * f;
    }
}

/* The LSTM gate gradients of one step (see lstm_backward_row). Rows of at
 * least 16 compute tanh(c) inline; shorter rows get it for a whole group of
 * rows from one padded buffer first (see rows_per_group). */
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
    const ptrdiff_t rows = SFX(rows_per_group)(m, 16);
    if (rows == 1) {
        for (ptrdiff_t i = 0; i < n_a; i++)
            SFX(lstm_backward_row)(i, m, 0, NULL, g, ld_g, gate_stride, c, ld_c, c_prev, ld_cp,
                                   da_up, ld_du, da_next, ld_dn, dc, ld_dc, dg, ld_dg,
                                   dgate_stride);
        return;
    }
    REAL tanh_c[SFX(PACK)];
    for (ptrdiff_t i0 = 0; i0 < n_a; i0 += rows) {
        const ptrdiff_t i1 = i0 + rows < n_a ? i0 + rows : n_a;
        SFX(tanh_rows)(i0, i1, m, c, ld_c, NULL, tanh_c);
        for (ptrdiff_t i = i0; i < i1; i++)
            SFX(lstm_backward_row)(i, m, 1, tanh_c + (i - i0) * m, g, ld_g, gate_stride, c,
                                   ld_c, c_prev, ld_cp, da_up, ld_du, da_next, ld_dn, dc,
                                   ld_dc, dg, ld_dg, dgate_stride);
    }
}

/* The GRU's steps (docs/contract.md §5, course notation). G holds the step's
 * row blocks, gs elements apart: Γr, Γu, then (reset-after) hc, c~ or
 * (reset-before) c~, ra. One fused loop per row: with the GRU's three
 * nonlinearities (the LSTM has five) it ran 0-10% faster than one loop per
 * nonlinearity in float64 and the same in float32 (medium, bigbatch). */

/* Rows of y = b[i] for every column: the reset-after step's hc block before
 * the recurrent GEMM adds Wca·a_prev onto it. */
static void SFX(fill_rows)(ptrdiff_t n, ptrdiff_t m, const REAL *CYRNN_RESTRICT b,
                           REAL *CYRNN_RESTRICT y, ptrdiff_t ld)
{
    for (ptrdiff_t i = 0; i < n; i++)
        for (ptrdiff_t j = 0; j < m; j++)
            y[i * ld + j] = b[i];
}

/* Reset-after, after the GEMMs: G = [Wr·cat; Wu·cat; Wca·a_prev + bca; Wcx·x]
 * becomes [Γr; Γu; hc; c~] with Γr = σ(· + br), Γu = σ(· + bu),
 * c~ = tanh(Wcx·x + bcx + Γr·hc); a = Γu·c~ + (1 − Γu)·a_prev.
 * b = [br; bu; bca; bcx], b_stride apart (n_a units, maybe of a larger layer). */
CYRNN_HOT static void SFX(gru_forward_step)(
    ptrdiff_t n_a, ptrdiff_t m, REAL *CYRNN_RESTRICT g, ptrdiff_t ld, ptrdiff_t gs,
    const REAL *CYRNN_RESTRICT b, ptrdiff_t b_stride, const REAL *CYRNN_RESTRICT a_prev,
    ptrdiff_t ld_ap, REAL *CYRNN_RESTRICT a, ptrdiff_t ld_a)
{
    const ptrdiff_t rows = SFX(rows_per_group)(m, 2 * SFX(VEC));
    if (rows > 1) {
        /* short rows: several at a time through buffers, one vector loop per
         * nonlinearity (the same arithmetic as below, element by element; the
         * reset-before GRU's lighter steps measured no faster so) */
        REAL pr[SFX(PACK)], pu[SFX(PACK)], ph[SFX(PACK)], pc[SFX(PACK)], pa[SFX(PACK)];
        for (ptrdiff_t i0 = 0; i0 < n_a; i0 += rows) {
            const ptrdiff_t i1 = i0 + rows < n_a ? i0 + rows : n_a;
            ptrdiff_t k = 0;
            for (ptrdiff_t i = i0; i < i1; i++) {
                const REAL *gr = g + i * ld;
                const REAL br = b[i], bu = b[b_stride + i], bcx = b[3 * b_stride + i];
                for (ptrdiff_t j = 0; j < m; j++, k++) {
                    pr[k] = gr[j] + br;
                    pu[k] = gr[gs + j] + bu;
                    ph[k] = gr[2 * gs + j];
                    pc[k] = gr[3 * gs + j] + bcx;
                    pa[k] = a_prev[i * ld_ap + j];
                }
            }
            const ptrdiff_t padded = SFX(pad)(k, pr);
            SFX(pad)(k, pu);
            SFX(pad)(k, ph);
            SFX(pad)(k, pc);
            SFX(pad)(k, pa);
            for (ptrdiff_t q = 0; q < padded; q++) pr[q] = SIGMOID(pr[q]);
            for (ptrdiff_t q = 0; q < padded; q++) pu[q] = SIGMOID(pu[q]);
            for (ptrdiff_t q = 0; q < padded; q++) pc[q] = TANH(pc[q] + pr[q] * ph[q]);
            for (ptrdiff_t q = 0; q < padded; q++) pa[q] = pu[q] * pc[q] + (1 - pu[q]) * pa[q];
            k = 0;
            for (ptrdiff_t i = i0; i < i1; i++) {
                REAL *gr = g + i * ld;
                for (ptrdiff_t j = 0; j < m; j++, k++) {
                    gr[j] = pr[k];
                    gr[gs + j] = pu[k];
                    gr[3 * gs + j] = pc[k];
                    a[i * ld_a + j] = pa[k];
                }
            }
        }
        return;
    }
    for (ptrdiff_t i = 0; i < n_a; i++) {
        REAL *CYRNN_RESTRICT gr = g + i * ld;
        REAL *CYRNN_RESTRICT gu = gr + gs;
        const REAL *CYRNN_RESTRICT gh = gu + gs;
        REAL *CYRNN_RESTRICT gc = gr + 3 * gs;
        const REAL *CYRNN_RESTRICT ap = a_prev + i * ld_ap;
        REAL *CYRNN_RESTRICT ai = a + i * ld_a;
        const REAL br = b[i], bu = b[b_stride + i], bcx = b[3 * b_stride + i];
        for (ptrdiff_t j = 0; j < m; j++) {
            const REAL r = SIGMOID(gr[j] + br), u = SIGMOID(gu[j] + bu);
            const REAL c = TANH(gc[j] + bcx + r * gh[j]);
            gr[j] = r;
            gu[j] = u;
            gc[j] = c;
            ai[j] = u * c + (1 - u) * ap[j];
        }
    }
}

/* Reset-before, first half (after the r, u rows' GEMMs): Γr, Γu activated in
 * place (b = [br; bu; bc]) and ra = Γr·a_prev into block 3, the operand of the
 * candidate's recurrent GEMM. */
CYRNN_HOT static void SFX(gru_reset_step)(
    ptrdiff_t n_a, ptrdiff_t m, REAL *CYRNN_RESTRICT g, ptrdiff_t ld, ptrdiff_t gs,
    const REAL *CYRNN_RESTRICT b, ptrdiff_t b_stride, const REAL *CYRNN_RESTRICT a_prev,
    ptrdiff_t ld_ap)
{
    for (ptrdiff_t i = 0; i < n_a; i++) {
        REAL *CYRNN_RESTRICT gr = g + i * ld;
        REAL *CYRNN_RESTRICT gu = gr + gs;
        REAL *CYRNN_RESTRICT ra = gr + 3 * gs;
        const REAL *CYRNN_RESTRICT ap = a_prev + i * ld_ap;
        const REAL br = b[i], bu = b[b_stride + i];
        for (ptrdiff_t j = 0; j < m; j++) {
            const REAL r = SIGMOID(gr[j] + br);
            gr[j] = r;
            gu[j] = SIGMOID(gu[j] + bu);
            ra[j] = r * ap[j];
        }
    }
}

/* Reset-before, second half (after the candidate's GEMM on ra):
 * c~ = tanh(· + bc) in place, a = Γu·c~ + (1 − Γu)·a_prev. */
CYRNN_HOT static void SFX(gru_candidate_step)(
    ptrdiff_t n_a, ptrdiff_t m, REAL *CYRNN_RESTRICT g, ptrdiff_t ld, ptrdiff_t gs,
    const REAL *CYRNN_RESTRICT b, ptrdiff_t b_stride, const REAL *CYRNN_RESTRICT a_prev,
    ptrdiff_t ld_ap, REAL *CYRNN_RESTRICT a, ptrdiff_t ld_a)
{
    for (ptrdiff_t i = 0; i < n_a; i++) {
        const REAL *CYRNN_RESTRICT gu = g + i * ld + gs;
        REAL *CYRNN_RESTRICT gc = g + i * ld + 2 * gs;
        const REAL *CYRNN_RESTRICT ap = a_prev + i * ld_ap;
        REAL *CYRNN_RESTRICT ai = a + i * ld_a;
        const REAL bc = b[2 * b_stride + i];
        for (ptrdiff_t j = 0; j < m; j++) {
            const REAL c = TANH(gc[j] + bc);
            gc[j] = c;
            ai[j] = gu[j] * c + (1 - gu[j]) * ap[j];
        }
    }
}

/* Reset-after gate gradients of one step, from da = da_up + da_next (da_next
 * holds the gradient from the step after when has_next):
 *   dc~ = da·Γu·(1 − c~²)          (pre-activation of the candidate)
 *   dΓu = da·(c~ − a_prev)·Γu(1 − Γu)
 *   dhc = dc~·Γr;   dΓr = dc~·hc·Γr(1 − Γr)
 * into dG = [dΓr; dΓu; dhc; dc~] (blocks dgs apart), and da_next = da·(1 − Γu),
 * the direct part of a_prev's gradient (the GEMM adds the rest). */
CYRNN_HOT static void SFX(gru_backward_step)(
    ptrdiff_t n_a, ptrdiff_t m, const REAL *CYRNN_RESTRICT g, ptrdiff_t ld, ptrdiff_t gs,
    const REAL *CYRNN_RESTRICT a_prev, ptrdiff_t ld_ap,
    const REAL *CYRNN_RESTRICT da_up, ptrdiff_t ld_du, REAL *CYRNN_RESTRICT da_next,
    ptrdiff_t ld_dn, int has_next, REAL *CYRNN_RESTRICT dg, ptrdiff_t ld_dg, ptrdiff_t dgs)
{
    for (ptrdiff_t i = 0; i < n_a; i++) {
        const REAL *CYRNN_RESTRICT gr = g + i * ld;
        const REAL *CYRNN_RESTRICT gu = gr + gs;
        const REAL *CYRNN_RESTRICT gh = gr + 2 * gs;
        const REAL *CYRNN_RESTRICT gc = gr + 3 * gs;
        const REAL *CYRNN_RESTRICT ap = a_prev + i * ld_ap;
        const REAL *CYRNN_RESTRICT up = da_up + i * ld_du;
        REAL *CYRNN_RESTRICT dn = da_next + i * ld_dn;
        REAL *CYRNN_RESTRICT dr = dg + i * ld_dg;
        REAL *CYRNN_RESTRICT du = dr + dgs;
        REAL *CYRNN_RESTRICT dh = dr + 2 * dgs;
        REAL *CYRNN_RESTRICT dc = dr + 3 * dgs;
        for (ptrdiff_t j = 0; j < m; j++) {
            const REAL da = has_next ? up[j] + dn[j] : up[j];
            const REAL r = gr[j], u = gu[j], c = gc[j];
            const REAL dcp = da * u * (1 - c * c);
            dc[j] = dcp;
            du[j] = da * (c - ap[j]) * u * (1 - u);
            dh[j] = dcp * r;
            dr[j] = dcp * gh[j] * r * (1 - r);
            dn[j] = da * (1 - u);
        }
    }
}

/* Reset-before, first half: dc~, dΓu (as reset-after) into dG blocks 2 and 1,
 * da_next = da·(1 − Γu). The GEMM dra = Wc_aᵀ·dc~ follows. */
CYRNN_HOT static void SFX(gru_candidate_backward)(
    ptrdiff_t n_a, ptrdiff_t m, const REAL *CYRNN_RESTRICT g, ptrdiff_t ld, ptrdiff_t gs,
    const REAL *CYRNN_RESTRICT a_prev, ptrdiff_t ld_ap,
    const REAL *CYRNN_RESTRICT da_up, ptrdiff_t ld_du, REAL *CYRNN_RESTRICT da_next,
    ptrdiff_t ld_dn, int has_next, REAL *CYRNN_RESTRICT dg, ptrdiff_t ld_dg, ptrdiff_t dgs)
{
    for (ptrdiff_t i = 0; i < n_a; i++) {
        const REAL *CYRNN_RESTRICT gu = g + i * ld + gs;
        const REAL *CYRNN_RESTRICT gc = g + i * ld + 2 * gs;
        const REAL *CYRNN_RESTRICT ap = a_prev + i * ld_ap;
        const REAL *CYRNN_RESTRICT up = da_up + i * ld_du;
        REAL *CYRNN_RESTRICT dn = da_next + i * ld_dn;
        REAL *CYRNN_RESTRICT du = dg + i * ld_dg + dgs;
        REAL *CYRNN_RESTRICT dc = dg + i * ld_dg + 2 * dgs;
        for (ptrdiff_t j = 0; j < m; j++) {
            const REAL da = has_next ? up[j] + dn[j] : up[j];
            const REAL u = gu[j], c = gc[j];
            dc[j] = da * u * (1 - c * c);
            du[j] = da * (c - ap[j]) * u * (1 - u);
            dn[j] = da * (1 - u);
        }
    }
}

/* Reset-before, second half, from dra (dG block 3, the gradient of ra):
 * dΓr = dra·a_prev·Γr(1 − Γr) into dG block 0, da_next += dra·Γr. */
CYRNN_HOT static void SFX(gru_reset_backward)(
    ptrdiff_t n_a, ptrdiff_t m, const REAL *CYRNN_RESTRICT g, ptrdiff_t ld,
    const REAL *CYRNN_RESTRICT a_prev, ptrdiff_t ld_ap, REAL *CYRNN_RESTRICT da_next,
    ptrdiff_t ld_dn, REAL *CYRNN_RESTRICT dg, ptrdiff_t ld_dg, ptrdiff_t dgs)
{
    for (ptrdiff_t i = 0; i < n_a; i++) {
        const REAL *CYRNN_RESTRICT gr = g + i * ld;
        const REAL *CYRNN_RESTRICT ap = a_prev + i * ld_ap;
        REAL *CYRNN_RESTRICT dn = da_next + i * ld_dn;
        REAL *CYRNN_RESTRICT dr = dg + i * ld_dg;
        const REAL *CYRNN_RESTRICT dra = dr + 3 * dgs;
        for (ptrdiff_t j = 0; j < m; j++) {
            const REAL r = gr[j];
            dr[j] = dra[j] * ap[j] * r * (1 - r);
            dn[j] += dra[j] * r;
        }
    }
}

/* Softmax down each column of the (n × ncols) block y (row stride ld), after
 * adding the bias b[row] (NULL: none). Stable per column: each column's own
 * max is subtracted. Columns are done in chunks so the max/sum vectors stay in
 * registers/L1 and the row loops vectorise across columns; 64 columns keep a
 * chunk of the bench shapes' 32 rows in L1 for the three passes over it
 * (bigbatch rnn_forward -1% against 256). */
CYRNN_HOT static void SFX(softmax_columns)(
    ptrdiff_t n, ptrdiff_t ncols, REAL *CYRNN_RESTRICT y, ptrdiff_t ld,
    const REAL *CYRNN_RESTRICT b)
{
    enum { CHUNK = 64 };
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
 * buffers. Both move a block of 8 along one axis per step along the other, so
 * one side goes in whole 64-byte runs and the other in 8 sequential streams:
 * 1.3-2.5x faster than 16x16 tiles here (C harness: bigbatch's 52 MB gather
 * 20.9 -> 7.4 ms, scatter 11.4 -> 9.5 ms; memcpy 5.3 ms). */
enum { SFX(RUN) = 8 };

/* dst (n, T, m) contiguous  <-  src (n, m, T) with element strides s0, s1, s2. */
/* dst (n, T, m) time-major block, rows dst_ld apart and steps dst_step apart
 * (a contiguous (n, T, m) array: dst_ld = T·m, dst_step = m)  <-  src (n, m, T)
 * with element strides s0, s1, s2. */
static void SFX(gather_time_major)(ptrdiff_t n, ptrdiff_t m, ptrdiff_t T,
                                   const REAL *CYRNN_RESTRICT src, ptrdiff_t s0,
                                   ptrdiff_t s1, ptrdiff_t s2, REAL *CYRNN_RESTRICT dst,
                                   ptrdiff_t dst_ld, ptrdiff_t dst_step)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        const REAL *si = src + i * s0;
        REAL *di = dst + i * dst_ld;
        ptrdiff_t j0 = 0;
        /* 8 batch columns at a time: one 64-byte run of dst per step t */
        for (; j0 + SFX(RUN) <= m; j0 += SFX(RUN))
            for (ptrdiff_t t = 0; t < T; t++)
                for (int q = 0; q < SFX(RUN); q++)
                    di[t * dst_step + j0 + q] = si[(j0 + q) * s1 + t * s2];
        for (; j0 < m; j0++)
            for (ptrdiff_t t = 0; t < T; t++)
                di[t * dst_step + j0] = si[j0 * s1 + t * s2];
    }
}

/* Columns j0..j1-1 of one (T, ·) time-major slab si (steps `step` apart) into
 * the user's layout, out[(j - j0)·out_stride + t] (8 steps at a time: one
 * 64-byte run of out per batch column j, from 8 sequential streams of si). */
static void SFX(transpose_columns)(ptrdiff_t j0, ptrdiff_t j1, ptrdiff_t step, ptrdiff_t T,
                                   const REAL *CYRNN_RESTRICT si, REAL *CYRNN_RESTRICT out,
                                   ptrdiff_t out_stride)
{
    ptrdiff_t t0 = 0;
    for (; t0 + SFX(RUN) <= T; t0 += SFX(RUN))
        for (ptrdiff_t j = j0; j < j1; j++)
            for (int q = 0; q < SFX(RUN); q++)
                out[(j - j0) * out_stride + t0 + q] = si[(t0 + q) * step + j];
    for (; t0 < T; t0++)
        for (ptrdiff_t j = j0; j < j1; j++)
            out[(j - j0) * out_stride + t0] = si[t0 * step + j];
}

/* Outputs of STREAM_MIN_BYTES and more are transposed into a small staging
 * buffer (kept in L2 under glibc's 128 KiB mmap threshold) and streamed out
 * with non-temporal stores. Written in place, each 64-byte run of dst lands in
 * a cache line whose other runs come in later passes, so every line is read
 * from memory before it is written; staged, dst is written once, like a
 * memcpy. C harness, bigbatch's 52 MB a: 7.0 -> 4.5-5.0 ms (memcpy 3.0 ms);
 * medium's 13 MB: 1.6 -> 1.2 ms. Smaller outputs stay in the caches, where the
 * direct loop is faster (3 MB: 0.11 ms direct, 0.20 ms streamed). Staging needs
 * whole rows of dst (all of its T_dst steps), so blocks of fewer steps take the
 * direct loop. */
enum { SFX(STREAM_MIN_BYTES) = 8 << 20, SFX(STAGE) = (120 << 10) / sizeof(REAL) };

/* dst rows (ldd apart) <- src rows (lds apart), cols elements each, with
 * non-temporal stores where there are any: the destination (the caches a
 * block is copied into, the state buffers: src/engine/modes.pxi) is not read
 * again soon, and ordinary stores would first read each of its cache lines. */
static void SFX(stream_rows)(ptrdiff_t rows, ptrdiff_t cols, const REAL *CYRNN_RESTRICT src,
                             ptrdiff_t lds, REAL *CYRNN_RESTRICT dst, ptrdiff_t ldd)
{
    for (ptrdiff_t i = 0; i < rows; i++)
        SFX(stream_copy)(dst + i * ldd, src + i * lds, cols);
    cyrnn_stream_fence();
}

/* Steps 0..T-1 of m batch columns of the user's (n, ·, T_dst) array dst (rows
 * dst_ld apart, a column's steps contiguous)  <-  the time-major block src
 * (n, T, m): rows src_ld apart, steps src_step apart, columns contiguous. */
static void SFX(scatter_batch_major)(ptrdiff_t n, ptrdiff_t m, ptrdiff_t T,
                                     const REAL *CYRNN_RESTRICT src, ptrdiff_t src_ld,
                                     ptrdiff_t src_step, REAL *CYRNN_RESTRICT dst,
                                     ptrdiff_t dst_ld, ptrdiff_t T_dst)
{
    REAL *stage = NULL;
    ptrdiff_t rows_per_stage = SFX(STAGE) / (T > 0 ? T : 1);
    if (CYRNN_HAVE_STREAM && T == T_dst && T > 1 && m > 1 && rows_per_stage > 0 &&
        (double)n * m * T * sizeof(REAL) >= SFX(STREAM_MIN_BYTES))
        stage = (REAL *)malloc(SFX(STAGE) * sizeof(REAL));   /* NULL: direct path */
    for (ptrdiff_t i = 0; i < n; i++) {
        const REAL *si = src + i * src_ld;
        REAL *di = dst + i * dst_ld;
        if (T == 1 && m > 0) {   /* one step: a strided copy (nothing when in place) */
            if (T_dst == 1) {
                if (di != si)
                    memcpy(di, si, (size_t)m * sizeof(REAL));
            } else {
                for (ptrdiff_t j = 0; j < m; j++)
                    di[j * T_dst] = si[j];
            }
        } else if (stage == NULL) {
            SFX(transpose_columns)(0, m, src_step, T, si, di, T_dst);
        } else {
            for (ptrdiff_t j0 = 0; j0 < m; j0 += rows_per_stage) {
                const ptrdiff_t j1 = j0 + rows_per_stage < m ? j0 + rows_per_stage : m;
                SFX(transpose_columns)(j0, j1, src_step, T, si, stage, T);
                SFX(stream_copy)(di + j0 * T, stage, (j1 - j0) * T);
            }
        }
    }
    if (stage != NULL) {
        cyrnn_stream_fence();  /* the streamed stores are visible before we return */
        free(stage);
    }
}

/* The packed layout of variable-length batches (cyrnn/_packing.py): sorted
 * position q (batch column order[q], len[q] steps, len non-increasing in q)
 * at step t < len[q] is packed column offsets[t] + q. Both directions go
 * column by column along t: the user's side is then one contiguous run per
 * column, and the packed side touches the same len[q] cache lines for 8
 * consecutive q (bigbatch LSTM: unpacking `a` in runs of 8 positions per
 * step, like gather_time_major, took 29% of the forward pass). Steps from
 * `steps` on are left out (backward: the first T_da). */
static void SFX(pack_columns)(ptrdiff_t n, ptrdiff_t m, ptrdiff_t steps,
                              const ptrdiff_t *CYRNN_RESTRICT order,
                              const ptrdiff_t *CYRNN_RESTRICT len,
                              const ptrdiff_t *CYRNN_RESTRICT offsets,
                              const REAL *CYRNN_RESTRICT src, ptrdiff_t s0, ptrdiff_t s1,
                              ptrdiff_t s2, REAL *CYRNN_RESTRICT dst, ptrdiff_t ld)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        REAL *di = dst + i * ld;
        for (ptrdiff_t q = 0; q < m; q++) {
            const REAL *sq = src + i * s0 + order[q] * s1;
            const ptrdiff_t L = len[q] < steps ? len[q] : steps;
            for (ptrdiff_t t = 0; t < L; t++)
                di[offsets[t] + q] = sq[t * s2];
        }
    }
}

/* dst (n, m, steps) in the user's layout (rows dst_ld apart) <- packed src
 * (rows ld apart), 0 where a column does not run; position[j]: the sorted
 * position of column j. Large outputs go through the staging buffer of
 * scatter_batch_major, in column order, and are streamed out: written in
 * place, column by column in sorted (random) order, every cache line of dst
 * was read before being written (bigbatch LSTM forward: 13% of its time). */
static void SFX(unpack_columns)(ptrdiff_t n, ptrdiff_t m, ptrdiff_t steps,
                                const ptrdiff_t *CYRNN_RESTRICT order,
                                const ptrdiff_t *CYRNN_RESTRICT position,
                                const ptrdiff_t *CYRNN_RESTRICT len,
                                const ptrdiff_t *CYRNN_RESTRICT offsets,
                                const REAL *CYRNN_RESTRICT src, ptrdiff_t ld,
                                REAL *CYRNN_RESTRICT dst, ptrdiff_t dst_ld)
{
    REAL *stage = NULL;
    const ptrdiff_t per_stage = SFX(STAGE) / (steps > 0 ? steps : 1);
    if (CYRNN_HAVE_STREAM && steps > 1 && m > 1 && per_stage > 0 &&
        (double)n * m * steps * sizeof(REAL) >= SFX(STREAM_MIN_BYTES))
        stage = (REAL *)malloc(SFX(STAGE) * sizeof(REAL));   /* NULL: direct path */
    for (ptrdiff_t i = 0; i < n; i++) {
        const REAL *si = src + i * ld;
        REAL *di = dst + i * dst_ld;
        if (stage == NULL) {
            for (ptrdiff_t q = 0; q < m; q++) {
                REAL *dq = di + order[q] * steps;
                const ptrdiff_t L = len[q] < steps ? len[q] : steps;
                for (ptrdiff_t t = 0; t < L; t++)
                    dq[t] = si[offsets[t] + q];
                for (ptrdiff_t t = L; t < steps; t++)
                    dq[t] = 0;
            }
            continue;
        }
        for (ptrdiff_t j0 = 0; j0 < m; j0 += per_stage) {
            const ptrdiff_t j1 = j0 + per_stage < m ? j0 + per_stage : m;
            for (ptrdiff_t j = j0; j < j1; j++) {
                const ptrdiff_t q = position[j];
                const ptrdiff_t L = len[q] < steps ? len[q] : steps;
                REAL *sj = stage + (j - j0) * steps;
                for (ptrdiff_t t = 0; t < L; t++)
                    sj[t] = si[offsets[t] + q];
                for (ptrdiff_t t = L; t < steps; t++)
                    sj[t] = 0;
            }
            SFX(stream_copy)(di + j0 * steps, stage, (j1 - j0) * steps);
        }
    }
    if (stage != NULL) {
        cyrnn_stream_fence();
        free(stage);
    }
}
