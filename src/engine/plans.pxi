# ------------------------------------------------------------------ forward plans
# The recurrent product of each forward step, G += W·a_prev, can run as the
# direct GEMM, as the transposed result added back (gemm_transposed_result in
# src/_blas.pxd), as GEMMs on blocks of rows of the weights (below), or, for a
# single column, as a matrix-vector product. Which is fastest depends on the
# machine, the dtype and the shape (an AVX-512 Xeon:
# float64 (4096 × 1024)·(1024 × 32) transposed 0.86x the time, float32 1.21x;
# one column of (4096 × 1024) weights: gemv 0.5x the time of the GEMM, of
# (512 × 128) weights 1.35x in float32), so the first call of a shape times the
# candidates (the real code, the transposition included) and every later call
# in the process reuses the choice. A plan depends on the problem's sizes only
# (the widest chunk, never n_threads), so results stay bit-identical across
# n_threads and with or without caches. Problems too small to repay a timing
# run (PLAN_MIN_MACS multiply-adds per step) and single steps run direct.
# CYRNN_FORWARD_PLAN=direct|transposed|gemv|rows256|rows128|rows64 pins one
# where it applies (e.g. for results identical across machines that would
# choose differently; gemv only for single columns, transposed only for
# several); the default is auto.
# The row-block plans run the direct GEMM in blocks of 256, 128 or 64 rows of
# the stacked weights: on the same Xeon (SciPy's OpenBLAS 0.3.30, 1
# thread) a step of 8 columns through n_a = 256 took 0.49x (float32) and 0.55x
# (float64) the time of the one GEMM in blocks of 256 rows, 16 columns through
# n_a = 512 0.52-0.69x in blocks of 64, while at 64 columns and more blocks were
# 0-50% slower: the best block moves with the shape, so it is timed too.
cdef enum:
    PLAN_DIRECT = 0
    PLAN_TRANSPOSED = 1
    PLAN_GEMV = 2
    PLAN_ROWS_256 = 3
    PLAN_ROWS_128 = 4
    PLAN_ROWS_64 = 5
    PLAN_AUTO = -1
    PLAN_MIN_MACS = 1 << 20

# How the candidates are timed: interleaved rounds of samples of at least
# PLAN_SAMPLE_MACS multiply-adds (~0.5 ms), after one untimed round, each plan
# scored by its fastest sample (this machine's noise only ever adds time).
# With 5 samples of ~0.3 ms scored by their median, processes timing the same
# shape disagreed (AVX-512 Xeon, 8 processes each): 2 chose a row-block plan
# for medium float64 and for wide float32, 1 for bigbatch float64, where the
# whole forward pass then ran 4-5% slower than direct; now 0 of 10 each. Plans
# that tie (long float32: rows128 or rows256) may still differ between runs:
# pin one (CYRNN_FORWARD_PLAN) for results identical from run to run.
cdef double PLAN_SAMPLE_MACS = 16e6
cdef int PLAN_ROUNDS = 7

FORWARD_PLANS = ("direct", "transposed", "gemv", "rows256", "rows128", "rows64")
cdef dict plan_cache = {}


def _plan_mode_from(value):
    if value in (None, "", "auto"):
        return PLAN_AUTO
    if value not in FORWARD_PLANS:
        raise ValueError(f"CYRNN_FORWARD_PLAN must be auto, {', '.join(FORWARD_PLANS)}; "
                         f"got {value!r}")
    return FORWARD_PLANS.index(value)


cdef int plan_mode = _plan_mode_from(os.environ.get("CYRNN_FORWARD_PLAN"))


def set_forward_plan(mode):
    """Pin the forward pass's recurrent-product plan for this process: "direct",
    "transposed" (several columns), "gemv" (single columns), "rows256",
    "rows128", "rows64" (GEMMs on blocks of that many rows), or "auto" (time
    the candidates per shape on first use, the default; also set by the
    environment variable CYRNN_FORWARD_PLAN). Returns the previous mode."""
    global plan_mode
    old = "auto" if plan_mode == PLAN_AUTO else FORWARD_PLANS[plan_mode]
    plan_mode = _plan_mode_from(mode)
    return old


def forward_plans():
    """The plans chosen so far in this process:
    {(dtype, gates·n_a, n_a, columns): one of FORWARD_PLANS}."""
    return {(("float32" if k[0] else "float64"),) + k[1:]: FORWARD_PLANS[v]
            for k, v in plan_cache.items()}


cdef inline Py_ssize_t plan_row_block(int plan) noexcept nogil:
    """The rows of each GEMM of a row-block plan, else 0 (one GEMM)."""
    return 256 >> (plan - PLAN_ROWS_256) if plan >= PLAN_ROWS_256 else 0


cdef inline int plan_applies(int plan, Py_ssize_t ms) noexcept nogil:
    """plan where it applies to chunks of ms columns, else PLAN_DIRECT."""
    if plan == PLAN_GEMV and ms != 1 or plan == PLAN_TRANSPOSED and ms < 2:
        return PLAN_DIRECT
    return plan


cdef void time_plan(floating dummy, const GateWeights* w, int gates, Py_ssize_t n_a,
                    Py_ssize_t ms, const floating* a, floating* G, floating* scratch,
                    bint use_gemv, Py_ssize_t row_block, int reps) noexcept nogil:
    """reps recurrent products under one plan (the caller times them)."""
    cdef int i
    for i in range(reps):
        gates_product(w, True, 0, gates, n_a, n_a, ms, a, ms, <floating>1, G, ms, scratch,
                      use_gemv, row_block)


cdef int choose_plan(bint single, int gates, Py_ssize_t n_a, Py_ssize_t ms):
    """The fastest plan for this shape on this machine, timed once."""
    import time
    key = (single, gates * n_a, n_a, ms)
    cached = plan_cache.get(key)
    if cached is not None:
        return cached
    cdef int tn = cnp.NPY_FLOAT if single else cnp.NPY_DOUBLE
    rng = np.random.default_rng(0)
    W = rng.uniform(-0.1, 0.1, (gates * n_a, n_a)).astype(np.float32 if single else np.float64)
    cdef int other = PLAN_GEMV if ms == 1 else PLAN_TRANSPOSED
    a, G = new_zeros(tn, n_a, ms), new_zeros(tn, gates * n_a, ms)
    S = new_zeros(tn, gates * n_a, ms) if other == PLAN_TRANSPOSED else None
    cdef GateWeights w
    w.blocks, w.block_rows, w.on_concat = 1, gates * n_a, False
    w.Wa[0], w.ldwa[0] = data(W), n_a
    cdef int reps = max(1, <int>(PLAN_SAMPLE_MACS / (<double>gates * n_a * n_a * ms)))
    cdef int plan, rnd
    cdef void* scratch
    cdef bint use_gemv
    cdef Py_ssize_t row_block
    cdef void* pa = <void*>data(a)
    cdef void* pG = <void*>data(G)
    seconds = {plan: [] for plan in (PLAN_DIRECT, other, PLAN_ROWS_256, PLAN_ROWS_128,
                                     PLAN_ROWS_64)
               if plan_row_block(plan) < gates * n_a}
    for rnd in range(PLAN_ROUNDS + 1):
        for plan in seconds:
            scratch = <void*>data(S) if plan == PLAN_TRANSPOSED else NULL
            use_gemv = plan == PLAN_GEMV
            row_block = plan_row_block(plan)
            start = time.perf_counter()
            with nogil:
                if single:
                    time_plan[float](0, &w, gates, n_a, ms, <float*>pa, <float*>pG,
                                     <float*>scratch, use_gemv, row_block, reps)
                else:
                    time_plan[double](0, &w, gates, n_a, ms, <double*>pa, <double*>pG,
                                      <double*>scratch, use_gemv, row_block, reps)
            if rnd > 0:     # (round 0 warms every plan up: OpenBLAS's buffers, the caches)
                seconds[plan].append(time.perf_counter() - start)
    # another plan only when clearly faster
    fastest = {plan: min(times) for plan, times in seconds.items()}
    best = min(fastest, key=fastest.get)
    if fastest[best] >= 0.95 * fastest[PLAN_DIRECT]:
        best = PLAN_DIRECT
    # the first choice stored wins (threads timing one shape at once all use it)
    return plan_cache.setdefault(key, best)


cdef int forward_plan(const Forward* r) except -1:
    """The plan of r's recurrent products (r's sizes and weights filled in)."""
    cdef Py_ssize_t n = n_chunks(r.m)
    cdef Py_ssize_t ms = (r.m + n - 1) // n if n > 0 else 0
    if r.w.blocks != 1 or ms < 1 or r.T < 2 or plan_mode == PLAN_DIRECT:
        return PLAN_DIRECT
    if plan_mode != PLAN_AUTO:
        return plan_applies(plan_mode, ms)
    if <double>r.cell.gates * r.n_a * r.n_a * ms < PLAN_MIN_MACS:
        return PLAN_DIRECT
    return choose_plan(r.single, r.cell.gates, r.n_a, ms)
