/* The packed kernel in plain C, for compilers without vector extensions
 * (MSVC): the same layout and k-order as cyrnn_packed_impl.h, loops the
 * compiler may vectorise. REAL, ISFX as there. */

static ptrdiff_t ISFX(pk_lanes)(void) { return 4; }

static void ISFX(pk_pack_columns)(int gates, ptrdiff_t U, const REAL *CYRNN_PK_RESTRICT B,
                                  ptrdiff_t ldb, ptrdiff_t k, ptrdiff_t n,
                                  REAL *CYRNN_PK_RESTRICT out)
{
    (void)gates; (void)U;
    for (ptrdiff_t j = 0; j < n; j++)          /* one column per tile */
        for (ptrdiff_t kk = 0; kk < k; kk++)
            out[k * j + kk] = B[kk * ldb + j];
}

static void ISFX(pk_panel_product)(
    const REAL *CYRNN_PK_RESTRICT panel, ptrdiff_t k, int gates, ptrdiff_t U,
    const REAL *CYRNN_PK_RESTRICT Bp, ptrdiff_t n, REAL *CYRNN_PK_RESTRICT G,
    ptrdiff_t ldg, ptrdiff_t gate_stride, ptrdiff_t units)
{
    REAL acc[64];
    for (int g = 0; g < gates; g++)
        for (ptrdiff_t j = 0; j < n; j++)
            for (ptrdiff_t u0 = 0; u0 < units; u0 += 64) {
                const ptrdiff_t nu = units - u0 < 64 ? units - u0 : 64;
                for (ptrdiff_t u = 0; u < nu; u++)
                    acc[u] = 0;
                for (ptrdiff_t kk = 0; kk < k; kk++) {
                    const REAL *a = panel + (kk * gates + g) * U + u0;
                    const REAL b = Bp[k * j + kk];
                    for (ptrdiff_t u = 0; u < nu; u++)
                        acc[u] += a[u] * b;
                }
                for (ptrdiff_t u = 0; u < nu; u++)
                    G[g * gate_stride + (u0 + u) * ldg + j] += acc[u];
            }
}

#undef ISFX
