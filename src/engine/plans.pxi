# ------------------------------------------------------------------ recurrent-product plans
# The recurrent product of each forward step runs under one of the plans of
# src/_product.pxd. Which is fastest depends on the machine, the dtype and the
# shape, so the first call of a shape times the candidates (the real code, the
# transposition included) and every later call in the process reuses the
# choice. A plan depends on the problem's sizes only (the widest chunk, never
# n_threads), so results stay bit-identical across n_threads and with or
# without caches. Problems too small to repay a timing run (PLAN_MIN_MACS
# multiply-adds per step) run direct, or packed when narrow (below); single
# steps run direct.
# CYRNN_FORWARD_PLAN=direct|transposed|gemv|rows256|rows128|rows64|packed pins
# one where it applies (gemv only for single columns, transposed only for
# several), e.g. for results identical across machines that would choose
# differently. The packed plan is cyrnn's own kernel (cyrnn_packed.h): the
# weights packed once per call, each panel's product fused with the cell's
# kernel; it is timed on its product alone, like the others.
cdef enum:
    PLAN_AUTO = -1
    PLAN_MIN_MACS = 1 << 20
    # below PLAN_MIN_MACS the packed plan runs batches of at most this many
    # columns, this many steps or more, on weights of this many elements or more
    # (benchmarks/README.md, "the packed plan": single sequences 8-23% faster,
    # notebook sizes 10-37% slower)
    PACKED_SMALL_COLUMNS = 8
    PACKED_SMALL_STEPS = 8
    PACKED_SMALL_WEIGHTS = 1024

# Candidates are timed in interleaved rounds of samples of at least
# PLAN_SAMPLE_MACS multiply-adds (~0.5 ms) after one untimed round, each scored
# by its fastest sample: noise only ever adds time (benchmarks/README.md, "the
# planner"). Plans that tie may still differ between runs: pin one for results
# identical from run to run.
cdef double PLAN_SAMPLE_MACS = 16e6
cdef int PLAN_ROUNDS = 7

FORWARD_PLANS = ("direct", "transposed", "gemv", "rows256", "rows128", "rows64", "packed")
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
    "rows128", "rows64" (GEMMs on blocks of that many rows), "packed" (cyrnn's
    kernel on weights packed once per call), or "auto" (time
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


cdef inline int plan_applies(int plan, Py_ssize_t ms) noexcept nogil:
    """plan where it applies to chunks of ms columns, else PLAN_DIRECT."""
    if plan == PLAN_GEMV and ms != 1 or plan == PLAN_TRANSPOSED and ms < 2:
        return PLAN_DIRECT
    return plan


cdef void time_plan(floating dummy, const GateWeights* w, const Product* p, int gates,
                    Py_ssize_t n_a, Py_ssize_t ms, const floating* a, floating* G,
                    int reps) noexcept nogil:
    """reps recurrent products under one plan (the caller times them)."""
    cdef int i
    for i in range(reps):
        recurrent_product(p, w, 0, gates, n_a, ms, a, ms, G, ms)


cdef object packed_weights(const GateWeights* w, bint single, Py_ssize_t n_a, int passes,
                           const int* q0, const int* q1, const PackedWeights** out):
    """The recurrent weights packed for the packed plan, `passes` passes of
    gates q0[i]..q1[i]-1: a buffer (the caller keeps it alive) holding the
    PackedWeights it points *out at, then each pass's panels 64-byte aligned."""
    cdef size_t item = sizeof(float) if single else sizeof(double)
    cdef PackedWeights pw
    cdef size_t offsets[2]
    cdef size_t total = (sizeof(PackedWeights) + 63) // 64 * 64
    cdef int i
    pw.passes = passes
    for i in range(passes):
        pw.pass_[i].q0, pw.pass_[i].gates = q0[i], q1[i] - q0[i]
        pw.pass_[i].units = packed_units(single, q1[i] - q0[i])
        pw.pass_[i].panels = (n_a + pw.pass_[i].units - 1) // pw.pass_[i].units
        pw.pass_[i].k = n_a
        offsets[i] = total
        total += (packed_size(&pw.pass_[i]) * item + 63) // 64 * 64
    holder = new_array(cnp.NPY_UINT8, total + 64, 1)     # (pooled: no fresh pages per call)
    cdef char* base = <char*>data(holder)
    base += (64 - <size_t>base % 64) % 64
    for i in range(passes):
        pw.pass_[i].data = base + offsets[i]
    memcpy(base, &pw, sizeof(PackedWeights))
    with nogil:
        for i in range(passes):
            if single:
                pack_pass[float](0, w, n_a, &pw.pass_[i], <float*>(base + offsets[i]))
            else:
                pack_pass[double](0, w, n_a, &pw.pass_[i], <double*>(base + offsets[i]))
    out[0] = <const PackedWeights*>base
    return holder


cdef class PackedCache:
    """One model direction's packed recurrent weights, kept between its calls
    (cyrnn/models/model.py): reused while a call's parameter arrays are the
    very objects they were packed from (held here, so no other array can take
    their memory; the Model keeps them read-only) and the layout (units per
    panel: the instruction-set level's) is the same."""
    cdef tuple arrays
    cdef object holder
    cdef const PackedWeights* packed
    cdef bint single

    def __reduce__(self):
        return (PackedCache, ())        # (a copy, e.g. on a Dask worker, packs afresh)

    @property
    def filled(self):
        return self.holder is not None


cdef bint packed_cache_fits(PackedCache cache, const Forward* r, list params, int passes,
                            const int* q0, const int* q1):
    if cache.holder is None or cache.single != r.single or cache.packed.passes != passes or \
            len(cache.arrays) != len(params):
        return False
    cdef int i
    cdef const PackedPass* pk
    for i in range(passes):
        pk = &cache.packed.pass_[i]
        if pk.q0 != q0[i] or pk.gates != q1[i] - q0[i] or pk.k != r.n_a or \
                pk.units != packed_units(r.single, q1[i] - q0[i]):
            return False
    return all(kept is given for kept, given in zip(cache.arrays, params))


cdef object pack_for_plan(Forward* r, list params=None, PackedCache cache=None):
    """r's recurrent weights packed when its plan is the packed one (r.packed
    set; returns what keeps them alive), else None. With `cache` (and the
    call's `params`), weights packed by an earlier call of the same arrays are
    reused, and new ones kept there."""
    cdef int q0[2]
    cdef int q1[2]
    cdef int i, passes = step_passes(&r.cell)
    r.packed = NULL
    if r.plan != PLAN_PACKED:
        return None
    for i in range(passes):
        pass_gates(&r.cell, i, &q0[i], &q1[i])
    if cache is not None and packed_cache_fits(cache, r, params, passes, q0, q1):
        r.packed = cache.packed
        return cache.holder
    global weight_packings
    weight_packings += 1
    holder = packed_weights(&r.w, r.single, r.n_a, passes, q0, q1, &r.packed)
    if cache is not None:
        cache.arrays, cache.holder, cache.packed, cache.single = \
            tuple(params), holder, r.packed, r.single
    return holder


PACKED_ISAS = ("sse2", "avx2", "avx512")


def packed_isa():
    """The instruction set the packed plan's kernel runs on this machine."""
    return cyrnn_packed_isa().decode()


def _use_packed_isa(name):
    """Tests: run the packed kernel at a lower x86-64 level than this machine's
    best ("sse2", "avx2"; None: the best), where the build has the levels side
    by side. Returns the ISA now in force."""
    cyrnn_packed_use_level(-1 if name is None else PACKED_ISAS.index(name))
    plan_cache.clear()      # (a choice timed at another level would not hold)
    return packed_isa()


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
    # the transposed plan's result, the packed plan's packed columns
    S = new_zeros(tn, max(gates * n_a * ms if other == PLAN_TRANSPOSED else 0,
                          packed_scratch(single, n_a, ms)), 1)
    cdef GateWeights w
    w.blocks, w.block_rows, w.on_concat = 1, gates * n_a, False
    w.Wa[0], w.ldwa[0] = data(W), n_a
    cdef int reps = max(1, <int>(PLAN_SAMPLE_MACS / (<double>gates * n_a * n_a * ms)))
    cdef int plan, rnd
    cdef Product p
    cdef void* pa = <void*>data(a)
    cdef void* pG = <void*>data(G)
    cdef const PackedWeights* packed
    cdef int q0 = 0, q1 = gates
    packing = packed_weights(&w, single, n_a, 1, &q0, &q1, &packed)
    seconds = {plan: [] for plan in (PLAN_DIRECT, other, PLAN_ROWS_256, PLAN_ROWS_128,
                                     PLAN_ROWS_64, PLAN_PACKED)
               if plan_row_block(plan) < gates * n_a}
    for rnd in range(PLAN_ROUNDS + 1):
        for plan in seconds:
            p = product_of(plan, <void*>data(S), packed)
            start = time.perf_counter()
            with nogil:
                if single:
                    time_plan[float](0, &w, &p, gates, n_a, ms, <float*>pa, <float*>pG, reps)
                else:
                    time_plan[double](0, &w, &p, gates, n_a, ms, <double*>pa, <double*>pG,
                                      reps)
            if rnd > 0:     # (round 0 warms every plan up: OpenBLAS's buffers, the caches)
                seconds[plan].append(time.perf_counter() - start)
    # another plan only when clearly faster than the packed one (which also
    # splits a narrow batch's steps among threads, where the others cannot)
    fastest = {plan: min(times) for plan, times in seconds.items()}
    best = min(fastest, key=fastest.get)
    if fastest[best] >= 0.95 * fastest[PLAN_PACKED]:
        best = PLAN_PACKED
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
        # not worth a timing run; on narrow batches the packed kernel saves each
        # step's BLAS call (its fixed cost) where the weights repay their packing
        return (PLAN_PACKED if ms <= PACKED_SMALL_COLUMNS and r.T >= PACKED_SMALL_STEPS
                and r.cell.gates * r.n_a * r.n_a >= PACKED_SMALL_WEIGHTS else PLAN_DIRECT)
    return choose_plan(r.single, r.cell.gates, r.n_a, ms)
