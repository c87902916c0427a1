# Fused-type front for the C elementwise passes in cyrnn_elementwise.h:
# `if floating is float` picks the _f instantiation, else _d, at compile time.
from cython cimport floating

cdef extern from "cyrnn_elementwise.h" nogil:
    unsigned int cyrnn_ftz_begin()
    void cyrnn_ftz_end(unsigned int old)

    void rnn_forward_step_d(Py_ssize_t, Py_ssize_t, double*, Py_ssize_t, const double*)
    void rnn_forward_step_f(Py_ssize_t, Py_ssize_t, float*, Py_ssize_t, const float*)
    void lstm_forward_step_d(Py_ssize_t, Py_ssize_t, double*, Py_ssize_t, Py_ssize_t,
                             const double*, Py_ssize_t, const double*, Py_ssize_t,
                             double*, Py_ssize_t, double*, Py_ssize_t, int)
    void lstm_forward_step_f(Py_ssize_t, Py_ssize_t, float*, Py_ssize_t, Py_ssize_t,
                             const float*, Py_ssize_t, const float*, Py_ssize_t,
                             float*, Py_ssize_t, float*, Py_ssize_t, int)
    void rnn_backward_step_d(Py_ssize_t, Py_ssize_t, double*, Py_ssize_t,
                             const double*, Py_ssize_t, const double*, Py_ssize_t)
    void rnn_backward_step_f(Py_ssize_t, Py_ssize_t, float*, Py_ssize_t,
                             const float*, Py_ssize_t, const float*, Py_ssize_t)
    void lstm_backward_step_d(Py_ssize_t, Py_ssize_t, const double*, Py_ssize_t, Py_ssize_t,
                              const double*, Py_ssize_t, const double*, Py_ssize_t,
                              const double*, Py_ssize_t, const double*, Py_ssize_t,
                              double*, Py_ssize_t, double*, Py_ssize_t, Py_ssize_t)
    void lstm_backward_step_f(Py_ssize_t, Py_ssize_t, const float*, Py_ssize_t, Py_ssize_t,
                              const float*, Py_ssize_t, const float*, Py_ssize_t,
                              const float*, Py_ssize_t, const float*, Py_ssize_t,
                              float*, Py_ssize_t, float*, Py_ssize_t, Py_ssize_t)
    void fill_rows_d(Py_ssize_t, Py_ssize_t, const double*, double*, Py_ssize_t)
    void fill_rows_f(Py_ssize_t, Py_ssize_t, const float*, float*, Py_ssize_t)
    void gru_forward_step_d(Py_ssize_t, Py_ssize_t, double*, Py_ssize_t, Py_ssize_t,
                            const double*, Py_ssize_t, const double*, Py_ssize_t, double*, Py_ssize_t)
    void gru_forward_step_f(Py_ssize_t, Py_ssize_t, float*, Py_ssize_t, Py_ssize_t,
                            const float*, Py_ssize_t, const float*, Py_ssize_t, float*, Py_ssize_t)
    void gru_reset_step_d(Py_ssize_t, Py_ssize_t, double*, Py_ssize_t, Py_ssize_t,
                          const double*, Py_ssize_t, const double*, Py_ssize_t)
    void gru_reset_step_f(Py_ssize_t, Py_ssize_t, float*, Py_ssize_t, Py_ssize_t,
                          const float*, Py_ssize_t, const float*, Py_ssize_t)
    void gru_candidate_step_d(Py_ssize_t, Py_ssize_t, double*, Py_ssize_t, Py_ssize_t,
                              const double*, Py_ssize_t, const double*, Py_ssize_t, double*,
                              Py_ssize_t)
    void gru_candidate_step_f(Py_ssize_t, Py_ssize_t, float*, Py_ssize_t, Py_ssize_t,
                              const float*, Py_ssize_t, const float*, Py_ssize_t, float*,
                              Py_ssize_t)
    void gru_backward_step_d(Py_ssize_t, Py_ssize_t, const double*, Py_ssize_t, Py_ssize_t,
                             const double*, Py_ssize_t, const double*, Py_ssize_t, double*,
                             Py_ssize_t, int, double*, Py_ssize_t, Py_ssize_t)
    void gru_backward_step_f(Py_ssize_t, Py_ssize_t, const float*, Py_ssize_t, Py_ssize_t,
                             const float*, Py_ssize_t, const float*, Py_ssize_t, float*,
                             Py_ssize_t, int, float*, Py_ssize_t, Py_ssize_t)
    void gru_candidate_backward_d(Py_ssize_t, Py_ssize_t, const double*, Py_ssize_t,
                                  Py_ssize_t, const double*, Py_ssize_t, const double*,
                                  Py_ssize_t, double*, Py_ssize_t, int, double*, Py_ssize_t,
                                  Py_ssize_t)
    void gru_candidate_backward_f(Py_ssize_t, Py_ssize_t, const float*, Py_ssize_t,
                                  Py_ssize_t, const float*, Py_ssize_t, const float*,
                                  Py_ssize_t, float*, Py_ssize_t, int, float*, Py_ssize_t,
                                  Py_ssize_t)
    void gru_reset_backward_d(Py_ssize_t, Py_ssize_t, const double*, Py_ssize_t,
                              const double*, Py_ssize_t, double*, Py_ssize_t, double*,
                              Py_ssize_t, Py_ssize_t)
    void gru_reset_backward_f(Py_ssize_t, Py_ssize_t, const float*, Py_ssize_t,
                              const float*, Py_ssize_t, float*, Py_ssize_t, float*,
                              Py_ssize_t, Py_ssize_t)
    void pack_columns_d(Py_ssize_t, Py_ssize_t, Py_ssize_t, const Py_ssize_t*,
                        const Py_ssize_t*, const Py_ssize_t*, const double*, Py_ssize_t,
                        Py_ssize_t, Py_ssize_t, double*, Py_ssize_t)
    void pack_columns_f(Py_ssize_t, Py_ssize_t, Py_ssize_t, const Py_ssize_t*,
                        const Py_ssize_t*, const Py_ssize_t*, const float*, Py_ssize_t,
                        Py_ssize_t, Py_ssize_t, float*, Py_ssize_t)
    void unpack_columns_d(Py_ssize_t, Py_ssize_t, Py_ssize_t, const Py_ssize_t*,
                          const Py_ssize_t*, const Py_ssize_t*, const Py_ssize_t*,
                          const double*, Py_ssize_t, double*, Py_ssize_t)
    void unpack_columns_f(Py_ssize_t, Py_ssize_t, Py_ssize_t, const Py_ssize_t*,
                          const Py_ssize_t*, const Py_ssize_t*, const Py_ssize_t*,
                          const float*, Py_ssize_t, float*, Py_ssize_t)
    void softmax_columns_d(Py_ssize_t, Py_ssize_t, double*, Py_ssize_t, const double*)
    void softmax_columns_f(Py_ssize_t, Py_ssize_t, float*, Py_ssize_t, const float*)
    void sigmoid_array_d(Py_ssize_t, const double*, double*)
    void sigmoid_array_f(Py_ssize_t, const float*, float*)
    void row_sums_d(Py_ssize_t, Py_ssize_t, const double*, Py_ssize_t, double*)
    void row_sums_f(Py_ssize_t, Py_ssize_t, const float*, Py_ssize_t, float*)
    void gather_time_major_d(Py_ssize_t, Py_ssize_t, Py_ssize_t, const double*,
                             Py_ssize_t, Py_ssize_t, Py_ssize_t, double*, Py_ssize_t,
                             Py_ssize_t)
    void gather_time_major_f(Py_ssize_t, Py_ssize_t, Py_ssize_t, const float*,
                             Py_ssize_t, Py_ssize_t, Py_ssize_t, float*, Py_ssize_t,
                             Py_ssize_t)
    void scatter_batch_major_d(Py_ssize_t, Py_ssize_t, Py_ssize_t, const double*,
                               Py_ssize_t, Py_ssize_t, double*, Py_ssize_t, Py_ssize_t)
    void scatter_batch_major_f(Py_ssize_t, Py_ssize_t, Py_ssize_t, const float*,
                               Py_ssize_t, Py_ssize_t, float*, Py_ssize_t, Py_ssize_t)
    void stream_rows_d(Py_ssize_t, Py_ssize_t, const double*, Py_ssize_t, double*, Py_ssize_t)
    void stream_rows_f(Py_ssize_t, Py_ssize_t, const float*, Py_ssize_t, float*, Py_ssize_t)


cdef inline void rnn_forward_step(Py_ssize_t n_a, Py_ssize_t m, floating* z, Py_ssize_t ld,
                                  const floating* b) noexcept nogil:
    if floating is float:
        rnn_forward_step_f(n_a, m, z, ld, b)
    else:
        rnn_forward_step_d(n_a, m, z, ld, b)


cdef inline void lstm_forward_step(Py_ssize_t n_a, Py_ssize_t m, floating* g, Py_ssize_t ld_g,
                                   Py_ssize_t gate_stride, const floating* b,
                                   Py_ssize_t b_stride, const floating* c_prev,
                                   Py_ssize_t ld_cp, floating* c, Py_ssize_t ld_c,
                                   floating* a, Py_ssize_t ld_a,
                                   bint keep_gates=True) noexcept nogil:
    if floating is float:
        lstm_forward_step_f(n_a, m, g, ld_g, gate_stride, b, b_stride, c_prev, ld_cp, c, ld_c, a,
                            ld_a, keep_gates)
    else:
        lstm_forward_step_d(n_a, m, g, ld_g, gate_stride, b, b_stride, c_prev, ld_cp, c, ld_c, a,
                            ld_a, keep_gates)


cdef inline void rnn_backward_step(Py_ssize_t n_a, Py_ssize_t m, floating* dz, Py_ssize_t ld_dz,
                                   const floating* da_next, Py_ssize_t ld_dn,
                                   const floating* a, Py_ssize_t ld_a) noexcept nogil:
    if floating is float:
        rnn_backward_step_f(n_a, m, dz, ld_dz, da_next, ld_dn, a, ld_a)
    else:
        rnn_backward_step_d(n_a, m, dz, ld_dz, da_next, ld_dn, a, ld_a)


cdef inline void lstm_backward_step(Py_ssize_t n_a, Py_ssize_t m,
                                    const floating* g, Py_ssize_t ld_g, Py_ssize_t gate_stride,
                                    const floating* c, Py_ssize_t ld_c,
                                    const floating* c_prev, Py_ssize_t ld_cp,
                                    const floating* da_up, Py_ssize_t ld_du,
                                    const floating* da_next, Py_ssize_t ld_dn,
                                    floating* dc, Py_ssize_t ld_dc,
                                    floating* dg, Py_ssize_t ld_dg,
                                    Py_ssize_t dgate_stride) noexcept nogil:
    if floating is float:
        lstm_backward_step_f(n_a, m, g, ld_g, gate_stride, c, ld_c, c_prev, ld_cp,
                             da_up, ld_du, da_next, ld_dn, dc, ld_dc, dg, ld_dg, dgate_stride)
    else:
        lstm_backward_step_d(n_a, m, g, ld_g, gate_stride, c, ld_c, c_prev, ld_cp,
                             da_up, ld_du, da_next, ld_dn, dc, ld_dc, dg, ld_dg, dgate_stride)


cdef inline void softmax_columns(Py_ssize_t n, Py_ssize_t ncols, floating* y, Py_ssize_t ld,
                                 const floating* b) noexcept nogil:
    if floating is float:
        softmax_columns_f(n, ncols, y, ld, b)
    else:
        softmax_columns_d(n, ncols, y, ld, b)


cdef inline void sigmoid_array(Py_ssize_t n, const floating* x, floating* y) noexcept nogil:
    if floating is float:
        sigmoid_array_f(n, x, y)
    else:
        sigmoid_array_d(n, x, y)


cdef inline void row_sums(Py_ssize_t rows, Py_ssize_t ncols, const floating* x, Py_ssize_t ld,
                          floating* out) noexcept nogil:
    if floating is float:
        row_sums_f(rows, ncols, x, ld, out)
    else:
        row_sums_d(rows, ncols, x, ld, out)


cdef inline void gather_time_major(Py_ssize_t n, Py_ssize_t m, Py_ssize_t T, const floating* src,
                                   Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2,
                                   floating* dst, Py_ssize_t dst_ld,
                                   Py_ssize_t dst_step) noexcept nogil:
    """dst[i·dst_ld + t·dst_step + j] = src[i·s0 + j·s1 + t·s2]: (n, m, T) to time-major."""
    if floating is float:
        gather_time_major_f(n, m, T, src, s0, s1, s2, dst, dst_ld, dst_step)
    else:
        gather_time_major_d(n, m, T, src, s0, s1, s2, dst, dst_ld, dst_step)


cdef inline void scatter_batch_major(Py_ssize_t n, Py_ssize_t m, Py_ssize_t T,
                                     const floating* src, Py_ssize_t src_ld,
                                     Py_ssize_t src_step, floating* dst, Py_ssize_t dst_ld,
                                     Py_ssize_t T_dst) noexcept nogil:
    """dst[i·dst_ld + j·T_dst + t] = src[i·src_ld + t·src_step + j]: time-major to (n, m, T)."""
    if floating is float:
        scatter_batch_major_f(n, m, T, src, src_ld, src_step, dst, dst_ld, T_dst)
    else:
        scatter_batch_major_d(n, m, T, src, src_ld, src_step, dst, dst_ld, T_dst)

cdef inline void stream_rows(Py_ssize_t rows, Py_ssize_t cols, const floating* src,
                             Py_ssize_t lds, floating* dst, Py_ssize_t ldd) noexcept nogil:
    """dst rows <- src rows, cols elements each, bypassing the caches where it can."""
    if floating is float:
        stream_rows_f(rows, cols, src, lds, dst, ldd)
    else:
        stream_rows_d(rows, cols, src, lds, dst, ldd)


# The GRU's step kernels (src/cyrnn_elementwise_impl.h: what each computes).
cdef inline void fill_rows(Py_ssize_t n, Py_ssize_t m, const floating* b, floating* y,
                           Py_ssize_t ld) noexcept nogil:
    if floating is float:
        fill_rows_f(n, m, b, y, ld)
    else:
        fill_rows_d(n, m, b, y, ld)


cdef inline void gru_forward_step(Py_ssize_t n_a, Py_ssize_t m, floating* g, Py_ssize_t ld,
                                  Py_ssize_t gs, const floating* b, Py_ssize_t b_stride,
                                  const floating* a_prev, Py_ssize_t ld_ap, floating* a,
                                  Py_ssize_t ld_a) noexcept nogil:
    if floating is float:
        gru_forward_step_f(n_a, m, g, ld, gs, b, b_stride, a_prev, ld_ap, a, ld_a)
    else:
        gru_forward_step_d(n_a, m, g, ld, gs, b, b_stride, a_prev, ld_ap, a, ld_a)


cdef inline void gru_reset_step(Py_ssize_t n_a, Py_ssize_t m, floating* g, Py_ssize_t ld,
                                Py_ssize_t gs, const floating* b, Py_ssize_t b_stride,
                                const floating* a_prev, Py_ssize_t ld_ap) noexcept nogil:
    if floating is float:
        gru_reset_step_f(n_a, m, g, ld, gs, b, b_stride, a_prev, ld_ap)
    else:
        gru_reset_step_d(n_a, m, g, ld, gs, b, b_stride, a_prev, ld_ap)


cdef inline void gru_candidate_step(Py_ssize_t n_a, Py_ssize_t m, floating* g, Py_ssize_t ld,
                                    Py_ssize_t gs, const floating* b, Py_ssize_t b_stride,
                                    const floating* a_prev, Py_ssize_t ld_ap, floating* a,
                                    Py_ssize_t ld_a) noexcept nogil:
    if floating is float:
        gru_candidate_step_f(n_a, m, g, ld, gs, b, b_stride, a_prev, ld_ap, a, ld_a)
    else:
        gru_candidate_step_d(n_a, m, g, ld, gs, b, b_stride, a_prev, ld_ap, a, ld_a)


cdef inline void gru_backward_step(Py_ssize_t n_a, Py_ssize_t m, const floating* g,
                                   Py_ssize_t ld, Py_ssize_t gs, const floating* a_prev,
                                   Py_ssize_t ld_ap, const floating* da_up, Py_ssize_t ld_du,
                                   floating* da_next, Py_ssize_t ld_dn, bint has_next,
                                   floating* dg, Py_ssize_t ld_dg, Py_ssize_t dgs) noexcept nogil:
    if floating is float:
        gru_backward_step_f(n_a, m, g, ld, gs, a_prev, ld_ap, da_up, ld_du, da_next, ld_dn,
                            has_next, dg, ld_dg, dgs)
    else:
        gru_backward_step_d(n_a, m, g, ld, gs, a_prev, ld_ap, da_up, ld_du, da_next, ld_dn,
                            has_next, dg, ld_dg, dgs)


cdef inline void gru_candidate_backward(Py_ssize_t n_a, Py_ssize_t m, const floating* g,
                                        Py_ssize_t ld, Py_ssize_t gs, const floating* a_prev,
                                        Py_ssize_t ld_ap, const floating* da_up,
                                        Py_ssize_t ld_du, floating* da_next, Py_ssize_t ld_dn,
                                        bint has_next, floating* dg, Py_ssize_t ld_dg,
                                        Py_ssize_t dgs) noexcept nogil:
    if floating is float:
        gru_candidate_backward_f(n_a, m, g, ld, gs, a_prev, ld_ap, da_up, ld_du, da_next,
                                 ld_dn, has_next, dg, ld_dg, dgs)
    else:
        gru_candidate_backward_d(n_a, m, g, ld, gs, a_prev, ld_ap, da_up, ld_du, da_next,
                                 ld_dn, has_next, dg, ld_dg, dgs)


cdef inline void gru_reset_backward(Py_ssize_t n_a, Py_ssize_t m, const floating* g,
                                    Py_ssize_t ld, const floating* a_prev, Py_ssize_t ld_ap,
                                    floating* da_next, Py_ssize_t ld_dn, floating* dg,
                                    Py_ssize_t ld_dg, Py_ssize_t dgs) noexcept nogil:
    if floating is float:
        gru_reset_backward_f(n_a, m, g, ld, a_prev, ld_ap, da_next, ld_dn, dg, ld_dg, dgs)
    else:
        gru_reset_backward_d(n_a, m, g, ld, a_prev, ld_ap, da_next, ld_dn, dg, ld_dg, dgs)


# The packed layout of variable-length batches (cyrnn_elementwise_impl.h).
cdef inline void pack_columns(Py_ssize_t n, Py_ssize_t m, Py_ssize_t steps,
                              const Py_ssize_t* order, const Py_ssize_t* lens,
                              const Py_ssize_t* offsets, const floating* src, Py_ssize_t s0,
                              Py_ssize_t s1, Py_ssize_t s2, floating* dst,
                              Py_ssize_t ld) noexcept nogil:
    if floating is float:
        pack_columns_f(n, m, steps, order, lens, offsets, src, s0, s1, s2, dst, ld)
    else:
        pack_columns_d(n, m, steps, order, lens, offsets, src, s0, s1, s2, dst, ld)


cdef inline void unpack_columns(Py_ssize_t n, Py_ssize_t m, Py_ssize_t steps,
                                const Py_ssize_t* order, const Py_ssize_t* position,
                                const Py_ssize_t* lens, const Py_ssize_t* offsets,
                                const floating* src, Py_ssize_t ld, floating* dst,
                                Py_ssize_t dst_ld) noexcept nogil:
    if floating is float:
        unpack_columns_f(n, m, steps, order, position, lens, offsets, src, ld, dst, dst_ld)
    else:
        unpack_columns_d(n, m, steps, order, position, lens, offsets, src, ld, dst, dst_ld)
