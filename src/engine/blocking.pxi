# ------------------------------------------------------------------ chunks and blocks
# How a call cuts its batch into column chunks and its steps into blocks: a
# function of the problem's sizes only (never n_threads or caches), so every
# way of running it computes the same GEMMs and results are bit-identical
# whatever the number of threads and with or without caches.
#
# Chunks: at least MIN_CHUNK columns (at most MAX_CHUNKS of them); narrower
# batches run as one chunk, since per-step GEMMs lose speed below a few hundred
# columns (benchmarks/README.md, "chunks").
cdef enum:
    MIN_CHUNK = 1024
    MAX_CHUNKS = 16


cdef inline Py_ssize_t n_chunks(Py_ssize_t m) noexcept nogil:
    """How many column chunks a batch of m runs in (0 for an empty batch)."""
    if m <= 0:
        return 0
    return max(1, min(<Py_ssize_t>MAX_CHUNKS, m // MIN_CHUNK))


cdef inline Py_ssize_t chunk_start(Py_ssize_t m, Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    return m * k // n


def chunk_bounds(Py_ssize_t m):
    """The column chunks of a batch of m, as [(first, end), ...]."""
    cdef Py_ssize_t n = n_chunks(m), k
    return [(chunk_start(m, k, n), chunk_start(m, k + 1, n)) for k in range(n)]


# Blocks of steps: a block's input projection is one GEMM over its steps when
# they are contiguous columns, so blocks take BLOCK_COLUMNS columns, their
# buffers capped at BLOCK_BYTES; at least MIN_BLOCK_STEPS steps, so gathers and
# scatters move whole 64-byte lines of the user's (n, m, T) arrays. Batches
# under SMALL_BATCH columns take SMALL_BLOCK_COLUMNS when such a block fits
# the L2 cache (SMALL_BLOCK_BYTES) and so stays there across its steps.
# (benchmarks/README.md, "blocks of steps".)
cdef enum:
    SMALL_BATCH = 64
    SMALL_BLOCK_COLUMNS = 64
    SMALL_BLOCK_BYTES = 1 << 20
    BLOCK_COLUMNS = 8192
    BLOCK_BYTES = 64 << 20
    MIN_BLOCK_STEPS = 8


cdef inline Py_ssize_t item_size(const Forward* r) noexcept nogil:
    return 4 if r.single else 8


cdef inline Py_ssize_t block_rows(const Forward* r) noexcept nogil:
    """Rows of the time-major buffers a block holds: gates, states, inputs."""
    return (r.cell.blocks * r.n_a + (0 if r.cell.gates_are_state else r.n_a)
            + (r.n_a if r.cell.has_c else 0) + r.n_x)


cdef inline Py_ssize_t block_steps(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Steps per block for a chunk of ms columns."""
    cdef Py_ssize_t item = item_size(r)
    cdef Py_ssize_t columns = BLOCK_COLUMNS
    if ms < SMALL_BATCH and block_rows(r) * SMALL_BLOCK_COLUMNS * item <= SMALL_BLOCK_BYTES:
        columns = SMALL_BLOCK_COLUMNS
    cdef Py_ssize_t tb = max((columns + ms - 1) // ms if ms > 0 else 1,
                             <Py_ssize_t>MIN_BLOCK_STEPS)
    cdef Py_ssize_t step_bytes = block_rows(r) * ms * item
    if step_bytes > 0:
        tb = min(tb, max(<Py_ssize_t>1, BLOCK_BYTES // step_bytes))
    return max(1, min(tb, r.T))


cdef inline Py_ssize_t block_ld(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Row stride of a block's buffers in the workspace: its steps' columns, plus
    one cache line when that is a multiple of 256 bytes (rows a power of two
    apart alias in the L1 cache)."""
    cdef Py_ssize_t ld = block_steps(r, ms) * ms
    cdef Py_ssize_t item = item_size(r)
    return ld + 64 // item if (ld * item) % 256 == 0 else ld


cdef inline Py_ssize_t scratch_ld(Py_ssize_t columns, bint single) noexcept nogil:
    """Row stride (elements) of time-major inference buffers with `columns`
    columns: whole 64-byte lines, an odd number of them, so a step's rows spread
    over every set of the CPU's caches (power-of-two-rich strides evicted the
    gates between the product and the kernels)."""
    cdef Py_ssize_t per_line = 16 if single else 8
    cdef Py_ssize_t lines = (columns + per_line - 1) // per_line
    if lines % 2 == 0:
        lines += 1
    return lines * per_line


cdef struct BlockBuffers:
    # Where a run's blocks of steps live: the call's time-major buffers of all
    # steps (RUN_IN_BUFFERS), or a workspace of one block, reused.
    bint in_buffers
    bint gather_x               # x is gathered into X (else read in place: X is x)
    Py_ssize_t ld               # row stride of G, A, C (and of X when gathered)
    void* G
    void* A
    void* C
    void* X
    void* a_state               # workspace: the states carried between blocks
    void* c_state


cdef inline void block_buffers(floating dummy, BlockBuffers* b, const Forward* r, Py_ssize_t ms,
                               floating* ws) noexcept nogil:
    """The buffers of r's blocks of ms columns: r's, or carved from workspace ws."""
    cdef Py_ssize_t n_a = r.n_a
    b.in_buffers = r.mode == RUN_IN_BUFFERS
    b.gather_x = not r.x_time_major
    b.ld = r.ld if b.in_buffers else block_ld(r, ms)
    if b.in_buffers:
        b.G, b.A, b.C, b.X = r.G, r.A, r.C, r.X
        b.a_state = b.c_state = NULL
    else:
        b.G = ws
        b.A = ws + r.cell.blocks * n_a * b.ld
        b.C = <floating*>b.A + (0 if r.cell.gates_are_state else n_a * b.ld)
        b.X = <floating*>b.C + (n_a * b.ld if r.cell.has_c else 0)
        b.a_state = <floating*>b.X + (r.n_x * b.ld if b.gather_x else 0)
        b.c_state = <floating*>b.a_state + n_a * ms
        if r.cell.gates_are_state:
            b.A = b.G
    if not b.gather_x:
        b.X = <void*>r.x
