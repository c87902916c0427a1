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
# |                    | whose scratch fits SCRATCH_BYTES (the RNN) | the blocks are windows of them      |
# | RUN_COPIED_CACHES  | caches kept, narrow batch (rows under      | the caches; the blocks run in the   |
# |                    | NARROW_ROW_BYTES per step), caches over    | workspace and are copied into them  |
# |                    | COPIED_MIN_BYTES                           | whole                               |
# | RUN_STATE_BUFFERS  | inference with lengths (packed); a         | A (the time-major `out`, or packed) |
# |                    | time-major `out` (a model's inner layers); | and C only (with lengths the packed |
# |                    | inference of wide batches whose states fit | x too); blocks in the workspace     |
# |                    | SCRATCH_BYTES (gated cells; the RNN beyond | stream their states there           |
# |                    | its scratch), not split                    |                                     |
# | RUN_BLOCKS         | other inference (outputs under            | the workspace only: each block's    |
# |                    | CACHED_OUTPUT_BYTES, narrow batches, too   | outputs go out block by block       |
# |                    | large)                                     |                                     |
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

cdef double SCRATCH_BYTES = 512.0 * 1024 * 1024
cdef double CACHED_OUTPUT_BYTES = 4.0 * 1024 * 1024
cdef double COPIED_MIN_BYTES = 4.0 * 1024 * 1024

# Test hooks: counts of the paths taken so far in this process.
cdef Py_ssize_t split_run_count = 0
cdef Py_ssize_t state_buffer_runs = 0
cdef Py_ssize_t stacking_copies = 0


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
    buffers, or copied gate weights into a stacked matrix (tests check that
    sizes take a path, and that prepared parameters are not copied)."""
    return {"split_runs": split_run_count, "state_buffer_runs": state_buffer_runs,
            "stacking_copies": stacking_copies}


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
    if narrow or outputs <= CACHED_OUTPUT_BYTES:
        return RUN_BLOCKS
    scratch = ((r.cell.blocks + (0 if r.cell.gates_are_state else 1) + r.cell.has_c) * r.n_a
               + r.n_x) * columns * item
    states = (1 + r.cell.has_c) * r.n_a * columns * item
    if (states <= SCRATCH_BYTES and not runs_split(r)
            and (not r.cell.gates_are_state or scratch > SCRATCH_BYTES)):
        return RUN_STATE_BUFFERS
    return RUN_IN_BUFFERS if scratch <= SCRATCH_BYTES else RUN_BLOCKS


cdef inline size_t plan_scratch(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Elements the recurrent product's plan needs per chunk of ms columns."""
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
