# ------------------------------------------------------------------ run modes
# Where a forward call keeps its time-major (rows, T, m) buffers, chosen once
# per call (choose_run_mode) from the call's sizes; the buffers follow from it
# (prepare_forward) and the drivers read nothing else to know how to run.
# Every mode computes the same GEMMs and kernels: results are bit-identical
# across modes.
#
# | mode               | when                                       | buffers beyond the outputs          |
# |--------------------|--------------------------------------------|-------------------------------------|
# | RUN_IN_BUFFERS     | caches kept (not narrow and large, with    | G, A, C, X for all T steps: the     |
# |                    | lengths always); the                       | caches (rows T·m apart), or pooled  |
# |                    | cell functions; inference of wide batches  | scratch (rows scratch_ld apart);    |
# |                    | whose scratch fits SCRATCH_BYTES (the RNN; | the blocks are windows of them      |
# |                    | rule or pin), and of small ones whose      |                                     |
# |                    | scratch fits the caches, where faster      |                                     |
# |                    | than blocks (measured)                     |                                     |
# | RUN_COPIED_CACHES  | caches kept, narrow batch (rows under      | the caches; the blocks run in the   |
# |                    | NARROW_ROW_BYTES per step), caches over    | workspace and are copied into them  |
# |                    | COPIED_MIN_BYTES                           | whole                               |
# | RUN_STATE_BUFFERS  | inference with lengths (packed); a         | A (the time-major `out`, or packed) |
# |                    | time-major `out` (a model's inner layers); | and C only (with lengths the packed |
# |                    | inference of wide batches whose states fit | x too); blocks in the workspace     |
# |                    | SCRATCH_BYTES (not split; the gated cells  | stream their states there           |
# |                    | where both fit: rule or pin)               |                                     |
# | RUN_BLOCKS         | other inference (outputs under            | the workspace only: each block's    |
# |                    | CACHED_OUTPUT_BYTES, narrow batches, too   | outputs go out block by block       |
# |                    | large; small ones where faster, measured)  |                                     |
#
# The workspace (workspace_size) is one block of steps per thread, except in
# RUN_IN_BUFFERS. Split runs (split.pxi) execute every mode by parts (state
# buffers only for a time-major `out`). The size rules and their measurements:
# benchmarks/README.md, "memory modes".
cdef enum RunMode:
    RUN_IN_BUFFERS = 0
    RUN_COPIED_CACHES = 1
    RUN_STATE_BUFFERS = 2
    RUN_BLOCKS = 3

cdef enum:
    NARROW_ROW_BYTES = 512
    RUN_WIDE_RULE = -2      # choose_run_mode: state buffers or scratch, by rule or pin
    RUN_MEASURED_SMALL = -3  # choose_run_mode: time blocks against scratch
    MODE_MIN_MACS = 1 << 20     # smaller problems run in blocks, untimed

# Small problems whose whole scratch stays in the CPU's caches
# (SMALL_SCRATCH_BYTES; else blocks) run in blocks or in that scratch: the first
# call of a shape times both, whole, on the call's own weights and inputs, each
# by its fastest of MODE_ROUNDS samples after an untimed one, and the process
# keeps the choice (which is faster differs between cells and CPUs). Wide
# inference whose state buffers and scratch both fit runs by rule: the gated
# cells in state buffers (a third of the memory), the RNN, whose scratch is its
# states and inputs, in scratch (timings of a call's first steps chose wrongly:
# benchmarks/README.md, "the house"). CYRNN_INFERENCE_MODE=states (the steps in
# blocks of a workspace) or scratch pins either choice.
cdef int MODE_ROUNDS = 3
cdef double SMALL_SCRATCH_BYTES = 1024.0 * 1024
cdef dict mode_cache = {}
INFERENCE_MODES = ("auto", "states", "scratch")


def _inference_mode_from(value):
    if value in (None, ""):
        return "auto"
    if value not in INFERENCE_MODES:
        raise ValueError(f"CYRNN_INFERENCE_MODE must be one of {', '.join(INFERENCE_MODES)}; "
                         f"got {value!r}")
    return value


cdef str inference_mode = _inference_mode_from(os.environ.get("CYRNN_INFERENCE_MODE"))


def set_inference_mode(mode):
    """Pin how inference keeps its states where two ways fit (above): "states"
    (the steps in blocks of a workspace, wide batches' states in state
    buffers), "scratch" (every time-major buffer in pooled scratch) or "auto"
    (the default: timed for small problems, by rule for wide ones; also the
    environment variable CYRNN_INFERENCE_MODE). The results are the same bits
    either way. Returns the previous mode."""
    global inference_mode
    old, inference_mode = inference_mode, _inference_mode_from(mode)
    return old


cdef Py_ssize_t steps_bucket(Py_ssize_t T):
    """The power of two at or above T: one timing of the memory modes serves
    every step count of its bucket (a service's requests of many lengths would
    otherwise time each length's first call)."""
    cdef Py_ssize_t bucket = 1
    while bucket < T:
        bucket *= 2
    return bucket


def inference_modes():
    """The modes chosen so far in this process: {(cell, dtype, n_x, n_a, n_y, m,
    T bucket: the power of two at or above T): "states", "blocks" or "scratch"}."""
    names = {RUN_STATE_BUFFERS: "states", RUN_BLOCKS: "blocks", RUN_IN_BUFFERS: "scratch"}
    return {k: names[v] for k, v in mode_cache.items()}


cdef int measured_mode(CellInfo info, int tn, object x, object a0, object c0, list params,
                       const Forward* r, int measured):
    """For RUN_WIDE_RULE (RUN_MEASURED_SMALL): RUN_STATE_BUFFERS (RUN_BLOCKS) or
    RUN_IN_BUFFERS, pinned, by rule, known for the shape, or timed now (above)."""
    import time
    cdef int steps_way = RUN_STATE_BUFFERS if measured == RUN_WIDE_RULE else RUN_BLOCKS
    if inference_mode != "auto":
        return steps_way if inference_mode == "states" else RUN_IN_BUFFERS
    if measured == RUN_WIDE_RULE:
        return RUN_IN_BUFFERS if r.cell.gates_are_state else RUN_STATE_BUFFERS
    key = (info.cell.name if info.spec.kind != CELL_GRU_RESET_BEFORE else "gru_reset_before",
           "float32" if r.single else "float64", r.n_x, r.n_a, r.n_y, r.m, steps_bucket(r.T))
    cached = mode_cache.get(key)
    if cached is not None:
        return cached
    cdef Forward trial
    cdef int mode, rnd
    seconds = {steps_way: [], RUN_IN_BUFFERS: []}
    global split_run_count
    cdef Py_ssize_t counted = split_run_count       # (trials do not count as calls)
    for rnd in range(MODE_ROUNDS + 1):
        for mode in seconds:
            out = prepare_forward(info, tn, x, a0, c0, params, False, r.reverse, &trial, None,
                                  mode)
            start = time.perf_counter()
            run_forward(&trial, (x, a0, c0, params, out), 1, 0)
            if rnd > 0:
                seconds[mode].append(time.perf_counter() - start)
    split_run_count = counted
    # scratch (more memory) only when clearly faster
    best = steps_way
    if min(seconds[RUN_IN_BUFFERS]) < 0.97 * min(seconds[steps_way]):
        best = RUN_IN_BUFFERS
    return mode_cache.setdefault(key, best)

cdef double SCRATCH_BYTES = 512.0 * 1024 * 1024
cdef double CACHED_OUTPUT_BYTES = 4.0 * 1024 * 1024
cdef double COPIED_MIN_BYTES = 4.0 * 1024 * 1024

# Test hooks: counts of the paths taken so far in this process.
cdef Py_ssize_t split_run_count = 0
cdef Py_ssize_t state_buffer_runs = 0
cdef Py_ssize_t stacking_copies = 0
cdef Py_ssize_t weight_packings = 0


def _set_limits(**limits):
    """Set the memory modes' size limits (tests and benchmarks force each mode:
    scratch_bytes, cached_output_bytes, copied_min_bytes); returns the previous
    values, to restore them."""
    global SCRATCH_BYTES, CACHED_OUTPUT_BYTES, COPIED_MIN_BYTES
    old = {"scratch_bytes": SCRATCH_BYTES, "cached_output_bytes": CACHED_OUTPUT_BYTES,
           "copied_min_bytes": COPIED_MIN_BYTES}
    unknown = set(limits) - set(old)
    if unknown:
        raise TypeError(f"unknown limits {sorted(unknown)}; known: {sorted(old)}")
    SCRATCH_BYTES = limits.get("scratch_bytes", SCRATCH_BYTES)
    CACHED_OUTPUT_BYTES = limits.get("cached_output_bytes", CACHED_OUTPUT_BYTES)
    COPIED_MIN_BYTES = limits.get("copied_min_bytes", COPIED_MIN_BYTES)
    return old


def _path_counts():
    """How many calls so far ran split, streamed their states into state
    buffers, copied gate weights into a stacked matrix, or packed them for the
    packed plan (tests check that sizes take a path, and that prepared
    parameters are not copied)."""
    return {"split_runs": split_run_count, "state_buffer_runs": state_buffer_runs,
            "stacking_copies": stacking_copies, "weight_packings": weight_packings}


# A single step (T = 1: the cell functions) whose weights act on [a_prev; x]
# runs one GEMM on that concatenation instead of one per operand.
cdef inline bint uses_concat(const CellSpec* cell, const GateWeights* w,
                             Py_ssize_t T) noexcept nogil:
    return T == 1 and w.on_concat and cell.concat_step


cdef int choose_run_mode(const Forward* r, bint keep_caches, bint states_out) noexcept:
    """The run mode of r (sizes, weights and plan filled in; table above).
    keep_caches: the caller keeps the caches; states_out: the states go to a
    time-major `out` (_run_direction)."""
    cdef double item = item_size(r), columns = <double>r.T * r.m
    cdef bint narrow = r.m * item < NARROW_ROW_BYTES
    cdef double scratch, states, outputs
    if r.offsets != NULL:
        # packed columns: the caches, or without them packed state buffers
        return RUN_IN_BUFFERS if keep_caches else RUN_STATE_BUFFERS
    if states_out:
        # the given time-major out is the state buffer: no gates kept
        return RUN_STATE_BUFFERS
    if keep_caches:
        if (narrow and not uses_concat(&r.cell, &r.w, r.T)
                and block_rows(r) * columns * item >= COPIED_MIN_BYTES):
            return RUN_COPIED_CACHES
        return RUN_IN_BUFFERS
    outputs = ((2 if r.cell.has_c else 1) * r.n_a + r.n_y) * columns * item
    scratch = ((r.cell.blocks + (0 if r.cell.gates_are_state else 1) + r.cell.has_c) * r.n_a
               + r.n_x) * columns * item
    if narrow or outputs <= CACHED_OUTPUT_BYTES:
        if (scratch <= min(SMALL_SCRATCH_BYTES, SCRATCH_BYTES)
                and <double>r.cell.gates * r.n_a * (r.n_a + r.n_x) * columns >= MODE_MIN_MACS):
            return RUN_MEASURED_SMALL   # a scratch in the CPU's caches may beat blocks
        return RUN_BLOCKS
    states = (1 + r.cell.has_c) * r.n_a * columns * item
    if states <= SCRATCH_BYTES and not runs_split(r) and scratch <= SCRATCH_BYTES:
        return RUN_WIDE_RULE    # both fit: the rule below, or a pinned mode
    if states <= SCRATCH_BYTES and not runs_split(r):
        return RUN_STATE_BUFFERS
    return RUN_IN_BUFFERS if scratch <= SCRATCH_BYTES else RUN_BLOCKS


cdef inline size_t plan_scratch(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Elements the recurrent product's plan needs per chunk of ms columns."""
    if r.plan == PLAN_PACKED:
        return packed_scratch(r.single, r.n_a, ms) * packed_parts(r)
    return r.cell.gates * r.n_a * ms if r.plan == PLAN_TRANSPOSED and r.w.blocks == 1 else 0


cdef inline size_t workspace_size(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Elements of workspace a chunk of ms columns needs: a block's buffers
    (except in RUN_IN_BUFFERS), the plan's scratch, concat for a single step."""
    cdef size_t extra = (r.n_a + r.n_x) * ms if (uses_concat(&r.cell, &r.w, r.T)
                                                 and r.offsets == NULL) else 0
    extra += plan_scratch(r, ms)
    if r.mode == RUN_IN_BUFFERS:
        return extra
    return (block_rows(r) - (r.n_x if r.x_time_major else 0)) * block_ld(r, ms) \
        + 2 * r.n_a * ms + extra


cdef inline size_t chunk_workspace(const Forward* r) noexcept nogil:
    """Workspace elements for the widest chunk (balanced bounds, with lengths,
    can be wider than an even split's)."""
    cdef Py_ssize_t n = n_chunks(r.m), widest = (r.m + n - 1) // n if n > 0 else 0, k
    if r.bounds != NULL:
        for k in range(n):
            widest = max(widest, r.bounds[k + 1] - r.bounds[k])
    return workspace_size(r, widest) if n > 0 else 0
