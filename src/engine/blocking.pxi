"""Chunks and blocks: how a call cuts its batch into column chunks and its steps
into blocks. A function of the problem's sizes only, so every way of running it
computes the same GEMMs (results bit-identical across n_threads and cache)."""

# ------------------------------------------------------------------ the plan
# What a call computes depends on m only (never on n_threads or caches), so
# results are bit-identical whatever the number of threads and with or
# without caches: the batch is cut into chunks of at least MIN_CHUNK columns
# (at most MAX_CHUNKS chunks), and each chunk runs its steps in blocks of
# block_steps(). Per-step GEMMs narrower than ~256 columns lose 5-25% of
# their speed (float64) and 20-55% (float32) against 1024 columns on the
# bench machines' OpenBLAS, so chunks stay at least this wide; narrower
# batches run as one chunk.
cdef enum:
    MIN_CHUNK = 1024
    MAX_CHUNKS = 16


cdef inline Py_ssize_t n_chunks(Py_ssize_t m) noexcept nogil:
    """How many column chunks a batch of m runs in (0 for an empty batch)."""
    if m <= 0:
        return 0
    return max(1, min(<Py_ssize_t>MAX_CHUNKS, m // MIN_CHUNK))


def chunk_bounds(Py_ssize_t m):
    """The plan's column chunks of a batch of m, as [(first, end), ...]."""
    cdef Py_ssize_t n = n_chunks(m), k
    return [(chunk_start(m, k, n), chunk_start(m, k + 1, n)) for k in range(n)]


cdef inline Py_ssize_t chunk_start(Py_ssize_t m, Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    return m * k // n


# Steps per block. A block's input projection is one GEMM over the block's
# steps when they are contiguous columns (the chunk is the whole batch): the
# more columns the better, in float32 especially (medium LSTM forward: blocks
# of 2048 columns 5% slower than one GEMM over all 6400), so blocks take
# BLOCK_COLUMNS, their buffers capped at BLOCK_BYTES. Blocks of at least
# MIN_BLOCK_STEPS steps move whole 64-byte lines of the user's (n, m, T)
# arrays when inputs are gathered and outputs scattered block by block
# (blocks of one step made bigbatch inference 13% slower). Batches under
# SMALL_BATCH columns take blocks of SMALL_BLOCK_COLUMNS when such a block
# fits the L2 cache (SMALL_BLOCK_BYTES): it then stays there across the
# block's steps (LSTM inference at m = 8-16 ran 9-19% slower in blocks of 256
# columns than of 64); with larger weights (the wide shape) it would not, and
# the input projection's GEMMs want the columns (64-column blocks: wide
# forward 6-7% slower).
cdef enum:
    NARROW_ROW_BYTES = 512      # (see SCRATCH_BYTES)
    SMALL_BATCH = 64
    SMALL_BLOCK_COLUMNS = 64
    SMALL_BLOCK_BYTES = 1 << 20
    BLOCK_COLUMNS = 8192
    BLOCK_BYTES = 64 << 20
    MIN_BLOCK_STEPS = 8


cdef inline Py_ssize_t block_rows(const Forward* r) noexcept nogil:
    """Rows of the time-major buffers a block holds: gates, states, inputs."""
    return (r.cell.blocks * r.n_a + (0 if r.cell.gates_are_state else r.n_a)
            + (r.n_a if r.cell.has_c else 0) + r.n_x)


cdef inline Py_ssize_t block_steps(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Steps per block for a chunk of ms columns: a function of the problem's
    sizes only, so every way of running it computes the same GEMMs."""
    cdef Py_ssize_t item = 4 if r.single else 8
    cdef Py_ssize_t columns = BLOCK_COLUMNS
    if ms < SMALL_BATCH and block_rows(r) * SMALL_BLOCK_COLUMNS * item <= SMALL_BLOCK_BYTES:
        columns = SMALL_BLOCK_COLUMNS
    cdef Py_ssize_t tb = max((columns + ms - 1) // ms if ms > 0 else 1,
                             <Py_ssize_t>MIN_BLOCK_STEPS)
    cdef Py_ssize_t step_bytes = block_rows(r) * ms * item
    if step_bytes > 0:
        tb = min(tb, max(<Py_ssize_t>1, BLOCK_BYTES // step_bytes))
    return max(1, min(tb, r.T))
