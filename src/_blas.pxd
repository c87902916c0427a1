# The one BLAS layer of cyrnn: nothing else cimports scipy.linalg.cython_blas.
#
# Kernels think in row-major (C order); SciPy's BLAS is column-major. A row-major
# C = op(A)·op(B) is the column-major C^T = op(B)^T·op(A)^T, so `gemm` swaps the
# operands and the sizes once here and kernel authors never see Fortran order.
from cython cimport floating
from libc.stdlib cimport malloc, free
from scipy.linalg.cython_blas cimport sgemm, dgemm, sgemv, dgemv

# Sizes passed to BLAS. SciPy's cython_blas takes 32-bit ints (LP64); every entry
# point refuses problems whose sizes do not fit (cyrnn/_validation.py and the
# engine's fast checks share BLAS_INT_MAX). Index products below are computed in
# Py_ssize_t: i·ldc can pass 2^31 even when each factor fits.
ctypedef int blas_int


cdef inline void gemm(bint trans_a, bint trans_b,
                      blas_int m, blas_int n, blas_int k,
                      floating alpha, const floating* A, blas_int lda,
                      const floating* B, blas_int ldb,
                      floating beta, floating* C, blas_int ldc) noexcept nogil:
    """Row-major C[m×n] = alpha·op(A)[m×k]·op(B)[k×n] + beta·C."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef Py_ssize_t i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0:
        # BLAS allows k == 0 but some builds still check lda/ldb; do it here.
        if beta == 1:
            return
        for i in range(m):
            for j in range(n):
                C[i * <Py_ssize_t>ldc + j] = 0 if beta == 0 else beta * C[i * <Py_ssize_t>ldc + j]
        return
    # Leading dimensions must be >= 1 even for empty operands.
    if lda < 1:
        lda = 1
    if ldb < 1:
        ldb = 1
    if ldc < 1:
        ldc = 1
    if n == 1 and not trans_b and (ldb != 1 or ldc != 1):
        if unit_stride_product(trans_a, False, m, k, alpha, A, lda, B, ldb, beta, C, ldc):
            return
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)


cdef inline void gemv(bint trans, blas_int m, blas_int n, floating alpha, const floating* A,
                      blas_int lda, const floating* x, blas_int incx, floating beta,
                      floating* y, blas_int incy) noexcept nogil:
    """Row-major y = alpha·op(A)·x + beta·y, A m×n, x and y `inc` elements apart."""
    cdef char t = b'N' if trans else b'T'     # row-major A is column-major Aᵀ
    if m <= 0 or n <= 0:
        return
    if lda < 1:
        lda = 1
    if incx != 1 or incy != 1:
        if unit_stride_product(trans, True, m, n, alpha, A, lda, x, incx, beta, y, incy):
            return
    if floating is float:
        sgemv(&t, &n, &m, &alpha, <float*>A, &lda, <float*>x, &incx, &beta, y, &incy)
    else:
        dgemv(&t, &n, &m, &alpha, <double*>A, &lda, <double*>x, &incx, &beta, y, &incy)


# A product with one column must give the same bits wherever its vectors live:
# ARM's OpenBLAS forwards such GEMMs to gemv, whose kernels sum in an order that
# depends on the vectors' strides, and a run's caches and workspaces lay a
# column out with different strides. So strided vectors are copied to
# contiguous ones first (k + m elements against the product's k·m).
cdef enum:
    UNIT_STRIDE_STACK = 1024    # elements of x and y copied on the stack, else malloc


cdef inline bint unit_stride_product(bint trans, bint as_gemv, blas_int m, blas_int k,
                                     floating alpha, const floating* A, blas_int lda,
                                     const floating* x, blas_int incx, floating beta,
                                     floating* y, blas_int incy) noexcept nogil:
    """y (m elements, incy apart) = alpha·op(A)·x + beta·y for x (k elements,
    incx apart), through contiguous copies of x and y: as one gemv, else as a
    one-column GEMM. False (nothing done) when no memory was had for the copies."""
    cdef floating on_stack[UNIT_STRIDE_STACK]
    cdef blas_int nx = m if as_gemv and trans else k, ny = k if as_gemv and trans else m
    cdef floating* xs = on_stack
    cdef Py_ssize_t i
    cdef blas_int one = 1
    cdef char t = b'N' if trans else b'T'
    cdef char nt = b'N'
    if <Py_ssize_t>nx + ny > UNIT_STRIDE_STACK:
        xs = <floating*>malloc((<size_t>nx + ny) * sizeof(floating))
        if xs == NULL:
            return False
    cdef floating* ys = xs + nx
    for i in range(nx):
        xs[i] = x[i * <Py_ssize_t>incx]
    if beta != 0:
        for i in range(ny):
            ys[i] = y[i * <Py_ssize_t>incy]
    if not as_gemv:
        t = b'T' if trans else b'N'
    if floating is float:
        if as_gemv:
            sgemv(&t, &k, &m, &alpha, <float*>A, &lda, xs, &one, &beta, ys, &one)
        else:
            sgemm(&nt, &t, &one, &m, &k, &alpha, xs, &one, <float*>A, &lda, &beta, ys, &one)
    else:
        if as_gemv:
            dgemv(&t, &k, &m, &alpha, <double*>A, &lda, xs, &one, &beta, ys, &one)
        else:
            dgemm(&nt, &t, &one, &m, &k, &alpha, xs, &one, <double*>A, &lda, &beta, ys, &one)
    for i in range(ny):
        y[i * <Py_ssize_t>incy] = ys[i]
    if xs != on_stack:
        free(xs)
    return True


# OpenBLAS (SciPy's BLAS on Linux and Windows) runs a row-major A·Bᵀ with k < 32
# through its general path (packing, buffers taken under a lock) rather than its
# small-matrix kernels; with Bᵀ copied out first it takes the small A·B kernel.
# Measured on rnn_cell_backward: 15-20% faster at the notebook's sizes and up to
# 40% at (n_x, n_a, m) = (128, 256, 8); slower past m·n·k ≈ 1e6, where the small
# kernels stop and the copy is pure cost.
cdef inline size_t abt_work(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Elements of work gemm_abt(m, n, k, ...) uses to copy Bᵀ: n·k, or 0."""
    return n * k if 0 < k < 32 and <double>m * n * k <= 1e6 else 0


cdef inline void gemm_abt(blas_int m, blas_int n, blas_int k,
                          floating alpha, const floating* A, blas_int lda,
                          const floating* B, blas_int ldb,
                          floating beta, floating* C, blas_int ldc,
                          floating* work) noexcept nogil:
    """Row-major C[m×n] = alpha·A[m×k]·B[n×k]ᵀ + beta·C. work: abt_work(m, n, k)
    elements, or NULL (then no copy)."""
    cdef Py_ssize_t i, j
    if work == NULL or abt_work(m, n, k) == 0:
        gemm(False, True, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        return
    for i in range(n):
        for j in range(k):
            work[j * n + i] = B[i * ldb + j]
    gemm(False, False, m, n, k, alpha, A, lda, work, n, beta, C, ldc)


# Row-major C = Aᵀ·B with a large A (a weight matrix, k×m) and few columns n (the
# batch) is, in BLAS's column-major terms, a GEMM whose big operand is the
# transposed B. SciPy's OpenBLAS packs that operand with strided reads, which in
# double precision is slow once it outgrows the L2 cache: computing Cᵀ = Bᵀ·A
# instead (big operand as A, read contiguously) and transposing the small
# result was 1.2-2.4x faster for m·k >= 2^18 and n <= 256 (1 thread, this
# machine's AMD EPYC; per-step gradient shapes of n_a = 256-1024, m = 4-256),
# and no faster in single precision or for smaller weights, which keep the
# direct call.
cdef inline size_t atb_work(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                            bint double_precision) noexcept nogil:
    """Elements of work gemm_atb(m, n, k, ...) uses: m·n, or 0 (direct call)."""
    if double_precision and <double>m * k >= 262144 and n <= 256:
        return m * n
    return 0


cdef inline void gemm_atb(blas_int m, blas_int n, blas_int k,
                          floating alpha, const floating* A, blas_int lda,
                          const floating* B, blas_int ldb,
                          floating beta, floating* C, blas_int ldc,
                          floating* work) noexcept nogil:
    """Row-major C[m×n] = alpha·A[k×m]ᵀ·B[k×n] + beta·C. work: atb_work(m, n, k)
    elements, or NULL (then the direct call)."""
    cdef Py_ssize_t i, j
    if work == NULL or atb_work(m, n, k, sizeof(floating) == 8) == 0:
        gemm(True, False, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        return
    # work (n×m) = Bᵀ·A, then C = workᵀ (+ beta·C)
    gemm(True, False, n, m, k, alpha, B, ldb, A, lda, <floating>0, work, m)
    for i in range(m):
        for j in range(n):
            if beta == 0:
                C[i * ldc + j] = work[j * m + i]
            else:
                C[i * ldc + j] = work[j * m + i] + beta * C[i * ldc + j]


# The backward's recurrent GEMM, da = Wᵀ·dz, runs once per step with the same
# weights. In single precision SciPy's OpenBLAS packs the transposed weights
# with slow strided reads once m·n·k passes ~2^20 (below that its small-matrix
# kernels take the call either way), and the transposed-result trick of
# gemm_atb does not help; copying Wᵀ once per sequence and running a plain A·B
# each step was 1.1-1.9x faster per step (n_a = 64-1024, 4-256 batch columns,
# 1 thread; no gain at 1024 columns). The copy costs about one GEMM's worth of
# reads, so it is made only when the sequence has >= 256 columns in all.
cdef inline bint transpose_weights_once(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                        Py_ssize_t steps, bint double_precision) noexcept nogil:
    """True when `steps` calls of gemm_atb(m, n, k, ...) with one A should run as
    gemm_atb_pretransposed on a copy of Aᵀ instead."""
    return (not double_precision and n <= 256 and <double>m * n * k >= 1048576
            and steps * n >= 256)


cdef inline void gemm_atb_pretransposed(const floating* At, blas_int ldat, blas_int m,
                                        blas_int n, blas_int k, floating alpha,
                                        const floating* A, blas_int lda,
                                        const floating* B, blas_int ldb,
                                        floating beta, floating* C, blas_int ldc,
                                        floating* work) noexcept nogil:
    """gemm_atb(m, n, k, alpha, A, lda, ...), reading At (Aᵀ, m×k, rows ldat
    apart) instead of A when At is not NULL."""
    if At != NULL:
        gemm(False, False, m, n, k, alpha, At, ldat, B, ldb, beta, C, ldc)
    else:
        gemm_atb(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, work)


# The forward's recurrent product G (+)= W·A (W: rows×k weights, A: k×n states,
# few columns n) has two BLAS orientations: the row-major call above (in
# column-major terms, the states times Wᵀ: the weights are BLAS's B operand), or
# the transposed result S = Aᵀ·Wᵀ (the weights are BLAS's A operand) added into
# G transposed. Which is faster depends on the machine, the dtype and the shape
# (2-core Intel Xeon with AVX-512, SciPy's OpenBLAS SkylakeX: float64
# (4096 × 1024)·(1024 × 32) 0.86x the time transposed, float32 1.21x), so the
# engine times both on first use (src/_engine.pyx, forward plans).
cdef inline void gemm_transposed_result(blas_int m, blas_int n, blas_int k,
                                        const floating* A, blas_int lda,
                                        const floating* B, blas_int ldb,
                                        floating beta, floating* C, blas_int ldc,
                                        floating* S) noexcept nogil:
    """Row-major C[m×n] = A[m×k]·B[k×n] + beta·C computed as S[n×m] = Bᵀ·Aᵀ
    (S: n·m elements of scratch), then C = Sᵀ + beta·C in tiles."""
    cdef Py_ssize_t i, j, i0, i1
    if m <= 0 or n <= 0:
        return
    gemm(True, True, n, m, k, <floating>1, B, ldb, A, lda, <floating>0, S, m)
    # tiles of 32 rows of C: their strided reads of S stay in L1
    for i0 in range(0, m, 32):
        i1 = min(i0 + 32, m)
        for i in range(i0, i1):
            if beta == 0:
                for j in range(n):
                    C[i * ldc + j] = S[j * m + i]
            elif beta == 1:
                for j in range(n):
                    C[i * ldc + j] += S[j * m + i]
            else:
                for j in range(n):
                    C[i * ldc + j] = beta * C[i * ldc + j] + S[j * m + i]
