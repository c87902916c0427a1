"""The sequence engine: one driver runs every cell forward and backward.

A cell is described once (cyrnn/_cells.py for its parameters and caches,
src/_cells.pxd for its step kernels); the driver below runs any of them over a
range of batch columns and all steps, without the GIL:

    forward, per block of steps:  G = Wx @ X          (input projection)
                                  per step: states = step(G[t], a_prev)
                                  (the step: G[t] += Wa @ a_prev, the cell's kernels)
    then the output head          y = softmax(Wy @ a + by)     (optional)
    backward, per step (reversed): dG[t], da_next = step'(...)
                                  (the kernels, da_next = Wa.T @ dG[t])
    then                          dx = Wx.T @ dG; dWx = dG @ X.T; dWa = dG @ A_prev.T

Options every cell gets: the output head on or off, the direction (forward or
reverse), caches on or off, and a column range (threads run disjoint ranges).
The cell functions are the driver at T = 1, and the BLAS-only floor
(`GemmFloor`) runs the driver with everything but its GEMMs switched off.

Buffers are time-major, (rows, T, m) C-contiguous: one step is a (rows × m)
matrix with row stride T·m that BLAS takes as is. The public functions at the
end validate once (a fast check for kernel-ready input, else
cyrnn/_validation.py), then call the driver.
"""
cimport numpy as cnp
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject
from cython cimport floating
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from _blas cimport gemm, gemm_abt, abt_work, gemm_atb, atb_work, transpose_weights_once
from _arrays cimport (new_array, new_zeros, block_view, typenum_of, elem_stride,
                      is_time_major_view, ready, float_typenum, use_pool, freeze,
                      holds_gil_worth_releasing)
from _cells cimport (CellSpec, cell_spec, GateWeights, gates_product, gates_product_t,
                     step_forward, step_backward, CELL_RNN, CELL_LSTM, CELL_GRU,
                     CELL_GRU_RESET_BEFORE)
from _elementwise cimport (cyrnn_ftz_begin, cyrnn_ftz_end, softmax_columns, row_sums,
                           gather_time_major, scatter_batch_major, fill_rows, pack_columns,
                           unpack_columns, stream_rows, lstm_forward_step, rnn_forward_step,
                           gru_forward_step, gru_reset_step, gru_candidate_step)

cdef extern from "cyrnn_debug.h" nogil:
    # a no-op unless the debug build (CYRNN_DEBUG): see the header
    void check_block "cyrnn_check_block" (const char* what, const void* p, Py_ssize_t rows,
                                          Py_ssize_t ld, Py_ssize_t cols, const void* base,
                                          Py_ssize_t length, size_t item)
    int CYRNN_DEBUG_CHECKS

cdef extern from "Python.h":
    int PyGILState_Check() nogil

# Test hook: when on, the drivers record whether they ran holding the GIL (a
# structural check of GIL release, independent of timing and machine load).
cdef int gil_probe_on = 0
cdef int gil_probe_held = -1


cdef inline void probe_gil() noexcept nogil:
    global gil_probe_held
    if gil_probe_on:
        gil_probe_held = PyGILState_Check()


def _gil_probe(bint enable):
    """Turn the probe on or off; returns whether the last driver run since the
    previous call held the GIL (True/False), or None when none ran."""
    global gil_probe_on, gil_probe_held
    held = None if gil_probe_held < 0 else bool(gil_probe_held)
    gil_probe_on, gil_probe_held = enable, -1
    return held


# True in the debug build, whose driver checks every block against its buffer
DEBUG_CHECKS = bool(CYRNN_DEBUG_CHECKS)


def _check_block_selftest():
    """Hand the debug check a block one element past its buffer: the debug
    build aborts here (tests run this in a subprocess); others return."""
    cdef double buf[8]
    check_block("selftest", buf + 1, 2, 4, 4, buf, 8, sizeof(double))

from collections.abc import Sequence

import os

import numpy as np

from cyrnn import _cells, _packing, _validation
from cyrnn._parallel import concurrent_use, resolve_threads, run_chunks, CONCURRENCY_CHECK_SIZE
from cyrnn._validation import BLAS_INT_MAX
assert BLAS_INT_MAX == 2147483647

cnp.import_array()
use_pool()


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


# ------------------------------------------------------------------ the driver

cdef struct Forward:
    CellSpec cell
    Py_ssize_t n_x, n_a, n_y, m, T
    const void* x           # (n_x, m, T), element strides sx0..sx2
    Py_ssize_t sx0, sx1, sx2
    bint x_time_major       # x views a C-contiguous (n_x, T, m) buffer: read in place
    const void* a0          # (n_a, m)
    const void* c0          # (n_a, m); NULL: zeros
    GateWeights w
    const void* b           # (gates·n_a,)
    const void* Wy          # (n_y, n_a); NULL: no output head
    const void* by
    void* a_out             # (n_a, m, T); every output C-contiguous
    void* c_out             # (n_a, m, T) or NULL
    void* y_out             # (n_y, m, T) or NULL
    void* G                 # caches, time-major: (gates·n_a, T, m); NULL: none
    void* A                 # (n_a, T, m); the same buffer as G when gates_are_state
    void* C                 # (n_a, T, m) when has_c
    void* X                 # (n_x, T, m); NULL when x is read in place
    Py_ssize_t ld           # row stride of G, A, C, X: T·m (the caches' layout), more
                            # in inference scratch (scratch_ld), the columns when packed
    bint reverse            # run the steps from T-1 down to 0
    bint gemm_only          # the floor: GEMMs alone, nothing in between
    bint single             # float32 (else float64)
    int plan                # the recurrent products' orientation (PLAN_*, forward_plan())
    bint keep_gates         # G must hold the activated gates after each step (caches)
    # Variable lengths (SPEC §6), or NULL: every column runs every step. The
    # columns are sorted by length, longest first (the caller permutes a0, c0
    # and packs x), so the active[t] columns still running at step t are a
    # prefix; step t holds them at columns offsets[t].. of the packed
    # time-major buffers G, A, C, X (rows, offsets[T]), which are required
    # (no workspace mode, no reverse). The caller scatters the outputs and
    # runs the output head (Wy NULL here).
    const Py_ssize_t* offsets
    const Py_ssize_t* active
    # The chunks' column bounds (n_chunks(m) + 1), or NULL: chunk_start()'s.
    # Packed runs balance the chunks' work (their columns' summed lengths).
    const Py_ssize_t* bounds


cdef inline Py_ssize_t column(const Forward* r, Py_ssize_t t, Py_ssize_t j0) noexcept nogil:
    """Where column j0 of step t sits in the time-major caches."""
    return (t * r.m if r.offsets == NULL else r.offsets[t]) + j0


cdef inline Py_ssize_t running(const Py_ssize_t* active, Py_ssize_t t, Py_ssize_t j0,
                               Py_ssize_t j1) noexcept nogil:
    """How many of columns j0..j1-1 run at step t (a prefix of them)."""
    return j1 - j0 if active == NULL else max(0, min(j1, active[t]) - j0)


cdef inline void copy_rows(Py_ssize_t rows, Py_ssize_t cols, const floating* src, Py_ssize_t lds,
                           floating* dst, Py_ssize_t ldd) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(rows):
        memcpy(dst + i * ldd, src + i * lds, cols * sizeof(floating))


# A single step (T = 1: the cell functions) whose weights act on [a_prev; x]
# runs one GEMM on that concatenation instead of one per operand: a quarter
# fewer BLAS calls per gate block (lstm_cell_forward, medium shape: 8 GEMMs of
# K = 128 and 256 became 4 of K = 384).
cdef inline bint uses_concat(const CellSpec* cell, const GateWeights* w,
                             Py_ssize_t T) noexcept nogil:
    return T == 1 and w.on_concat and cell.concat_step


cdef inline void project_inputs(const CellSpec* cell, const GateWeights* w, Py_ssize_t n_a,
                                Py_ssize_t n_x, Py_ssize_t n, const floating* X,
                                Py_ssize_t ldx, floating* G, Py_ssize_t ldg) noexcept nogil:
    """G = Wx @ X into G's blocks as the cell places them (x_split, x_dest)."""
    gates_product(w, False, 0, cell.x_split, n_a, n_x, n, X, ldx, <floating>0, G, ldg)
    if cell.x_split < cell.gates:
        gates_product(w, False, cell.x_split, cell.gates, n_a, n_x, n, X, ldx, <floating>0,
                      G + cell.x_dest * n_a * ldg, ldg)


# Narrow batches with caches (under NARROW_ROW_BYTES per row and step) run
# their blocks in the workspace too, and each block is then copied into the
# caches' rows, whole: written in place, the time-major caches' rows are a few
# bytes per step, T·m apart, and every step touched a cache line of each of
# their thousands of rows (LSTM forward at m = 8, T = 2000: the cached call
# 1.23-1.29x the time of cache=False, staged 1.04-1.16x). Same GEMMs and
# kernels, same bits. Caches under STAGED_MIN_BYTES stay in the CPU's caches
# anyway, and the copy only costs there (small LSTM, float32: 1.3x the time).
cdef double STAGED_MIN_BYTES = 4.0 * 1024 * 1024


def _staged_bytes(double limit):
    """Set STAGED_MIN_BYTES (tests use 0 and inf to run both paths); returns
    the previous one."""
    global STAGED_MIN_BYTES
    old, STAGED_MIN_BYTES = STAGED_MIN_BYTES, limit
    return old


cdef inline bint staged_caches(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Whether a chunk of ms columns with caches runs staged (above)."""
    cdef Py_ssize_t item = 4 if r.single else 8
    return (r.G != NULL and ms == r.m and r.offsets == NULL and r.a_out != NULL
            and not r.gemm_only and not uses_concat(&r.cell, &r.w, r.T)
            and r.m * item < NARROW_ROW_BYTES
            and <double>block_rows(r) * r.T * r.m * item >= STAGED_MIN_BYTES)


cdef inline size_t workspace_size(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Elements of workspace a chunk of ms columns needs: concat for a single
    step, and without caches or staged a block's buffers (otherwise the blocks
    are windows of the cache buffers)."""
    cdef size_t concat = (r.n_a + r.n_x) * ms if (uses_concat(&r.cell, &r.w, r.T)
                                                  and r.offsets == NULL) else 0
    concat += plan_scratch(r, ms)
    if r.G != NULL and not staged_caches(r, ms):
        return concat
    return (block_rows(r) - (r.n_x if r.x_time_major else 0)) * block_ld(r, ms) \
        + 2 * r.n_a * ms + concat


cdef inline Py_ssize_t block_ld(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Row stride of a block's buffers in the workspace: its steps' columns, plus
    one cache line when that is a multiple of 256 bytes (rows a power of two
    apart alias in the L1 cache: LSTM inference at m = 1, blocks of 64 steps,
    ran 9% slower than with rows 100 steps apart)."""
    cdef Py_ssize_t ld = block_steps(r, ms) * ms
    cdef Py_ssize_t item = 4 if r.single else 8
    return ld + 64 // item if (ld * item) % 256 == 0 else ld


cdef inline size_t plan_scratch(const Forward* r, Py_ssize_t ms) noexcept nogil:
    """Elements the recurrent products' plan needs per chunk of ms columns (at
    the workspace's end, before concat's)."""
    return r.cell.gates * r.n_a * ms if r.plan == PLAN_TRANSPOSED and r.w.blocks == 1 else 0


cdef int forward_chunk(floating dummy, const Forward* r, Py_ssize_t j0, Py_ssize_t j1,
                       floating* ws) noexcept nogil:
    """Run columns j0..j1-1 over all steps; ws: workspace_size() elements."""
    cdef const CellSpec* cell = &r.cell
    cdef Py_ssize_t n_x = r.n_x, n_a = r.n_a, m = r.m, T = r.T, Tm = r.T * r.m
    cdef Py_ssize_t ms = j1 - j0, rows = cell.blocks * r.n_a
    cdef Py_ssize_t tb = block_steps(r, ms), tbb, s, p0, i, tt, width, span, last
    # Block buffers are windows of the cache buffers when there are caches
    # (direct), else a workspace of one block, reused (staged: then copied into
    # the caches). Packed (variable lengths) runs are direct, their steps
    # `column()` apart and `running()` wide.
    cdef bint staged = staged_caches(r, ms)
    cdef bint direct = r.G != NULL and not staged, whole = ms == m, packed = r.offsets != NULL
    # Wide batches in blocks stream each block's states into time-major buffers
    # A, C (prepare_forward's stage_states) and leave them in the user's layout
    # whole rows at a time at the end, as direct runs do: scattered block by
    # block, each block wrote a few steps into every output row, every cache
    # line of the outputs was read before being written, and twice (bigbatch
    # LSTM inference in blocks: 1.17x (float64) and 1.22x (float32) the time
    # of the run in scratch).
    cdef bint stage_states = not direct and not packed and r.A != NULL and not r.gemm_only
    cdef Py_ssize_t P = r.offsets[T] if packed else Tm      # columns of the caches
    cdef Py_ssize_t ld = r.ld if direct else block_ld(r, ms), step = m if direct else ms
    cdef Py_ssize_t col = j0 if direct else 0
    cdef bint gather_x = not r.x_time_major
    cdef Py_ssize_t ldx, stepx, colx
    cdef floating* Gbase
    cdef floating* Abase
    cdef floating* Cbase = NULL
    cdef floating* Xbase
    cdef floating* a_state = NULL
    cdef floating* c_state = NULL
    cdef bint concat = uses_concat(cell, &r.w, T) and r.offsets == NULL
    cdef Py_ssize_t ws_len = workspace_size(r, ms)
    cdef floating* cat = ws + (ws_len - (n_a + n_x) * ms) if concat else NULL
    cdef size_t scratch_len = plan_scratch(r, ms)
    cdef floating* scratch = ws + (ws_len - (n_a + n_x) * ms * concat - scratch_len) \
        if scratch_len else NULL
    cdef int q
    cdef floating* bufs[6]
    if not direct:
        carve_workspace(r, ms, ld, gather_x, ws, bufs)
        Gbase, Abase, Cbase, Xbase, a_state, c_state = \
            bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], bufs[5]
    else:
        Gbase, Abase, Cbase = <floating*>r.G, <floating*>r.A, <floating*>r.C
        Xbase = <floating*>r.X
    if not gather_x:
        Xbase, ldx, stepx, colx = <floating*>r.x, Tm, m, j0
    elif direct:
        ldx, stepx, colx = ld, m, j0
    else:
        ldx, stepx, colx = ld, ms, 0
    cdef const floating* x = <const floating*>r.x
    cdef const floating* b = <const floating*>r.b
    cdef const floating* a_prev = <const floating*>r.a0 + j0
    cdef const floating* c_prev = NULL if r.c0 == NULL else <const floating*>r.c0 + j0
    cdef Py_ssize_t ld_ap = m, ld_cp = m
    # (packed, reversed: the initial states, and the columns started so far)
    cdef const floating* a_first = a_prev
    cdef const floating* c_first = c_prev
    cdef Py_ssize_t started = 0, start
    cdef floating* Gb
    cdef floating* Ab
    cdef floating* Cb
    cdef floating* Xb
    # NULL: the states stay in A, time-major (a direct run's buffer, _run_direction's out)
    cdef floating* a_out = <floating*>r.a_out + j0 * T if r.a_out != NULL else NULL
    # the buffers the blocks below must stay inside (checked by the debug build)
    cdef size_t item = sizeof(floating)
    cdef const void* G_buf = r.G if direct else ws
    cdef const void* A_buf = r.A if direct else ws
    cdef const void* C_buf = r.C if direct else ws
    cdef const void* X_buf = r.x if not gather_x else (r.X if direct else ws)
    cdef Py_ssize_t G_len = rows * ld if direct else ws_len
    cdef Py_ssize_t A_len = n_a * ld if direct else ws_len
    cdef Py_ssize_t X_len = n_x * Tm if not gather_x else (n_x * ld if direct else ws_len)
    if gather_x and direct and not r.gemm_only and not packed:
        # all steps into the X cache at once: whole 64-byte lines of x (blocks of
        # steps would read the lines at their edges twice)
        check_block("X", Xbase + j0, n_x, ld, (T - 1) * m + ms, X_buf, X_len, item)
        gather_time_major(n_x, ms, T, x + j0 * r.sx1, r.sx0, r.sx1, r.sx2, Xbase + j0, ld, m)
    s = 0
    while s < T:
        tbb = min(tb, T - s)
        p0 = T - s - tbb if r.reverse else s    # first step of the block, in time
        Gb = Gbase + (column(r, p0, j0) if direct else 0)
        Ab = Abase + (column(r, p0, j0) if direct else 0)
        Cb = Cbase + (column(r, p0, j0) if direct else 0) if cell.has_c else NULL
        Xb = Xbase + (column(r, p0, j0) if packed else
                      p0 * stepx + colx if (direct or not gather_x) else 0)
        # the block's columns: its steps one after another (packed: as wide as they
        # run, up to the last step where the chunk has a column running)
        last = p0 + tbb - 1
        while packed and last > p0 and running(r.active, last, j0, j1) == 0:
            last -= 1
        span = (column(r, last, j0) - column(r, p0, j0)
                + running(r.active, last, j0, j1)) if direct else (tbb - 1) * step + ms
        check_block("X block", Xb, n_x, ldx, span if packed else (tbb - 1) * stepx + ms, X_buf,
                    X_len, item)
        check_block("G block", Gb, rows, ld, span, G_buf, G_len, item)
        check_block("A block", Ab, n_a, ld, span, A_buf, A_len, item)
        if cell.has_c:
            check_block("C block", Cb, n_a, ld, span, C_buf, A_len, item)
        if gather_x and not direct and not r.gemm_only:
            gather_time_major(n_x, ms, tbb, x + j0 * r.sx1 + p0 * r.sx2, r.sx0, r.sx1, r.sx2,
                              Xb, ldx, stepx)
        if concat:
            # G = W @ [a_prev; x], one GEMM per row block (T = 1)
            copy_rows(n_a, ms, a_prev, ld_ap, cat, ms)
            copy_rows(n_x, ms, Xb, ldx, cat + n_a * ms, ms)
            for q in range(r.w.blocks):
                gemm(False, False, r.w.block_rows, ms, n_a + n_x, <floating>1,
                     <const floating*>r.w.Wa[q], r.w.ldwa[q], cat, ms, <floating>0,
                     Gb + q * r.w.block_rows * ld, ld)
        # G = Wx @ X for the block's steps: one GEMM when they are contiguous columns
        elif whole:
            project_inputs(cell, &r.w, n_a, n_x, span, Xb, ldx, Gb, ld)
        else:
            for tt in range(tbb):
                width = running(r.active, p0 + tt, j0, j1)
                span = column(r, p0 + tt, j0) - column(r, p0, j0) if packed else tt * step
                project_inputs(cell, &r.w, n_a, n_x, width,
                               Xb + (span if packed else tt * stepx), ldx, Gb + span, ld)
        for i in range(tbb):
            tt = tbb - 1 - i if r.reverse else i
            width = running(r.active, p0 + tt, j0, j1)
            if width == 0:
                if r.reverse:
                    continue    # (packed, reversed: no column of the chunk has started)
                break           # (packed: no column of the chunk runs any more)
            span = column(r, p0 + tt, j0) - column(r, p0, j0) if packed else tt * step
            # the recurrent products and the cell's kernels, on the columns that run;
            # packed and reversed, columns start at their own last step, from a0, c0
            start = started if packed and r.reverse else 0
            if start > 0:
                step_forward(cell, &r.w, n_a, start, Gb + span, ld, b, a_prev, ld_ap, c_prev,
                             ld_cp, Cb + span if cell.has_c else NULL, Ab + span,
                             not concat, not r.gemm_only, scratch, r.keep_gates,
                             r.plan == PLAN_GEMV, plan_row_block(r.plan))
            if width > start:
                step_forward(cell, &r.w, n_a, width - start, Gb + span + start, ld, b,
                             (a_prev if start == 0 else a_first) + start,
                             ld_ap if start == 0 else m,
                             (c_prev if start == 0 else c_first) + start
                             if (c_prev if start == 0 else c_first) != NULL else NULL,
                             ld_cp if start == 0 else m,
                             Cb + span + start if cell.has_c else NULL, Ab + span + start,
                             not concat, not r.gemm_only, scratch, r.keep_gates,
                             r.plan == PLAN_GEMV, plan_row_block(r.plan))
            started = width
            a_prev, ld_ap = Ab + span, ld
            if cell.has_c:
                c_prev, ld_cp = Cb + span, ld
        if staged:
            stage_block(r, tbb * m, Gbase, Abase, Cbase,
                        Xbase if gather_x and r.X != NULL else NULL, ld, p0 * m, 0, n_a, 0, n_x)
        if stage_states:
            stage_states_block(r, tbb, ms, j0, p0, Ab, Cb, ld)
        elif not direct:
            check_block("a", a_out + p0, n_a, m * T, (ms - 1) * T + tbb, r.a_out, n_a * Tm, item)
            if not r.gemm_only:
                scatter_batch_major(n_a, ms, tbb, Ab, ld, step, a_out + p0, m * T, T)
                if r.c_out != NULL:
                    scatter_batch_major(n_a, ms, tbb, Cb, ld, step,
                                        <floating*>r.c_out + j0 * T + p0, m * T, T)
        if not direct:
            # the next block overwrites the workspace: carry the states out of it
            if s + tbb < T:
                check_block("states", a_state, 2 * n_a, ms, ms, ws, ws_len, item)
                copy_rows(n_a, ms, a_prev, ld, a_state, ms)
                a_prev, ld_ap = a_state, ms
                if cell.has_c:
                    copy_rows(n_a, ms, c_prev, ld, c_state, ms)
                    c_prev, ld_cp = c_state, ms
        s += tbb
    if (direct or stage_states) and not r.gemm_only and not packed:
        # whole rows of the outputs at once from the time-major states, the caches'
        # or the staged ones (see scatter_batch_major's staging)
        if a_out != NULL:
            check_block("A rows", <floating*>r.A + j0, n_a, r.ld, (T - 1) * m + ms, r.A,
                        n_a * r.ld, item)
            check_block("a", a_out, n_a, m * T, ms * T, r.a_out, n_a * Tm, item)
            scatter_batch_major(n_a, ms, T, <floating*>r.A + j0, r.ld, m, a_out, m * T, T)
        if r.c_out != NULL:
            check_block("C rows", <floating*>r.C + j0, n_a, r.ld, (T - 1) * m + ms, r.C,
                        n_a * r.ld, item)
            check_block("c", <floating*>r.c_out + j0 * T, n_a, m * T, ms * T, r.c_out,
                        n_a * Tm, item)
            scatter_batch_major(n_a, ms, T, <floating*>r.C + j0, r.ld, m,
                                <floating*>r.c_out + j0 * T, m * T, T)
    if a_out != NULL:
        output_head(r, j0, ms, a_out)
    return 0


cdef inline void stage_states_block(const Forward* r, Py_ssize_t tbb, Py_ssize_t ms,
                                    Py_ssize_t j0, Py_ssize_t p0, const floating* Ab,
                                    const floating* Cb, Py_ssize_t ldw) noexcept nogil:
    """Stream a block's states (tbb steps of columns j0..j0+ms-1 from step p0 on,
    in the workspace: rows ldw apart, steps ms apart) into the time-major state
    buffers r.A, r.C (forward_chunk's stage_states)."""
    cdef Py_ssize_t n_a = r.n_a, m = r.m, ld = r.ld, tt
    cdef size_t item = sizeof(floating)
    cdef floating* A = <floating*>r.A + p0 * m + j0
    cdef floating* C = <floating*>r.C + p0 * m + j0 if r.cell.has_c else NULL
    check_block("A staged", A, n_a, ld, (tbb - 1) * m + ms, r.A, n_a * ld, item)
    if C != NULL:
        check_block("C staged", C, n_a, ld, (tbb - 1) * m + ms, r.C, n_a * ld, item)
    if ms == m:     # the block's steps are contiguous columns on both sides
        stream_rows(n_a, tbb * m, Ab, ldw, A, ld)
        if C != NULL:
            stream_rows(n_a, tbb * m, Cb, ldw, C, ld)
        return
    for tt in range(tbb):
        stream_rows(n_a, ms, Ab + tt * ms, ldw, A + tt * m, ld)
        if C != NULL:
            stream_rows(n_a, ms, Cb + tt * ms, ldw, C + tt * m, ld)


cdef inline void stage_block(const Forward* r, Py_ssize_t cols, const floating* Gw,
                             const floating* Aw, const floating* Cw, const floating* Xw,
                             Py_ssize_t ldw, Py_ssize_t col, Py_ssize_t u0, Py_ssize_t u1,
                             Py_ssize_t x0, Py_ssize_t x1) noexcept nogil:
    """Copy units u0..u1-1 and input rows x0..x1-1 of a staged block (its cols
    columns of each workspace buffer, rows ldw apart; Xw NULL: x is read in
    place) into the caches from column col on."""
    cdef Py_ssize_t n_a = r.n_a, rows = r.cell.blocks * r.n_a, ld = r.ld, n = u1 - u0, q
    cdef size_t item = sizeof(floating)
    for q in range(r.cell.blocks):
        check_block("G stage", <floating*>r.G + (q * n_a + u0) * ld + col, n, ld, cols, r.G,
                    rows * ld, item)
        stream_rows(n, cols, Gw + (q * n_a + u0) * ldw, ldw,
                    <floating*>r.G + (q * n_a + u0) * ld + col, ld)
    if not r.cell.gates_are_state:
        check_block("A stage", <floating*>r.A + u0 * ld + col, n, ld, cols, r.A, n_a * ld, item)
        stream_rows(n, cols, Aw + u0 * ldw, ldw, <floating*>r.A + u0 * ld + col, ld)
    if r.cell.has_c:
        check_block("C stage", <floating*>r.C + u0 * ld + col, n, ld, cols, r.C, n_a * ld, item)
        stream_rows(n, cols, Cw + u0 * ldw, ldw, <floating*>r.C + u0 * ld + col, ld)
    if Xw != NULL:
        check_block("X stage", <floating*>r.X + x0 * ld + col, x1 - x0, ld, cols, r.X,
                    r.n_x * ld, item)
        stream_rows(x1 - x0, cols, Xw + x0 * ldw, ldw, <floating*>r.X + x0 * ld + col, ld)


cdef inline void output_head(const Forward* r, Py_ssize_t j0, Py_ssize_t ms,
                             const floating* a_out) noexcept nogil:
    """y = softmax(Wy @ a + by) for columns j0..j0+ms-1 (a_out: theirs, in the
    user's layout: no layout change)."""
    cdef Py_ssize_t T = r.T, mT = r.m * r.T
    if r.Wy == NULL or r.n_y <= 0:
        return
    check_block("y", <floating*>r.y_out + j0 * T, r.n_y, mT, ms * T, r.y_out, r.n_y * mT,
                sizeof(floating))
    gemm(False, False, r.n_y, ms * T, r.n_a, <floating>1, <const floating*>r.Wy, r.n_a,
         a_out, mT, <floating>0, <floating*>r.y_out + j0 * T, mT)
    if not r.gemm_only:
        softmax_columns(r.n_y, ms * T, <floating*>r.y_out + j0 * T, mT, <const floating*>r.by)


# ------------------------------------------------------------------ split runs
# A narrow batch is one chunk, so n_threads had nothing to split (LSTM at
# m = 8: the second core idle). Under a row-block plan a step's recurrent
# products are independent GEMMs on blocks of R rows, so a step splits into
# parts that threads run at once: when R divides n_a (and n_a / R >= 2) every
# block is R units of one gate, and part p is the units p·R..(p+1)·R-1 of
# every gate, their GEMMs and their kernel (fused, up to n_a / R threads);
# otherwise, or for more threads, a step is two phases, the GEMMs one block
# each, then the kernels by units (the same calls either way). The next step
# needs all of a, so a step's parts finish before the next starts
# (cyrnn_phases.h: tickets, no deadlock on a shared executor). The rest of a
# block splits likewise: the input projection by rows, the gathers by input
# rows, the scatters, stages and carried states by units. How a problem splits
# depends on its sizes and plan only, and such problems always run split, with
# any number of threads (one runs every part): the same bits whatever
# n_threads and with or without caches. Every cell; the reset-before GRU's
# step is two stages (its candidate's product needs all of Γr·a_prev first),
# each split likewise. Not with variable lengths.
cdef extern from "cyrnn_phases.h" nogil:
    ctypedef struct cyrnn_tickets:
        pass
    long long cyrnn_claim(cyrnn_tickets* t)
    void cyrnn_ticket_done(cyrnn_tickets* t)
    void cyrnn_wait_done(cyrnn_tickets* t, long long count)
    void cyrnn_tickets_init(cyrnn_tickets* t)

cdef enum PhaseKind:
    PHASE_GATHER_ALL = 0    # direct: every step of x into the X cache
    PHASE_GATHER = 1        # a block's steps of x into the workspace
    PHASE_PROJECT = 2       # a block's input projection
    PHASE_STEP = 3          # fused: a stage of a step, recurrent products and kernels
    PHASE_STEP_GEMM = 4     # not fused: a stage's recurrent products
    PHASE_STEP_KERNEL = 5   # not fused: then its kernels
    PHASE_FINISH = 6        # workspace: stage, scatter, carry the states
    PHASE_SCATTER_ALL = 7   # direct: every step of the states out

cdef enum:
    # Unit parts of a split that is not fused: at least this many units each,
    # at most SPLIT_MAX_PARTS parts.
    SPLIT_MIN_UNITS = 8
    SPLIT_MAX_PARTS = 16


cdef Py_ssize_t split_run_count = 0


def _split_runs():
    """Split runs started in this process (a test hook: that sizes take the path)."""
    return split_run_count


cdef inline bint runs_split(const Forward* r) noexcept nogil:
    """Whether r runs split (above) rather than by chunks."""
    return (plan_row_block(r.plan) > 0 and r.offsets == NULL and n_chunks(r.m) == 1
            and r.w.blocks == 1 and not uses_concat(&r.cell, &r.w, r.T))


cdef struct Split:
    const Forward* r
    cyrnn_tickets tickets
    long long total             # tickets
    bint fused                  # one phase per step (R divides n_a)
    Py_ssize_t R                # the plan's row block
    Py_ssize_t units, unit_parts, proj_rows, proj_parts, tb
    # a step's stages: the recurrent products of gates q0[s]..q1[s]-1, then
    # their kernel (two for the reset-before GRU, else one)
    int stages
    int q0[2]
    int q1[2]
    Py_ssize_t gemm_parts[2]    # not fused: the stage's row blocks
    bint direct, staged, gather_x, gather_blocks
    Py_ssize_t ld, ldx          # row strides of the blocks' buffers and of X
    void* G                     # the blocks' buffers (direct: the caches)
    void* A
    void* C
    void* X
    void* a_state               # workspace: the states carried between blocks
    void* c_state
    void* ws
    Py_ssize_t ws_len


cdef struct Walk:
    # where a thread is in the run's phases: block [s, s + tbb) in processing
    # order, p0 its first step in time, k its phase (-1: before the blocks),
    # start the phase's first ticket
    Py_ssize_t s, tbb, p0, k
    long long start


cdef inline Py_ssize_t step_phases(const Split* sp) noexcept nogil:
    return sp.stages * (1 if sp.fused else 2)


cdef inline Py_ssize_t block_phases(const Split* sp, Py_ssize_t tbb) noexcept nogil:
    return sp.gather_blocks + 1 + tbb * step_phases(sp) + (0 if sp.direct else 1)


cdef inline void walk_block(const Split* sp, Walk* w) noexcept nogil:
    w.tbb = min(sp.tb, sp.r.T - w.s)
    w.p0 = sp.r.T - w.s - w.tbb if sp.r.reverse else w.s


cdef inline void walk_start(const Split* sp, Walk* w) noexcept nogil:
    w.start, w.s, w.k = 0, 0, -1 if sp.direct else 0
    walk_block(sp, w)


cdef inline int phase_kind(const Split* sp, const Walk* w, Py_ssize_t* i,
                           int* stage) noexcept nogil:
    """The kind of w's phase; for a step, its index in the block's processing
    order and the stage."""
    if w.k < 0:
        return PHASE_GATHER_ALL
    if w.s >= sp.r.T:
        return PHASE_SCATTER_ALL
    cdef Py_ssize_t k = w.k
    if sp.gather_blocks:
        if k == 0:
            return PHASE_GATHER
        k -= 1
    if k == 0:
        return PHASE_PROJECT
    k -= 1
    if k >= w.tbb * step_phases(sp):
        return PHASE_FINISH
    i[0] = k // step_phases(sp)
    k = k % step_phases(sp)
    if sp.fused:
        stage[0] = <int>k
        return PHASE_STEP
    stage[0] = <int>(k // 2)
    return PHASE_STEP_KERNEL if k % 2 else PHASE_STEP_GEMM


cdef inline Py_ssize_t phase_parts(const Split* sp, int kind, int stage) noexcept nogil:
    if kind == PHASE_PROJECT:
        return sp.proj_parts
    if kind == PHASE_STEP_GEMM:
        return sp.gemm_parts[stage]
    return sp.unit_parts


cdef inline Py_ssize_t walk_parts(const Split* sp, const Walk* w) noexcept nogil:
    """The parts of w's phase."""
    cdef Py_ssize_t i
    cdef int stage = 0
    return phase_parts(sp, phase_kind(sp, w, &i, &stage), stage)


cdef inline void walk_next(const Split* sp, Walk* w) noexcept nogil:
    w.start += walk_parts(sp, w)
    w.k += 1
    if w.s < sp.r.T and w.k == block_phases(sp, w.tbb):
        w.s += w.tbb
        w.k = 0
        if w.s < sp.r.T:
            walk_block(sp, w)


cdef inline void carve_workspace(const Forward* r, Py_ssize_t ms, Py_ssize_t ld, bint gather_x,
                                 floating* ws, floating** bufs) noexcept nogil:
    """The blocks' buffers in a workspace: bufs = G, A, C, X, a_state, c_state."""
    cdef Py_ssize_t n_a = r.n_a
    bufs[0] = ws
    bufs[1] = ws + r.cell.blocks * n_a * ld
    bufs[2] = bufs[1] + (0 if r.cell.gates_are_state else n_a * ld)
    bufs[3] = bufs[2] + (n_a * ld if r.cell.has_c else 0)
    bufs[4] = bufs[3] + (r.n_x * ld if gather_x else 0)
    bufs[5] = bufs[4] + n_a * ms
    if r.cell.gates_are_state:
        bufs[1] = bufs[0]


cdef void split_init(floating dummy, Split* sp, const Forward* r, floating* ws,
                     int threads) noexcept nogil:
    """Lay out a split run of r (runs_split(r)) in workspace ws, for threads."""
    global split_run_count
    cdef floating* bufs[6]
    cdef Py_ssize_t m = r.m, n_a = r.n_a, rows = r.cell.gates * r.n_a
    cdef Walk w
    cdef int q
    split_run_count += 1
    sp.r, sp.ws, sp.ws_len = r, ws, workspace_size(r, m)
    sp.R = plan_row_block(r.plan)
    cdef bint aligned = n_a % sp.R == 0 and n_a // sp.R >= 2
    sp.units = sp.R if aligned else max(<Py_ssize_t>SPLIT_MIN_UNITS,
                                         (n_a + SPLIT_MAX_PARTS - 1) // SPLIT_MAX_PARTS)
    sp.unit_parts = (n_a + sp.units - 1) // sp.units
    sp.stages = 2 if r.cell.kind == CELL_GRU_RESET_BEFORE else 1
    sp.q0[0], sp.q1[0] = 0, (2 if sp.stages == 2 else r.cell.gates)
    sp.q0[1], sp.q1[1] = 2, 3
    for q in range(sp.stages):
        sp.gemm_parts[q] = ((sp.q1[q] - sp.q0[q]) * n_a + sp.R - 1) // sp.R
    # fused while the unit parts keep the threads busy; more threads get the
    # blocks' GEMMs one by one (the same GEMMs and kernels: the same bits)
    sp.fused = aligned and threads <= sp.unit_parts
    sp.proj_rows = r.cell.gates * sp.R if aligned else sp.R
    sp.proj_parts = (rows + sp.proj_rows - 1) // sp.proj_rows
    sp.tb = block_steps(r, m)
    sp.staged = staged_caches(r, m)
    sp.direct = r.G != NULL and not sp.staged
    sp.gather_x = not r.x_time_major
    sp.gather_blocks = sp.gather_x and not sp.direct
    sp.ld = r.ld if sp.direct else block_ld(r, m)
    sp.ldx = sp.ld if sp.gather_x else r.T * m
    sp.a_state = sp.c_state = NULL
    if sp.direct:
        sp.G, sp.A, sp.C, sp.X = r.G, r.A, r.C, r.X
    else:
        carve_workspace(r, m, sp.ld, sp.gather_x, ws, bufs)
        sp.G, sp.A, sp.C, sp.X = bufs[0], bufs[1], bufs[2], bufs[3]
        sp.a_state, sp.c_state = bufs[4], bufs[5]
    if not sp.gather_x:
        sp.X = <void*>r.x
    # the tickets: every phase's parts (the end: the phase after the last)
    walk_start(sp, &w)
    while not (w.s >= r.T and (w.k > 0 or not sp.direct)):
        walk_next(sp, &w)
    sp.total = w.start
    cyrnn_tickets_init(&sp.tickets)


cdef inline void step_inputs(floating dummy, const Split* sp, const Walk* w, Py_ssize_t i,
                             const floating** a_prev, Py_ssize_t* ld_ap,
                             const floating** c_prev, Py_ssize_t* ld_cp) noexcept nogil:
    """The states step i of w's block (in processing order) starts from."""
    cdef const Forward* r = sp.r
    cdef Py_ssize_t m = r.m, col = w.p0 * m if sp.direct else 0, tt, prev
    cdef bint has_c = r.cell.has_c
    if i > 0:       # the step before, in the block
        tt = w.tbb - 1 - i if r.reverse else i
        prev = tt + 1 if r.reverse else tt - 1
        a_prev[0] = <const floating*>sp.A + col + prev * m
        c_prev[0] = <const floating*>sp.C + col + prev * m if has_c else NULL
        ld_ap[0] = ld_cp[0] = sp.ld
    elif w.s == 0:
        a_prev[0], c_prev[0] = <const floating*>r.a0, <const floating*>r.c0
        ld_ap[0] = ld_cp[0] = m
    elif sp.direct:     # the block before's last step, in the caches
        prev = w.p0 + w.tbb if r.reverse else w.p0 - 1
        a_prev[0] = <const floating*>sp.A + prev * m
        c_prev[0] = <const floating*>sp.C + prev * m if has_c else NULL
        ld_ap[0] = ld_cp[0] = sp.ld
    else:           # carried out of the workspace
        a_prev[0] = <const floating*>sp.a_state
        c_prev[0] = <const floating*>sp.c_state if has_c else NULL
        ld_ap[0] = ld_cp[0] = m


cdef void split_part(floating dummy, const Split* sp, const Walk* w, Py_ssize_t p) noexcept nogil:
    """Part p of w's phase."""
    cdef const Forward* r = sp.r
    cdef const CellSpec* cell = &r.cell
    cdef Py_ssize_t n_a = r.n_a, n_x = r.n_x, m = r.m, T = r.T, mT = r.m * r.T
    cdef Py_ssize_t ld = sp.ld, i = 0, tt, g, r0, nr, gs = r.n_a * sp.ld, lo, hi, half, dest
    cdef int stage = 0
    # part p's units, input rows (gathers, stages)
    cdef Py_ssize_t u0 = p * sp.units, R = min(sp.units, n_a - p * sp.units)
    cdef Py_ssize_t x0 = n_x * p // sp.unit_parts, x1 = n_x * (p + 1) // sp.unit_parts
    cdef Py_ssize_t col = w.p0 * m if sp.direct else 0     # the block's first column
    cdef floating* G = <floating*>sp.G + col
    cdef floating* A = <floating*>sp.A + col
    cdef floating* C = <floating*>sp.C + col if cell.has_c else NULL
    cdef const floating* X = <const floating*>sp.X + (w.p0 * m if sp.direct or not sp.gather_x
                                                      else 0)
    cdef const floating* x = <const floating*>r.x
    cdef const floating* Wa = <const floating*>r.w.Wa[0]
    cdef floating* a_out = <floating*>r.a_out
    cdef floating* c_out = <floating*>r.c_out
    cdef const floating* b = <const floating*>r.b
    cdef const floating* a_prev
    cdef const floating* c_prev
    cdef const floating* operand       # the stage's GEMM operand
    cdef Py_ssize_t ld_ap, ld_cp, ld_op
    cdef size_t item = sizeof(floating)
    cdef int kind = phase_kind(sp, w, &i, &stage)
    # the buffers the parts must stay inside (checked by the debug build): the
    # caches, or the workspace
    cdef const void* G_buf = r.G if sp.direct else sp.ws
    cdef const void* A_buf = r.A if sp.direct else sp.ws
    cdef const void* C_buf = r.C if sp.direct else sp.ws
    cdef const void* X_buf = r.x if not sp.gather_x else (r.X if sp.direct else sp.ws)
    cdef Py_ssize_t G_len = cell.blocks * n_a * ld if sp.direct else sp.ws_len
    cdef Py_ssize_t A_len = n_a * ld if sp.direct else sp.ws_len
    cdef Py_ssize_t X_len = n_x * mT if not sp.gather_x else (n_x * ld if sp.direct
                                                               else sp.ws_len)
    if kind == PHASE_STEP or kind == PHASE_STEP_GEMM or kind == PHASE_STEP_KERNEL:
        tt = w.tbb - 1 - i if r.reverse else i
        step_inputs(dummy, sp, w, i, &a_prev, &ld_ap, &c_prev, &ld_cp)
        G, A = G + tt * m, A + tt * m
        C = C + tt * m if cell.has_c else NULL
        operand, ld_op = a_prev, ld_ap
        if stage == 1:      # the reset-before GRU's candidate: on Γr·a_prev (block 3)
            operand, ld_op = G + 3 * gs, ld
        check_block("G step", G, cell.blocks * n_a, ld, m, G_buf, G_len, item)
        check_block("A step", A, n_a, ld, m, A_buf, A_len, item)
        if cell.has_c:
            check_block("C step", C, n_a, ld, m, C_buf, A_len, item)
    if kind == PHASE_GATHER_ALL:
        if sp.gather_x and not r.gemm_only:
            check_block("X", <floating*>sp.X + x0 * ld, x1 - x0, ld, mT, X_buf, X_len, item)
            gather_time_major(x1 - x0, m, T, x + x0 * r.sx0, r.sx0, r.sx1, r.sx2,
                              <floating*>sp.X + x0 * ld, ld, m)
    elif kind == PHASE_GATHER:
        if not r.gemm_only:
            check_block("X block", <floating*>sp.X + x0 * ld, x1 - x0, ld, w.tbb * m, X_buf,
                        X_len, item)
            gather_time_major(x1 - x0, m, w.tbb, x + x0 * r.sx0 + w.p0 * r.sx2, r.sx0, r.sx1,
                              r.sx2, <floating*>sp.X + x0 * ld, ld, m)
    elif kind == PHASE_PROJECT:
        # weight rows r0..r0+nr-1 of G = Wx @ X over the block's steps, into G's
        # rows as the cell places them (rows from x_split·n_a on go to x_dest's)
        r0 = p * sp.proj_rows
        nr = min(sp.proj_rows, cell.gates * n_a - r0)
        check_block("X block", X, n_x, sp.ldx, w.tbb * m, X_buf, X_len, item)
        for half in range(2):
            lo = r0 if half == 0 else max(r0, cell.x_split * n_a)
            hi = min(r0 + nr, cell.x_split * n_a) if half == 0 else r0 + nr
            if hi <= lo:
                continue
            dest = lo + (cell.x_dest - cell.x_split) * n_a if half == 1 else lo
            check_block("G block", G + dest * ld, hi - lo, ld, w.tbb * m, G_buf, G_len, item)
            gemm(False, False, hi - lo, w.tbb * m, n_x, <floating>1,
                 <const floating*>r.w.Wx[0] + lo * r.w.ldwx[0], r.w.ldwx[0], X, sp.ldx,
                 <floating>0, G + dest * ld, ld)
    elif kind == PHASE_STEP_GEMM:
        # block p of the stage's row blocks (gates_product's GEMMs, one each)
        r0 = sp.q0[stage] * n_a + p * sp.R
        nr = min(sp.R, sp.q1[stage] * n_a - r0)
        if cell.kind == CELL_GRU and not r.gemm_only:
            # the rows of hc (block 2) start from bca: the product adds onto it
            lo, hi = max(r0, 2 * n_a), min(r0 + nr, 3 * n_a)
            if hi > lo:
                fill_rows(hi - lo, m, b + lo, G + lo * ld, ld)
        gemm(False, False, nr, m, n_a, <floating>1, Wa + r0 * r.w.ldwa[0], r.w.ldwa[0],
             operand, ld_op, <floating>1, G + r0 * ld, ld)
    elif kind == PHASE_STEP:
        # the plan's row blocks of part p's units, one per gate of the stage
        if cell.kind == CELL_GRU and not r.gemm_only:
            fill_rows(R, m, b + 2 * n_a + u0, G + (2 * n_a + u0) * ld, ld)
        for g in range(sp.q0[stage], sp.q1[stage]):
            gemm(False, False, R, m, n_a, <floating>1, Wa + (g * n_a + u0) * r.w.ldwa[0],
                 r.w.ldwa[0], operand, ld_op, <floating>1, G + (g * n_a + u0) * ld, ld)
    elif kind == PHASE_FINISH:
        if sp.staged:
            stage_block(r, w.tbb * m, G, A, C, <floating*>sp.X if sp.gather_x and r.X != NULL
                        else NULL, ld, w.p0 * m, u0, u0 + R, x0, x1)
        if a_out != NULL and not r.gemm_only:
            check_block("a", a_out + u0 * mT + w.p0, R, mT, (m - 1) * T + w.tbb, a_out,
                        n_a * mT, item)
            scatter_batch_major(R, m, w.tbb, A + u0 * ld, ld, m, a_out + u0 * mT + w.p0, mT, T)
            if c_out != NULL:
                scatter_batch_major(R, m, w.tbb, C + u0 * ld, ld, m, c_out + u0 * mT + w.p0,
                                    mT, T)
        if w.s + w.tbb < T:
            # the next block overwrites the workspace: carry the states out of it
            tt = 0 if r.reverse else w.tbb - 1
            copy_rows(R, m, A + tt * m + u0 * ld, ld, <floating*>sp.a_state + u0 * m, m)
            if cell.has_c:
                copy_rows(R, m, C + tt * m + u0 * ld, ld, <floating*>sp.c_state + u0 * m, m)
    elif kind == PHASE_SCATTER_ALL:
        if a_out != NULL and not r.gemm_only:
            scatter_batch_major(R, m, T, <floating*>sp.A + u0 * ld, ld, m, a_out + u0 * mT, mT,
                                T)
        if c_out != NULL and not r.gemm_only:
            scatter_batch_major(R, m, T, <floating*>sp.C + u0 * ld, ld, m, c_out + u0 * mT, mT,
                                T)
    if (kind == PHASE_STEP or kind == PHASE_STEP_KERNEL) and not r.gemm_only:
        # part p's units: the stage's kernel (activated gates, c and a)
        if cell.kind == CELL_LSTM:
            lstm_forward_step(R, m, G + u0 * ld, ld, gs, b + u0, n_a,
                              c_prev + u0 * ld_cp if c_prev != NULL else NULL, ld_cp,
                              C + u0 * ld, ld, A + u0 * ld, ld, r.keep_gates)
        elif cell.kind == CELL_GRU:
            gru_forward_step(R, m, G + u0 * ld, ld, gs, b + u0, n_a, a_prev + u0 * ld_ap, ld_ap,
                             A + u0 * ld, ld)
        elif cell.kind == CELL_GRU_RESET_BEFORE and stage == 0:
            gru_reset_step(R, m, G + u0 * ld, ld, gs, b + u0, n_a, a_prev + u0 * ld_ap, ld_ap)
        elif cell.kind == CELL_GRU_RESET_BEFORE:
            gru_candidate_step(R, m, G + u0 * ld, ld, gs, b + u0, n_a, a_prev + u0 * ld_ap,
                               ld_ap, A + u0 * ld, ld)
        else:
            rnn_forward_step(R, m, G + u0 * ld, ld, b + u0)


cdef void split_work(Split* sp) noexcept nogil:
    """Run tickets of sp until none is left (from any thread, several at once)."""
    cdef unsigned int csr = cyrnn_ftz_begin()
    cdef long long k
    cdef Walk w
    walk_start(sp, &w)
    probe_gil()
    while True:
        k = cyrnn_claim(&sp.tickets)
        if k >= sp.total:
            break
        while k >= w.start + walk_parts(sp, &w):
            walk_next(sp, &w)
        cyrnn_wait_done(&sp.tickets, w.start)
        if sp.r.single:
            split_part[float](0, sp, &w, k - w.start)
        else:
            split_part[double](0, sp, &w, k - w.start)
        cyrnn_ticket_done(&sp.tickets)
    cyrnn_ftz_end(csr)


cdef void split_run(Split* sp, const Forward* r, void* ws) noexcept nogil:
    """A split run of r on the calling thread alone."""
    if r.single:
        split_init[float](0, sp, r, <float*>ws, 1)
    else:
        split_init[double](0, sp, r, <double*>ws, 1)
    split_work(sp)
    cyrnn_wait_done(&sp.tickets, sp.total)


cdef int forward_chunks(const Forward* r, Py_ssize_t first, Py_ssize_t last,
                        void* ws) noexcept nogil:
    """Chunks first..last-1 of the plan for r.m, with one workspace of
    chunk_workspace() elements (NULL: none needed, or allocate one here; -1
    when that fails). Callers pass a pooled one: fresh pages cost page faults."""
    cdef Py_ssize_t n = n_chunks(r.m), k, j0, j1
    cdef unsigned int csr = cyrnn_ftz_begin()
    cdef int status = 0
    cdef void* own = NULL
    cdef size_t need = chunk_workspace(r)
    cdef Split sp
    probe_gil()
    if ws == NULL and need > 0:
        ws = own = malloc(need * (4 if r.single else 8))
        if ws == NULL:
            cyrnn_ftz_end(csr)
            return -1
    if runs_split(r) and first < last:
        split_run(&sp, r, ws)
        if r.a_out != NULL:
            run_head(r)
        first = last
    for k in range(first, last):
        if r.bounds != NULL:
            j0, j1 = r.bounds[k], r.bounds[k + 1]
        else:
            j0, j1 = chunk_start(r.m, k, n), chunk_start(r.m, k + 1, n)
        if r.single:
            status = forward_chunk[float](0, r, j0, j1, <float*>ws)
        else:
            status = forward_chunk[double](0, r, j0, j1, <double*>ws)
        if status != 0:
            break
    free(own)
    cyrnn_ftz_end(csr)
    return status


cdef inline size_t chunk_workspace(const Forward* r) noexcept nogil:
    """Workspace elements for the widest chunk of the plan."""
    cdef Py_ssize_t n = n_chunks(r.m)
    return workspace_size(r, (r.m + n - 1) // n) if n > 0 else 0


cdef struct Backward:
    CellSpec cell
    Py_ssize_t n_x, n_a, m, T, T_da
    const void* da          # (n_a, m, T_da), element strides sd0..sd2
    Py_ssize_t sd0, sd1, sd2
    const void* G           # the forward's caches, time-major (rows, T, m)
    const void* A
    const void* C
    const void* X           # (n_x, T, m)
    const void* a0          # (n_a, m)
    const void* c0          # (n_a, m); NULL: zeros
    GateWeights w
    void* dA                # scratch (n_a, T_da, m): the upstream da, time-major (= dG
                            # when gates_are_state)
    void* dG                # scratch (blocks·n_a, T_da, m): gate gradients
    void* dX                # (n_x, T_da, m) scratch, or dx itself when T_da == 1
    void* dc                # (n_a, m): gradient of c carried in (zeros, or dc_next) and out
    void* dx                # outputs: (n_x, m, T_da)
    void* da0               # (n_a, m)
    void* dWx               # gates·n_a × n_x, rows lddwx apart
    void* dWa               # gates·n_a × n_a, rows lddwa apart
    void* db                # (bias_blocks·n_a,)
    Py_ssize_t lddwx, lddwa
    bint reverse            # the forward ran from T-1 down to 0 (then T_da == T)
    bint gemm_only
    bint single
    # Variable lengths: the forward's packed layout (see Forward), or NULL. The
    # caller then gives a0, c0 permuted, dA (dG for the RNN) packed, dX as a
    # packed (n_x, offsets[T_da]) buffer it scatters itself, and da0, dc zeroed.
    const Py_ssize_t* offsets
    const Py_ssize_t* active


cdef inline void input_gradients(const CellSpec* cell, const GateWeights* w, Py_ssize_t n_a,
                                 Py_ssize_t n_x, Py_ssize_t n, const floating* dG,
                                 const floating* X, Py_ssize_t ldx, floating* dX, floating* dWx,
                                 Py_ssize_t lddwx, floating* work) noexcept nogil:
    """dX = Wx.T @ dG and dWx = dG @ X.T over n columns (dG's rows n apart),
    reading dG's blocks where the cell placed the input projection."""
    cdef Py_ssize_t split = cell.x_split * n_a, rows = cell.gates * n_a
    cdef const floating* dG2 = dG + cell.x_dest * n_a * n
    gates_product_t(w, False, 0, cell.x_split, n_a, n_x, n, dG, n, <floating>0, dX, n, NULL,
                    work)
    gemm_abt(split, n_x, n, <floating>1, dG, n, X, ldx, <floating>0, dWx, lddwx, work)
    if split < rows:
        gates_product_t(w, False, cell.x_split, cell.gates, n_a, n_x, n, dG2, n, <floating>1,
                        dX, n, NULL, work)
        gemm_abt(rows - split, n_x, n, <floating>1, dG2, n, X, ldx, <floating>0,
                 dWx + split * lddwx, lddwx, work)


cdef int backward_all(floating dummy, const Backward* r) noexcept nogil:
    """Backpropagate through the first T_da steps. -1 when scratch cannot be had."""
    cdef const CellSpec* cell = &r.cell
    cdef Py_ssize_t n_x = r.n_x, n_a = r.n_a, m = r.m, T = r.T, T_da = r.T_da
    # rows: of the stacked weights; grows: of G and dG (see CellSpec)
    cdef Py_ssize_t rows = cell.gates * n_a, grows = cell.blocks * n_a
    cdef bint packed = r.offsets != NULL
    # columns of the forward's buffers (Tm) and of the first T_da steps (Tdm)
    cdef Py_ssize_t Tm = r.offsets[T] if packed else T * m
    cdef Py_ssize_t Tdm = r.offsets[T_da] if packed else T_da * m, k, t, prev, ct, n, nc
    cdef bint dbl = sizeof(floating) == 8
    cdef const floating* G = <const floating*>r.G
    cdef const floating* A = <const floating*>r.A
    cdef const floating* C = <const floating*>r.C
    cdef const floating* X = <const floating*>r.X
    cdef floating* dA = <floating*>r.dA
    cdef floating* dG = <floating*>r.dG
    cdef floating* dX = <floating*>r.dX
    cdef floating* da0 = <floating*>r.da0
    cdef floating* dc = <floating*>r.dc
    cdef const floating* c_prev
    cdef const floating* a_prev
    cdef Py_ssize_t ld_cp, ld_ap
    cdef floating* Wt = NULL
    cdef Py_ssize_t first = T - 1 if r.reverse else 0   # the step that starts from a0, c0
    cdef Py_ssize_t arows
    cdef floating* A_prev = NULL
    cdef int q
    if T_da == 0:
        return 0
    cdef bint concat = uses_concat(cell, &r.w, T_da) and not packed
    cdef Py_ssize_t width = n_a + n_x
    # (abt_work is largest for the fewest rows: n_a covers the GEMMs on row blocks)
    cdef size_t work_size = max(
        atb_work(n_a, m, r.w.block_rows, dbl), atb_work(n_x, Tdm, r.w.block_rows, dbl),
        abt_work(n_a, n_a, m), abt_work(n_a, n_a, Tdm - m), abt_work(n_a, n_x, Tdm),
        abt_work(n_a, n_a, Tdm), atb_work(width, m, r.w.block_rows, dbl),
        abt_work(rows, width, m))
    # scratch for dG (and dA) here when the caller gave none (the cell functions:
    # small; sequences pass pooled arrays); concat and its gradient for one step
    cdef size_t own = 0 if dG != NULL else (grows + (0 if cell.gates_are_state else n_a)) * Tdm
    cdef size_t cat_size = 2 * width * m if concat else 0
    cdef floating* work = <floating*>malloc((work_size + own + cat_size) * sizeof(floating) + 1)
    if work == NULL:
        return -1
    if own:
        dG = work + work_size
        dA = dG if cell.gates_are_state else dG + grows * Tdm
    cdef floating* cat = work + work_size + own
    cdef floating* dcat = cat + width * m
    if r.w.blocks == 1 and transpose_weights_once(n_a, m, rows, T_da, dbl):
        # Wt = Wa.T (n_a × rows; a 2-D transpose is gather's n = 1 case)
        Wt = <floating*>malloc(rows * n_a * sizeof(floating))
        if Wt != NULL:
            gather_time_major(1, rows, n_a, <const floating*>r.w.Wa[0], 0, r.w.ldwa[0], 1,
                              Wt, 0, rows)
    cdef size_t item = sizeof(floating)
    # the contract on steps, as a block check: T_da <= T, and all T when reversed
    check_block("steps of da", G, 1, 1, T + 1 if r.reverse and T_da != T else T_da, G, T, item)
    if not r.gemm_only and not packed:
        gather_time_major(n_a, m, T_da, <const floating*>r.da, r.sd0, r.sd1, r.sd2, dA, Tdm, m)
    for k in range(T_da):
        t = k if r.reverse else T_da - 1 - k
        prev = t + 1 if r.reverse else t - 1
        # step t's columns (packed: its first n, the ones still running)
        if packed:
            ct, n = r.offsets[t], r.active[t]
        else:
            ct, n = t * m, m
        if n == 0:
            continue
        check_block("G step", G + ct, grows, Tm, n, r.G, grows * Tm, item)
        if cell.has_c:
            check_block("C step", C + ct, n_a, Tm, n, r.C, n_a * Tm, item)
        # the columns whose a_prev is a state (the rest start from a0, c0 here)
        nc = 0 if t == first else n
        if packed and r.reverse:
            nc = r.active[prev] if prev < T else 0
        if nc > 0:
            check_block("A_prev", A + (r.offsets[prev] if packed else prev * m), n_a, Tm, nc,
                        r.A, n_a * Tm, item)
            a_prev, ld_ap = A + (r.offsets[prev] if packed else prev * m), Tm
            c_prev, ld_cp = (C + (r.offsets[prev] if packed else prev * m)
                             if cell.has_c else NULL), Tm
            # dG[t] from da[t] + da_next (and dc carried), then da_next for the
            # step before (after the last step this is da0); see step_backward
            step_backward(cell, &r.w, n_a, nc, G + ct, C + ct if cell.has_c else NULL, Tm,
                          a_prev, ld_ap, c_prev, ld_cp, dA + ct, Tdm, da0, m, k > 0, dc,
                          dG + ct, Tdm, not concat, not r.gemm_only, Wt, work)
        if n > nc:
            c_prev = <const floating*>r.c0 + nc if r.c0 != NULL else NULL
            step_backward(cell, &r.w, n_a, n - nc, G + ct + nc,
                          C + ct + nc if cell.has_c else NULL, Tm,
                          <const floating*>r.a0 + nc, m, c_prev, m, dA + ct + nc, Tdm,
                          da0 + nc, m, k > 0, dc + nc if dc != NULL else NULL,
                          dG + ct + nc, Tdm, not concat, not r.gemm_only, Wt, work)
        if concat:
            break
    free(Wt)
    if concat:
        # one step on [a0; x]: dcat = W.T @ dG, dW = dG @ [a0; x].T
        copy_rows(n_a, m, <const floating*>r.a0, m, cat, m)
        copy_rows(n_x, m, X, Tm, cat + n_a * m, m)
        for q in range(r.w.blocks):
            gemm_atb(width, m, r.w.block_rows, <floating>1, <const floating*>r.w.Wa[q],
                     r.w.ldwa[q], dG + q * r.w.block_rows * Tdm, Tdm,
                     <floating>(0 if q == 0 else 1), dcat, m, work)
        copy_rows(n_a, m, dcat, m, da0, m)
        copy_rows(n_x, m, dcat + n_a * m, m, dX, Tdm)
        gemm_abt(rows, width, m, <floating>1, dG, Tdm, cat, m, <floating>0,
                 <floating*>r.dWa, r.lddwa, work)
    else:
        input_gradients(cell, &r.w, n_a, n_x, Tdm, dG, X, Tm, dX, <floating*>r.dWx, r.lddwx,
                        work)
        # dWa = dG @ A_prev.T: the first step against a0, the others against A
        arows = cell.a_split * n_a
        if packed:
            # each step's a_prev, packed like dG (a step's columns are a prefix
            # of the step before's), then one GEMM
            A_prev = <floating*>malloc(n_a * Tdm * sizeof(floating) + 1)
            if A_prev == NULL:
                free(work)
                return -1
            for t in range(T_da):
                # as in the step loop: states for the first nc columns, a0 for the rest
                prev = t + 1 if r.reverse else t - 1
                n = r.active[t]
                nc = (r.active[prev] if prev < T else 0) if r.reverse else (n if t > 0 else 0)
                if nc > 0:
                    copy_rows(n_a, nc, A + r.offsets[prev], Tm, A_prev + r.offsets[t], Tdm)
                copy_rows(n_a, n - nc, <const floating*>r.a0 + nc, m,
                          A_prev + r.offsets[t] + nc, Tdm)
            gemm_abt(arows, n_a, Tdm, <floating>1, dG, Tdm, A_prev, Tdm, <floating>0,
                     <floating*>r.dWa, r.lddwa, work)
            free(A_prev)
        else:
            gemm_abt(arows, n_a, m, <floating>1, dG + first * m, Tdm, <const floating*>r.a0, m,
                     <floating>0, <floating*>r.dWa, r.lddwa, work)
            gemm_abt(arows, n_a, Tdm - m, <floating>1, dG if r.reverse else dG + m, Tdm,
                     A + m if r.reverse else A, Tm, <floating>1, <floating*>r.dWa, r.lddwa,
                     work)
        if arows < rows:
            # the other blocks against the G block they multiplied (Γr·a_prev)
            gemm_abt(rows - arows, n_a, Tdm, <floating>1, dG + arows * Tdm, Tdm,
                     G + cell.a_src * n_a * Tm, Tm, <floating>0,
                     <floating*>r.dWa + arows * r.lddwa, r.lddwa, work)
    # db = dG.sum(1) over the bias's blocks
    if not r.gemm_only:
        row_sums(cell.bias_blocks * n_a, Tdm, dG, Tdm, <floating*>r.db)
        if dX != <floating*>r.dx and not packed:
            scatter_batch_major(n_x, m, T_da, dX, Tdm, m, <floating*>r.dx, m * T_da, T_da)
    free(work)  # last: it may hold dG
    return 0


cdef int backward_run(const Backward* r) noexcept nogil:
    cdef unsigned int csr = cyrnn_ftz_begin()
    cdef int status
    probe_gil()
    if r.single:
        status = backward_all[float](0, r)
    else:
        status = backward_all[double](0, r)
    cyrnn_ftz_end(csr)
    return status


# ------------------------------------------------------------------ cells, as the engine reads them

# Inference (cache=False) keeps its time-major buffers in pooled scratch up to
# this size (see sequence_forward); larger problems run in blocks of steps.
# So do problems whose outputs stay in the CPU's caches (up to
# CACHED_OUTPUT_BYTES): there writing them block by block costs nothing, and
# blocks keep the gates in L2 (small LSTM inference: 12% faster than scratch).
# And so do narrow batches (under NARROW_ROW_BYTES per row and step): in the
# time-major (rows, T, m) buffers a step's rows are then a few bytes each, T·m
# apart, so every row of every step touches its own cache line and page
# (LSTM inference at m = 8, T = 2000: 1.16-1.21x the BLAS floor in scratch,
# 1.01-1.02x in blocks; at m = 64 in float32 blocks 0.97x the time of scratch,
# at 1024 columns 1.17x). Wide batches whose states fit it run in blocks but
# keep time-major state buffers (forward_chunk's stage_states).
cdef double SCRATCH_BYTES = 512.0 * 1024 * 1024
cdef double CACHED_OUTPUT_BYTES = 4.0 * 1024 * 1024


cdef Py_ssize_t staged_state_runs = 0


def _staged_state_runs():
    """Forward calls that staged their states so far (a test hook: that sizes
    take the path)."""
    return staged_state_runs


def _scratch_bytes(double limit):
    """Set the inference scratch limit (tests use 0 to run the block path);
    returns the previous one."""
    global SCRATCH_BYTES
    old, SCRATCH_BYTES = SCRATCH_BYTES, limit
    return old


def _cached_output_bytes(double limit):
    """Set the output size below which inference runs in blocks (benchmarks
    compare the two paths); returns the previous one."""
    global CACHED_OUTPUT_BYTES
    old, CACHED_OUTPUT_BYTES = CACHED_OUTPUT_BYTES, limit
    return old

cdef enum:
    MAX_KEYS = 16
    # The cell functions stack per-gate weights into one matrix (one GEMM)
    # only while that copy is cheap; above this many elements they run one GEMM
    # per gate on the caller's matrices.
    STACK_LIMIT = 65536


# The schema's dimension codes (cyrnn/_cells.py), as C constants.
cdef enum:
    DIM_ONE = 0
    DIM_N_X = 1
    DIM_N_A = 2
    DIM_N_Y = 3
    DIM_N_A_PLUS_N_X = 4


cdef class CellInfo:
    """A cell description of cyrnn/_cells.py in the form the fast paths read
    (C fields: no Python attribute lookups per call)."""
    cdef CellSpec spec
    cdef readonly object cell
    cdef tuple keys
    cdef int rows[MAX_KEYS]
    cdef int cols[MAX_KEYS]
    cdef bint for_backward[MAX_KEYS]     # the gate weights: all backward reads
    cdef int n_keys, wy_index, by_index
    cdef tuple weight_index, bias_index
    cdef object caches_type
    cdef bint weights_on_concat
    # positions in a step cache tuple (-1: none)
    cdef Py_ssize_t n_entries, i_a_next, i_c_next, i_a_prev, i_c_prev, i_xt, i_parameters
    cdef tuple i_gates          # positions of the step cache's gates
    cdef tuple gate_blocks      # G's block of each of them
    cdef int extra_block        # G's block the step cache does not hold (-1: none)
    cdef tuple dW_keys, db_keys
    cdef tuple stack            # per gate row block: (key,) or (hidden-state key, input key)

    def __init__(self, cell):
        self.cell = cell
        self.spec = cell_spec(cell.kind)
        assert self.spec.gates == cell.gates and self.spec.has_c == cell.has_c
        assert self.spec.blocks == len(cell.blocks) and self.spec.bias_blocks == len(
            cell.gate_biases)
        assert (_cells.ONE, _cells.N_X, _cells.N_A, _cells.N_Y, _cells.N_A_PLUS_N_X) == (
            DIM_ONE, DIM_N_X, DIM_N_A, DIM_N_Y, DIM_N_A_PLUS_N_X)
        self.weights_on_concat = cell.weights_on_concat
        names = cell.step_cache
        self.n_entries = len(names)

        def at(name):
            return names.index(name) if name in names else -1

        self.i_a_next, self.i_c_next = at("a_next"), at("c_next")
        self.i_a_prev, self.i_c_prev = at("a_prev"), at("c_prev")
        self.i_xt, self.i_parameters = at("xt"), at("parameters")
        self.i_gates = tuple(at(g) for g in cell.gate_cache)
        self.gate_blocks = tuple(cell.blocks.index(g) for g in cell.gate_cache)
        extra = [q for q in range(len(cell.blocks)) if q not in self.gate_blocks]
        self.extra_block = extra[0] if extra and not self.spec.gates_are_state else -1
        self.dW_keys, self.db_keys = cell.gradient_keys
        self.keys = tuple(entry[0] for entry in cell.parameters)
        self.n_keys = len(self.keys)
        assert self.n_keys <= MAX_KEYS
        for q, (key, rows, cols, _) in enumerate(cell.parameters):
            self.rows[q], self.cols[q] = rows, cols
            self.for_backward[q] = key in cell.backward_keys
        self.stack = tuple((e,) if isinstance(e, str) else tuple(e) for e in cell.gate_weights)
        self.weight_index = tuple(tuple(self.keys.index(k) for k in e) for e in self.stack)
        self.bias_index = tuple(self.keys.index(k) for k in cell.gate_biases)
        self.wy_index, self.by_index = self.keys.index(cell.head[0]), self.keys.index(cell.head[1])


cdef list fast_parameters(CellInfo info, object parameters, int tn, Py_ssize_t n_x,
                          Py_ssize_t n_a, bint backward=False):
    """The parameters in schema order when every one is kernel-ready, else None
    (then cyrnn/_validation.py checks them with the same schema). `backward`:
    only the gate weights (None in the other places), as the validating path
    checks for the backward functions."""
    if type(parameters) is not dict:
        return None
    cdef Py_ssize_t dims[5]
    dims[DIM_ONE], dims[DIM_N_X], dims[DIM_N_A] = 1, n_x, n_a
    dims[DIM_N_Y], dims[DIM_N_A_PLUS_N_X] = -1, n_a + n_x
    cdef list out = [None] * info.n_keys
    cdef PyObject* item
    cdef int q
    for q in range(info.n_keys):
        if backward and not info.for_backward[q]:
            continue
        item = PyDict_GetItem(<dict>parameters, info.keys[q])
        if item == NULL or not ready(<object>item, tn, 2, dims[info.rows[q]],
                                     dims[info.cols[q]]):
            return None
        if dims[info.rows[q]] < 0:
            dims[info.rows[q]] = cnp.PyArray_DIMS(<cnp.ndarray>item)[0]
        out[q] = <object>item
    return out


cdef list validated_parameters(CellInfo info, dict p):
    """The checked parameters in schema order (None for keys not checked)."""
    return [p.get(key) for key in info.keys]


cdef inline bint strided_ready(object obj, int tn, int ndim) noexcept:
    """obj is an exact ndarray of tn with ndim dims and element-aligned strides."""
    if type(obj) is not cnp.ndarray:
        return False
    cdef cnp.ndarray a = <cnp.ndarray>obj
    if cnp.PyArray_TYPE(a) != tn or cnp.PyArray_NDIM(a) != ndim or not cnp.PyArray_ISALIGNED(a):
        return False
    cdef int k
    for k in range(ndim):
        if cnp.PyArray_STRIDES(a)[k] % cnp.PyArray_ITEMSIZE(a) != 0:
            return False
    return True


cdef enum:
    # SciPy's cython_blas takes 32-bit sizes (cyrnn/_validation.py BLAS_INT_MAX)
    C_BLAS_INT_MAX = 2147483647


cdef inline bint blas_sizes_fit(Py_ssize_t columns, Py_ssize_t rows, Py_ssize_t n_y) noexcept:
    return columns <= C_BLAS_INT_MAX and rows <= C_BLAS_INT_MAX and n_y <= C_BLAS_INT_MAX


cdef inline const void* data(object a):
    return NULL if a is None else <const void*>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef Py_ssize_t stacking_copies = 0


def _stacking_copies():
    """How many calls so far copied gate weights into a stacked matrix (a test
    hook: prepared parameters must not)."""
    return stacking_copies


cdef bint already_stacked(CellInfo info, list params, Py_ssize_t n_a, Py_ssize_t width,
                          size_t item):
    """Whether every gate's weights are one (n_a, width) C-contiguous array (as
    the kernel-ready checks guarantee) and gate q's starts where gate q-1's ends:
    then together they are the stacked (gates·n_a, width) matrix, every byte of
    it inside one of the arrays."""
    cdef Py_ssize_t q
    cdef char* start
    for q in range(info.spec.gates):
        if len(info.weight_index[q]) != 1:
            return False
    start = <char*>cnp.PyArray_DATA(<cnp.ndarray>params[info.weight_index[0][0]])
    for q in range(1, info.spec.gates):
        if <char*>cnp.PyArray_DATA(<cnp.ndarray>params[info.weight_index[q][0]]) != \
                start + q * n_a * width * item:
            return False
    return True


cdef tuple gate_weights(CellInfo info, list params, int tn, Py_ssize_t n_x, Py_ssize_t n_a,
                        bint stack, GateWeights* w, bint need_bias=True):
    """Fill w from the parameters; return (keep-alive objects, stacked bias b
    (None unless need_bias)).

    Weights on [a_prev; x] are stacked into one (gates·n_a, n_a + n_x) matrix
    when `stack`, else used in place as one row block per gate (a gate given
    as two matrices, hidden-state and input, is read from both)."""
    cdef Py_ssize_t width = n_a + n_x, gates = info.spec.gates, q, i
    cdef size_t item = 4 if tn == cnp.NPY_FLOAT else 8
    cdef cnp.ndarray W, b, Wq, Wa, Wx
    cdef char* row
    w.on_concat = info.weights_on_concat
    if not info.weights_on_concat:
        (ix,), (ia,) = info.weight_index
        Wx, Wa = params[ix], params[ia]
        w.blocks, w.block_rows = 1, gates * n_a
        w.Wx[0], w.ldwx[0], w.Wa[0], w.ldwa[0] = data(Wx), n_x, data(Wa), n_a
        return (), params[info.bias_index[0]]
    b = None
    if need_bias:
        b = new_array(tn, info.spec.bias_blocks * n_a, 1)
        for q in range(info.spec.bias_blocks):
            memcpy(<char*>cnp.PyArray_DATA(b) + q * n_a * item,
                   cnp.PyArray_DATA(<cnp.ndarray>params[info.bias_index[q]]), n_a * item)
    if stack and already_stacked(info, params, n_a, width, item):
        # the gates' weights are consecutive row blocks of one matrix
        # (cyrnn.prepare, a Model): read them there, no copy per call
        w.blocks, w.block_rows = 1, gates * n_a
        W = params[info.weight_index[0][0]]
        w.Wa[0] = cnp.PyArray_DATA(W)
        w.Wx[0] = <char*>cnp.PyArray_DATA(W) + n_a * item
        w.ldwx[0] = w.ldwa[0] = width
        return tuple(params[e[0]] for e in info.weight_index), b
    if stack:
        global stacking_copies
        stacking_copies += 1
        W = new_array(tn, gates * n_a, width)
        for q in range(gates):
            row = <char*>cnp.PyArray_DATA(W) + q * n_a * width * item
            if len(info.weight_index[q]) == 1:
                memcpy(row, cnp.PyArray_DATA(<cnp.ndarray>params[info.weight_index[q][0]]),
                       n_a * width * item)
            else:
                # [Wa | Wx], row by row
                Wa = params[info.weight_index[q][0]]
                Wx = params[info.weight_index[q][1]]
                for i in range(n_a):
                    memcpy(row + i * width * item, <char*>cnp.PyArray_DATA(Wa) + i * n_a * item,
                           n_a * item)
                    memcpy(row + (i * width + n_a) * item,
                           <char*>cnp.PyArray_DATA(Wx) + i * n_x * item, n_x * item)
        w.blocks, w.block_rows = 1, gates * n_a
        w.Wa[0] = cnp.PyArray_DATA(W)
        w.Wx[0] = <char*>cnp.PyArray_DATA(W) + n_a * item
        w.ldwx[0] = w.ldwa[0] = width
        return (W,), b
    w.blocks, w.block_rows = gates, n_a
    for q in range(gates):
        if len(info.weight_index[q]) == 1:
            Wq = params[info.weight_index[q][0]]
            w.Wa[q] = cnp.PyArray_DATA(Wq)
            w.Wx[q] = <char*>cnp.PyArray_DATA(Wq) + n_a * item
            w.ldwx[q] = w.ldwa[q] = width
        else:
            w.Wa[q], w.ldwa[q] = data(params[info.weight_index[q][0]]), n_a
            w.Wx[q], w.ldwx[q] = data(params[info.weight_index[q][1]]), n_x
    return tuple(params[k] for e in info.weight_index for k in e), b


cdef class _ForwardJob:
    """A prepared forward call, for threads: job(first, last) runs those chunks."""
    cdef Forward r
    cdef object keep

    def __call__(self, Py_ssize_t first, Py_ssize_t last):
        """Run chunks first..last-1 (from any thread; disjoint ranges at once)."""
        workspace = pooled_workspace(&self.r)
        cdef void* ws = <void*>data(workspace)
        cdef int status
        with nogil:
            status = forward_chunks(&self.r, first, last, ws)
        if status != 0:
            raise MemoryError("could not allocate the per-thread workspace")


cdef class _SplitJob:
    """A split run (see "split runs") for threads: job(first, last) runs
    tickets until none is left, from any thread, several at once."""
    cdef Forward r
    cdef Split sp
    cdef object keep
    cdef object workspace

    def __call__(self, Py_ssize_t first, Py_ssize_t last):
        with nogil:
            split_work(&self.sp)


# ------------------------------------------------------------------ caches

cdef object _check_cache_array(str owner, str name, object value, int tn, int ndim,
                               tuple dims, tuple symbols):
    """A read-only view of value after checking it is a C-contiguous array of
    dtype tn and shape dims (-1: any), else ValueError/TypeError naming it."""
    where = f"{owner}.{name}"
    if type(value) is not cnp.ndarray:
        raise TypeError(f"{where} must be a NumPy array; got {type(value).__name__}")
    cdef cnp.ndarray a = <cnp.ndarray>value
    if tn < 0:
        if cnp.PyArray_TYPE(a) not in (cnp.NPY_FLOAT, cnp.NPY_DOUBLE):
            raise TypeError(f"{where} has dtype {a.dtype}; expected float32 or float64")
        tn = cnp.PyArray_TYPE(a)
    if cnp.PyArray_TYPE(a) != tn:
        raise TypeError(f"{where} has dtype {a.dtype}; expected "
                        f"{'float32' if tn == cnp.NPY_FLOAT else 'float64'} like the other buffers")
    shape = value.shape
    if len(shape) != ndim or any(d >= 0 and d != s for d, s in zip(dims, shape)):
        want = ", ".join("any" if d < 0 else str(d) for d in dims)
        raise ValueError(f"{where} has shape {shape}; expected ({', '.join(symbols)}) = "
                         f"({want})")
    if not cnp.PyArray_ISCARRAY_RO(a):
        raise ValueError(f"{where} must be C-contiguous and aligned")
    view = a.view()
    view.flags.writeable = False
    return view


cdef class StepCaches:
    """The stacked time-major buffers of one forward pass, read as the sequence
    of per-step cache tuples the notebook's cell functions build (each made when
    it is read). Every buffer is checked when the object is made and held as a
    read-only view; the weights are read from `parameters` when backward runs
    (the notebook's and cyrnn.reference's rule: the cache holds the dict).

    With `lengths` (SPEC §6) the buffers are packed, (rows, sum of lengths):
    see cyrnn/_packing.py; a step's tuple then holds zeros for the columns
    that do not run at that step."""
    cdef readonly object A, C, G, a0, c0, X, x, parameters, lengths
    cdef readonly Py_ssize_t T
    cdef bint valid
    cdef object _zeros
    cdef object packing     # cyrnn._packing.Packing, or None

    cdef CellInfo info(self):
        raise NotImplementedError

    cdef void trusted(self, A, C, G, a0, c0, X, x, parameters, lengths=None, packing=None):
        """Fill from the engine's own (already read-only) buffers, unchecked.
        (lengths without packing: every column runs every step.)"""
        self.A, self.C, self.G, self.a0, self.c0 = A, C, G, a0, c0
        self.X, self.x, self.parameters = X, x, parameters
        self.lengths, self.packing = lengths, packing
        self.T = (<cnp.ndarray>A).shape[1] if packing is None else packing.active.shape[0]
        self.valid = True

    cdef void checked(self, A, C, G, a0, c0, X, x, parameters, lengths=None) except *:
        cdef CellInfo info = self.info()
        owner = type(self).__name__
        a0 = _check_cache_array(owner, "a0", a0, -1, 2, (-1, -1), ("n_a", "m"))
        cdef int tn = cnp.PyArray_TYPE(<cnp.ndarray>a0)
        n_a, m = a0.shape
        x = _validation.as_array(f"{owner}.x", x)
        _validation.check_ndim(f"{owner}.x", x, ("n_x", "m", "T"))
        T = x.shape[2]
        packing = None
        dims, symbols = (T, m), ("T", "m")
        if lengths is not None:
            lengths = _validation.check_lengths(lengths, m, T)
            lengths.flags.writeable = False
            if not (lengths == T).all():    # (as the engine: else unpacked)
                packing = _packing.packing(lengths, T)
                dims, symbols = (packing.columns,), ("sum(lengths)",)
        A = _check_cache_array(owner, "A", A, tn, 1 + len(dims), (n_a,) + dims,
                               ("n_a",) + symbols)
        if info.spec.gates_are_state:
            G = A
        else:
            G = _check_cache_array(owner, "G", G, tn, 1 + len(dims),
                                   (info.spec.blocks * n_a,) + dims,
                                   (f"{info.spec.blocks}·n_a",) + symbols)
        if info.spec.has_c:
            C = _check_cache_array(owner, "C", C, tn, 1 + len(dims), (n_a,) + dims,
                                   ("n_a",) + symbols)
            if c0 is not None:
                c0 = _check_cache_array(owner, "c0", c0, tn, 2, (n_a, m), ("n_a", "m"))
        X = _check_cache_array(owner, "X", X, tn, 1 + len(dims), (-1,) + dims,
                               ("n_x",) + symbols)
        _validation.check_shape(f"{owner}.x", x, ("n_x", "m", "T"), (X.shape[0], m, T))
        self.trusted(A, C, G, a0, c0, X, x, parameters, lengths, packing)

    cdef object state(self, buffer, Py_ssize_t t, Py_ssize_t r0, Py_ssize_t r1):
        """Rows r0..r1-1 of a buffer at step t, (rows, m): zeros for the columns
        that do not run then."""
        if self.packing is None:
            return buffer[r0:r1, t, :]
        p = self.packing
        cdef Py_ssize_t o = p.offsets[t], n = p.active[t]
        out = np.zeros((r1 - r0, p.order.shape[0]), buffer.dtype)
        out[:, p.order[:n]] = buffer[r0:r1, o:o + n]
        out.flags.writeable = False
        return out

    cdef object input_at(self, Py_ssize_t t):
        """xt of step t (packed: zeros for the columns that do not run)."""
        if self.packing is None:
            return self.x[:, :, t]
        return self.state(self.X, t, 0, self.X.shape[0])

    cdef tuple reduce_args(self, tuple args):
        return args if self.lengths is None else args + (self.lengths,)

    def __len__(self):
        return self.T

    def __getitem__(self, index):
        if not self.valid:
            raise ValueError(f"this {type(self).__name__} was not initialised")
        if isinstance(index, slice):
            return [self.step(t) for t in range(*index.indices(self.T))]
        cdef Py_ssize_t t = index
        if t < 0:
            t += self.T
        if not 0 <= t < self.T:
            raise IndexError(f"step {index} out of range for {self.T} steps")
        return self.step(t)

    cdef tuple step(self, Py_ssize_t t):
        raise NotImplementedError

    def initial_cell_state(self):
        """c0, or (made once) a read-only zeros array when the forward started at 0."""
        if self.c0 is not None:
            return self.c0
        if self._zeros is None:
            self._zeros = np.zeros(self.a0.shape, self.a0.dtype)
            self._zeros.flags.writeable = False
        return self._zeros

    def __repr__(self):
        return f"<{type(self).__name__}: {self.T} steps>"


cdef class RNNStepCaches(StepCaches):
    """Step t is (a_next, a_prev, xt, parameters), as from rnn_cell_forward.

    RNNStepCaches(A, a0, X, x, parameters, lengths=None): A (n_a, T, m) and X
    (n_x, T, m) time-major (packed with lengths), a0 (n_a, m), x (n_x, m, T)
    as given to rnn_forward."""

    def __init__(self, A, a0, X, x, parameters, lengths=None):
        self.checked(A, None, None, a0, None, X, x, parameters, lengths)

    cdef CellInfo info(self):
        return RNN_INFO

    cdef tuple step(self, Py_ssize_t t):
        cdef Py_ssize_t n_a = self.A.shape[0]
        a_prev = self.a0 if t == 0 else self.state(self.A, t - 1, 0, n_a)
        return (self.state(self.A, t, 0, n_a), a_prev, self.input_at(t), self.parameters)

    def __reduce__(self):
        return type(self), self.reduce_args((self.A, self.a0, self.X, self.x, self.parameters))


cdef class LSTMStepCaches(StepCaches):
    """Step t is (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt,
    parameters), as from lstm_cell_forward.

    LSTMStepCaches(A, C, G, a0, c0, X, x, parameters, lengths=None): A, C
    (n_a, T, m), the activated gates G (4·n_a, T, m) in the order f, i, c~, o,
    X (n_x, T, m), all time-major (packed with lengths); a0, c0 (n_a, m) (c0
    None: zeros); x as given."""

    def __init__(self, A, C, G, a0, c0, X, x, parameters, lengths=None):
        self.checked(A, C, G, a0, c0, X, x, parameters, lengths)

    cdef CellInfo info(self):
        return LSTM_INFO

    cdef tuple step(self, Py_ssize_t t):
        cdef Py_ssize_t n_a = self.A.shape[0]
        G = self.G
        if t == 0:
            a_prev, c_prev = self.a0, self.initial_cell_state()
        else:
            a_prev = self.state(self.A, t - 1, 0, n_a)
            c_prev = self.state(self.C, t - 1, 0, n_a)
        return (self.state(self.A, t, 0, n_a), self.state(self.C, t, 0, n_a), a_prev, c_prev,
                self.state(G, t, 0, n_a), self.state(G, t, n_a, 2 * n_a),
                self.state(G, t, 2 * n_a, 3 * n_a), self.state(G, t, 3 * n_a, 4 * n_a),
                self.input_at(t), self.parameters)

    def __reduce__(self):
        return type(self), self.reduce_args((self.A, self.C, self.G, self.a0, self.c0, self.X,
                                             self.x, self.parameters))


cdef class GRUStepCaches(StepCaches):
    """Step t is (a_next, a_prev, rt, ut, cct, xt, parameters), as from
    gru_cell_forward.

    GRUStepCaches(A, G, a0, X, x, parameters, lengths=None): A (n_a, T, m) and
    X (n_x, T, m) time-major (packed with lengths), G (4·n_a, T, m) the
    engine's gate buffer: Γr, Γu, then hc = Wca·a_prev + bca, c~ (reset-after)
    or c~, Γr·a_prev (reset-before), the variant being the one the keys of
    `parameters` choose; a0 (n_a, m), x as given to gru_forward."""
    cdef CellInfo variant

    def __init__(self, A, G, a0, X, x, parameters, lengths=None):
        self.variant = gru_info(parameters)
        self.checked(A, None, G, a0, None, X, x, parameters, lengths)

    cdef CellInfo info(self):
        return self.variant

    cdef tuple step(self, Py_ssize_t t):
        cdef Py_ssize_t n_a = self.A.shape[0]
        a_prev = self.a0 if t == 0 else self.state(self.A, t - 1, 0, n_a)
        r, u, c = [self.state(self.G, t, q * n_a, (q + 1) * n_a)
                   for q in self.variant.gate_blocks]
        return (self.state(self.A, t, 0, n_a), a_prev, r, u, c, self.input_at(t),
                self.parameters)

    def __reduce__(self):
        return type(self), self.reduce_args((self.A, self.G, self.a0, self.X, self.x,
                                             self.parameters))


Sequence.register(StepCaches)


cdef StepCaches new_step_caches(CellInfo info):
    """An empty caches object of the cell's type (tp_new directly: no lookup)."""
    cdef GRUStepCaches gru
    if info.spec.kind == CELL_LSTM:
        return LSTMStepCaches.__new__(LSTMStepCaches)
    if info.spec.kind == CELL_GRU or info.spec.kind == CELL_GRU_RESET_BEFORE:
        gru = GRUStepCaches.__new__(GRUStepCaches)
        gru.variant = info
        return gru
    return RNNStepCaches.__new__(RNNStepCaches)

cdef CellInfo RNN_INFO = CellInfo(_cells.RNN)
cdef CellInfo LSTM_INFO = CellInfo(_cells.LSTM)
cdef CellInfo GRU_INFO = CellInfo(_cells.GRU)
cdef CellInfo GRU_RESET_BEFORE_INFO = CellInfo(_cells.GRU_RESET_BEFORE)
RNN_INFO.caches_type = RNNStepCaches
LSTM_INFO.caches_type = LSTMStepCaches
GRU_INFO.caches_type = GRU_RESET_BEFORE_INFO.caches_type = GRUStepCaches
# by name, for the entry points that take a cell's name
CELLS = {"rnn": RNN_INFO, "lstm": LSTM_INFO, "gru": GRU_INFO,
         "gru_reset_before": GRU_RESET_BEFORE_INFO}


cdef CellInfo gru_info(parameters):
    """The GRU variant the keys of `parameters` choose (SPEC §5)."""
    # the common case first: a dict with the reset-after keys and no 'Wc'
    if type(parameters) is dict and "Wca" in <dict>parameters and "Wc" not in <dict>parameters:
        return GRU_INFO
    return GRU_RESET_BEFORE_INFO if _cells.gru_variant(parameters) is _cells.GRU_RESET_BEFORE \
        else GRU_INFO


cdef CellInfo gru_caches_info(caches):
    """The GRU variant of sequence caches: their own, or (tuples) their
    parameters'. Malformed caches get the reset-after one, whose validation
    then names what is wrong."""
    if isinstance(caches, tuple) and len(<tuple>caches) in (2, 3):
        steps = (<tuple>caches)[0]
        if type(steps) is GRUStepCaches:
            return (<GRUStepCaches>steps).variant or GRU_INFO
        if isinstance(steps, (list, tuple)) and len(steps) > 0:
            first = steps[0]
            if isinstance(first, tuple) and len(<tuple>first) == 7:
                return gru_info((<tuple>first)[6])
    return GRU_INFO


# ------------------------------------------------------------------ calls

cdef class _BackwardJob:
    cdef Backward r
    cdef object keep

    def __call__(self):
        cdef int status
        with nogil:
            status = backward_run(&self.r)
        if status != 0:
            raise MemoryError("could not allocate the backward pass's scratch")


cdef inline Py_ssize_t scratch_ld(Py_ssize_t columns, bint single) noexcept:
    """Row stride (elements) of inference scratch with `columns` columns: whole
    64-byte lines, an odd number of them. A step's rows are then spread over every
    set of the CPU's caches; T·m columns of a power-of-two-rich size (6400, 51200)
    mapped a step's rows to few sets, and its gates were evicted between the
    recurrent GEMM and the step's kernels (LSTM inference, medium shape: see
    benchmarks/README)."""
    cdef Py_ssize_t per_line = 16 if single else 8
    cdef Py_ssize_t lines = (columns + per_line - 1) // per_line
    if lines % 2 == 0:
        lines += 1
    return lines * per_line


cdef tuple prepare_forward(CellInfo info, int tn, cnp.ndarray x, cnp.ndarray a0, object c0,
                           list params, bint cache, bint reverse, Forward* r,
                           object out=None, bint scratch=False, bint scratch_fits=False,
                           bint states_fit=False):
    """Fill r for a forward call on kernel-ready inputs, allocating the outputs
    and (with `cache`) the cache buffers; returns them as (a, y, c, G, A, C, X,
    keep-alive objects). `out` (checked by _run_direction): the (n_a, m, T)
    array to write the hidden states into instead of a new one; a transposed
    view of a C-contiguous (n_a, T, m) array is the time-major state buffer A
    itself (no output in the user's layout is made, nor c: the cell states
    come back as a view of C; `cache` must be on). `scratch`: the cache
    buffers serve this call only (inference), so their rows may be padded
    apart (scratch_ld). Without caches (inference), the time-major buffers can
    be scratch (`scratch_fits`: cache off, scratch on), or when `states_fit`
    the states' alone, for the blocks to stage their states in (forward_chunk's
    stage_states): so for the gated cells, whose scratch would be mostly gates
    (LSTM inference, bigbatch: 0.91x the time in float32, the same in float64,
    GRU 0.83-0.96x), and when the scratch does not fit, except in split runs
    (whose parts scatter their own units)."""
    cdef Py_ssize_t n_x = cnp.PyArray_DIMS(x)[0], m = cnp.PyArray_DIMS(x)[1]
    cdef Py_ssize_t T = cnp.PyArray_DIMS(x)[2], n_a = cnp.PyArray_DIMS(a0)[0]
    cdef Py_ssize_t rows = info.spec.blocks * n_a
    cdef cnp.ndarray Wy = params[info.wy_index]
    cdef Py_ssize_t n_y = cnp.PyArray_DIMS(Wy)[0]
    cdef bint states_out = out is not None and not cnp.PyArray_ISCARRAY(<cnp.ndarray>out)
    keep, b = gate_weights(info, params, tn, n_x, n_a, True, &r.w)
    cdef bint time_major = is_time_major_view(x)
    r.cell = info.spec
    r.n_x, r.n_a, r.n_y, r.m, r.T = n_x, n_a, n_y, m, T
    r.reverse, r.gemm_only, r.single = reverse, False, tn == cnp.NPY_FLOAT
    r.offsets = r.active = r.bounds = NULL
    r.plan = forward_plan(r)
    cdef bint stage = (states_fit and not cache and not states_out and not runs_split(r)
                       and (not info.spec.gates_are_state or not scratch_fits))
    if scratch_fits and not cache and not stage:
        cache = True
    if stage:
        global staged_state_runs
        staged_state_runs += 1
    a = new_array(tn, n_a, m, T) if out is None else out
    y = new_array(tn, n_y, m, T)
    c = new_array(tn, n_a, m, T) if info.spec.has_c and not states_out else None
    cdef bint padded = cache and scratch and not states_out
    cdef Py_ssize_t ld = scratch_ld(T * m, tn == cnp.NPY_FLOAT) if padded or stage else T * m
    G = A = C = X = None
    if stage:
        A = new_array(tn, n_a, ld)
        C = new_array(tn, n_a, ld) if info.spec.has_c else None
    elif padded:
        G = new_array(tn, rows, ld)
        A = G if info.spec.gates_are_state else new_array(tn, n_a, ld)
        C = new_array(tn, n_a, ld) if info.spec.has_c else None
        X = None if time_major else new_array(tn, n_x, ld)
    elif cache:
        A_given = out.transpose(0, 2, 1) if states_out else None
        G = A_given if states_out and info.spec.gates_are_state else new_array(tn, rows, T, m)
        A = G if info.spec.gates_are_state else (
            A_given if states_out else new_array(tn, n_a, T, m))
        C = new_array(tn, n_a, T, m) if info.spec.has_c else None
        X = x.transpose(0, 2, 1) if time_major else new_array(tn, n_x, T, m)
    r.x, r.x_time_major = data(x), time_major
    r.sx0, r.sx1, r.sx2 = elem_stride(x, 0), elem_stride(x, 1), elem_stride(x, 2)
    r.a0, r.c0, r.b = data(a0), data(c0), data(b)
    r.Wy, r.by = data(Wy), data(params[info.by_index])
    r.a_out = NULL if states_out else <void*>data(a)
    r.c_out, r.y_out = <void*>data(c), <void*>data(y)
    r.G, r.A, r.C = <void*>data(G), <void*>data(A), <void*>data(C)
    r.X = NULL if time_major else <void*>data(X)
    r.ld = ld
    r.keep_gates = cache and not scratch
    if states_out and C is not None:
        c = C.transpose(0, 2, 1)
    return a, y, c, G, A, C, X, (keep, b)


cdef object pooled_workspace(const Forward* r):
    """A workspace for one thread's chunks from cyrnn's recycling pool (see
    cyrnn_pool.h: repeated calls skip the page faults of fresh memory), or None."""
    cdef size_t need = chunk_workspace(r)
    return new_array(cnp.NPY_FLOAT if r.single else cnp.NPY_DOUBLE, need, 1) if need else None


cdef void run_forward(Forward* r, object keep, int n_threads, Py_ssize_t work_size) except *:
    cdef Py_ssize_t n = n_chunks(r.m)
    cdef _ForwardJob job
    cdef _SplitJob split
    cdef int status
    cdef void* ws
    if n_threads > 1 and runs_split(r):
        split = _SplitJob.__new__(_SplitJob)
        split.r, split.keep = r[0], keep
        split.workspace = pooled_workspace(r)
        if r.single:
            split_init[float](0, &split.sp, &split.r, <float*>data(split.workspace),
                              n_threads)
        else:
            split_init[double](0, &split.sp, &split.r, <double*>data(split.workspace),
                               n_threads)
        run_chunks(split, max(split.sp.unit_parts, split.sp.gemm_parts[0]), n_threads)
        if r.a_out != NULL:
            with nogil:
                run_head(r)
        return
    if n_threads <= 1 or n <= 1:
        workspace = pooled_workspace(r)
        ws = <void*>data(workspace)
        if work_size >= CONCURRENCY_CHECK_SIZE:
            with concurrent_use(work_size):
                with nogil:
                    status = forward_chunks(r, 0, n, ws)
        else:
            with nogil:
                status = forward_chunks(r, 0, n, ws)
        if status != 0:
            raise MemoryError("could not allocate the per-thread workspace")
        return
    job = _ForwardJob.__new__(_ForwardJob)
    job.r, job.keep = r[0], keep
    run_chunks(job, n, n_threads)


cdef tuple sequence_forward(CellInfo info, x, a0, c0, parameters, cache, n_threads,
                            bint reverse=False, lengths=None, out=None):
    """(a, y, c, caches) of a sequence forward; c None for cells without one,
    caches None without `cache`; with `lengths`, caches (steps, x, lengths).
    out: see _run_direction."""
    cdef int tn = float_typenum(x)
    cdef list params = None
    cdef Py_ssize_t n_x, m, T, n_a
    if cache is not True and cache is not False:
        _validation.check_cache_flag(cache)
    cdef int threads = 1 if type(n_threads) is int and n_threads == 1 else \
        resolve_threads(n_threads)
    x_given = x
    if (tn >= 0 and strided_ready(x, tn, 3)
            and ready(a0, tn, 2, -1, cnp.PyArray_DIMS(<cnp.ndarray>x)[1])
            and (c0 is None or (info.spec.has_c and ready(
                c0, tn, 2, cnp.PyArray_DIMS(<cnp.ndarray>a0)[0],
                cnp.PyArray_DIMS(<cnp.ndarray>x)[1])))):
        n_x = cnp.PyArray_DIMS(<cnp.ndarray>x)[0]
        m = cnp.PyArray_DIMS(<cnp.ndarray>x)[1]
        T = cnp.PyArray_DIMS(<cnp.ndarray>x)[2]
        n_a = cnp.PyArray_DIMS(<cnp.ndarray>a0)[0]
        params = fast_parameters(info, parameters, tn, n_x, n_a)
        if params is not None and not blas_sizes_fit(
                m * T, info.spec.blocks * n_a + n_x,
                cnp.PyArray_DIMS(<cnp.ndarray>params[info.wy_index])[0]):
            params = None
    if params is None:
        x_given = _validation.as_array("x", x)
        x, a0, c0, p = _validation.forward_inputs(info.cell, x_given, a0, c0, parameters, True)
        params = validated_parameters(info, p)
        tn = float_typenum(x)
    # Without caches, time-major buffers are still the fastest place for the
    # states of wide batches (whole output rows leave them at once, streamed):
    # they come from the pool and go back to it after the call, up to
    # SCRATCH_BYTES (the RNN's scratch, the gated cells' states: see
    # prepare_forward); the steps run in blocks in a small workspace otherwise.
    # Every way computes the same GEMMs and passes, so results are
    # bit-identical to the cached call.
    n_x = cnp.PyArray_DIMS(<cnp.ndarray>x)[0]
    m = cnp.PyArray_DIMS(<cnp.ndarray>x)[1]
    T = cnp.PyArray_DIMS(<cnp.ndarray>x)[2]
    n_a = cnp.PyArray_DIMS(<cnp.ndarray>a0)[0]
    if lengths is not None:
        lengths = _validation.check_lengths(lengths, m, T)
        lengths.flags.writeable = False
        if not (lengths == T).all():
            return packed_forward(info, tn, x, a0, c0, params, lengths, cache, threads, x_given,
                                  parameters, reverse, _checked_out(out, tn, n_a, m, T, False))
        # every column runs every step: the ordinary run, caches recording lengths
    cdef double scratch = (<double>(info.spec.blocks + (0 if info.spec.gates_are_state else 1)
                                    + info.spec.has_c) * n_a + n_x) * T * m * \
        (4 if tn == cnp.NPY_FLOAT else 8)
    cdef double outputs = (<double>(2 if info.spec.has_c else 1) * n_a
                           + cnp.PyArray_DIMS(<cnp.ndarray>params[info.wy_index])[0]) * T * m * \
        (4 if tn == cnp.NPY_FLOAT else 8)
    cdef Forward r
    cdef Py_ssize_t item = 4 if tn == cnp.NPY_FLOAT else 8
    cdef bint wide_outputs = outputs > CACHED_OUTPUT_BYTES and m * item >= NARROW_ROW_BYTES
    out = _checked_out(out, tn, n_a, m, T, not cache)
    if out is not None and not cnp.PyArray_ISCARRAY(<cnp.ndarray>out) and \
            cnp.PyArray_DIMS(<cnp.ndarray>params[info.wy_index])[0] > 0:
        raise ValueError("a time-major out holds the hidden states only: the output "
                         "layer must have 0 rows")
    a, y, c, G, A, C, X, keep = prepare_forward(
        info, tn, x, a0, c0, params,
        cache or (out is not None and not cnp.PyArray_ISCARRAY(<cnp.ndarray>out)), reverse, &r,
        out, not cache, wide_outputs and scratch <= SCRATCH_BYTES,
        wide_outputs and (1 + info.spec.has_c) * <double>n_a * T * m * item <= SCRATCH_BYTES)
    run_forward(&r, (x, a0, c0, params, keep, a, y, c, G, A, C, X), threads,
                n_a * m * T if threads == 1 else 0)
    if not cache:
        return a, y, c, None
    cdef StepCaches steps = new_step_caches(info)
    for buffer in (G, A, C, X):
        if buffer is not None:
            freeze(buffer)
    steps.trusted(A, C, G, a0, c0, X, x_given, parameters, lengths)
    return a, y, c, (steps, x_given) if lengths is None else (steps, x_given, lengths)


cdef void run_head(const Forward* r) noexcept nogil:
    if r.single:
        output_head[float](r, 0, r.m, <const float*>r.a_out)
    else:
        output_head[double](r, 0, r.m, <const double*>r.a_out)


cdef struct Packed:
    # A Packing (cyrnn/_packing.py) as the C kernels read it
    Py_ssize_t m
    const Py_ssize_t* order
    const Py_ssize_t* position
    const Py_ssize_t* sorted_lengths
    const Py_ssize_t* offsets


cdef inline Packed packed_view(object p):
    cdef Packed k
    k.m = p.order.shape[0]
    k.order = <const Py_ssize_t*>data(p.order)
    k.position = <const Py_ssize_t*>data(p.position)
    k.sorted_lengths = <const Py_ssize_t*>data(p.sorted_lengths)
    k.offsets = <const Py_ssize_t*>data(p.offsets)
    return k


cdef void pack_into(bint single, const Packed* k, Py_ssize_t n, Py_ssize_t steps,
                    const void* src, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2, void* dst,
                    Py_ssize_t ld) noexcept nogil:
    """dst (n, ld) packed <- the first `steps` steps of src (n, m, ·), element
    strides s0, s1, s2."""
    if single:
        pack_columns(n, k.m, steps, k.order, k.sorted_lengths, k.offsets, <const float*>src,
                     s0, s1, s2, <float*>dst, ld)
    else:
        pack_columns(n, k.m, steps, k.order, k.sorted_lengths, k.offsets, <const double*>src,
                     s0, s1, s2, <double*>dst, ld)


cdef void unpack_into(bint single, const Packed* k, Py_ssize_t n, Py_ssize_t steps,
                      const void* src, Py_ssize_t ld, void* dst) noexcept nogil:
    """dst (n, m, steps) C-contiguous <- packed src (n, ld), zeros where a
    column does not run."""
    if single:
        unpack_columns(n, k.m, steps, k.order, k.position, k.sorted_lengths, k.offsets,
                       <const float*>src, ld, <float*>dst, k.m * steps)
    else:
        unpack_columns(n, k.m, steps, k.order, k.position, k.sorted_lengths, k.offsets,
                       <const double*>src, ld, <double*>dst, k.m * steps)


cdef void zero_padding(bint single, const Packed* k, Py_ssize_t n, Py_ssize_t T,
                       void* y) noexcept nogil:
    """y (n, m, T) C-contiguous: 0 at the steps where a column does not run."""
    cdef size_t item = 4 if single else 8
    cdef Py_ssize_t i, q, L
    for i in range(n):
        for q in range(k.m):
            L = k.sorted_lengths[q]
            if L < T:
                memset(<char*>y + ((i * k.m + k.order[q]) * T + L) * item, 0, (T - L) * item)


cdef tuple packed_forward(CellInfo info, int tn, cnp.ndarray x, cnp.ndarray a0, c0, list params,
                          lengths, bint cache, int threads, x_given, parameters,
                          bint reverse=False, out=None):
    """sequence_forward with variable lengths, on kernel-ready inputs: the
    columns sorted and packed (cyrnn/_packing.py), the driver on the packed
    buffers, then the outputs unpacked and the output head run."""
    cdef Py_ssize_t n_x = x.shape[0], m = x.shape[1], T = x.shape[2], n_a = a0.shape[0]
    plan = _packing.packing(lengths, T)
    cdef Packed k = packed_view(plan)
    cdef Py_ssize_t P = plan.columns
    cdef bint single = tn == cnp.NPY_FLOAT
    a0p = np.ascontiguousarray(a0[:, plan.order])
    c0p = None if c0 is None else np.ascontiguousarray(c0[:, plan.order])
    X = new_array(tn, n_x, P)
    G = new_array(tn, info.spec.blocks * n_a, P)
    A = G if info.spec.gates_are_state else new_array(tn, n_a, P)
    C = new_array(tn, n_a, P) if info.spec.has_c else None
    cdef cnp.ndarray Wy = params[info.wy_index]
    cdef Py_ssize_t n_y = Wy.shape[0]
    a = new_array(tn, n_a, m, T) if out is None else out
    c = new_array(tn, n_a, m, T) if info.spec.has_c else None
    y = new_array(tn, n_y, m, T)
    bounds = _packing.balanced_bounds(plan, n_chunks(m))
    cdef Forward r
    keep, b = gate_weights(info, params, tn, n_x, n_a, True, &r.w)
    r.cell = info.spec
    r.n_x, r.n_a, r.n_y, r.m, r.T = n_x, n_a, n_y, m, T
    r.x, r.x_time_major, r.sx0, r.sx1, r.sx2 = data(X), False, 0, 0, 0
    r.a0, r.c0, r.b = data(a0p), data(c0p), data(b)
    r.Wy, r.by = NULL, data(params[info.by_index])      # the head runs below
    r.a_out, r.c_out, r.y_out = <void*>data(a), <void*>data(c), <void*>data(y)
    r.G, r.A, r.C, r.X = <void*>data(G), <void*>data(A), <void*>data(C), <void*>data(X)
    r.reverse, r.gemm_only, r.single = reverse, False, single
    r.offsets = <const Py_ssize_t*>data(plan.offsets)
    r.active = <const Py_ssize_t*>data(plan.active)
    r.bounds = <const Py_ssize_t*>data(bounds)
    r.ld = P
    r.keep_gates = cache
    r.plan = forward_plan(&r)
    cdef const void* xp = data(x)
    cdef Py_ssize_t s0 = elem_stride(x, 0), s1 = elem_stride(x, 1), s2 = elem_stride(x, 2)
    with nogil:
        pack_into(single, &k, n_x, T, xp, s0, s1, s2, r.X, P)
    run_forward(&r, (X, a0p, c0p, params, keep, b, plan, bounds, a, y, G, A, C), threads,
                n_a * m * T if threads == 1 else 0)
    r.Wy = data(Wy)
    with nogil:
        unpack_into(single, &k, n_a, T, r.A, P, r.a_out)
        if r.C != NULL:
            unpack_into(single, &k, n_a, T, r.C, P, r.c_out)
        run_head(&r)
        zero_padding(single, &k, n_y, T, r.y_out)
    if not cache:
        return a, y, c, None
    cdef StepCaches steps = new_step_caches(info)
    for buffer in (G, A, C, X):
        if buffer is not None:
            freeze(buffer)
    steps.trusted(A, C, G, a0, c0, X, x_given, parameters, lengths, plan)
    return a, y, c, (steps, x_given, lengths)


cdef tuple cell_forward(CellInfo info, xt, a_prev, c_prev, parameters):
    """(a_next, c_next, yt_pred, gates) of one step; c_next None for cells
    without one; gates: views of the activated gate block, one per gate."""
    cdef int tn = float_typenum(xt)
    cdef list params = None
    cdef Py_ssize_t n_x, m, n_a
    if (tn >= 0 and ready(xt, tn, 2, -1)
            and ready(a_prev, tn, 2, -1, cnp.PyArray_DIMS(<cnp.ndarray>xt)[1])
            and (not info.spec.has_c or ready(c_prev, tn, 2,
                                              cnp.PyArray_DIMS(<cnp.ndarray>a_prev)[0],
                                              cnp.PyArray_DIMS(<cnp.ndarray>xt)[1]))):
        n_x = cnp.PyArray_DIMS(<cnp.ndarray>xt)[0]
        m = cnp.PyArray_DIMS(<cnp.ndarray>xt)[1]
        n_a = cnp.PyArray_DIMS(<cnp.ndarray>a_prev)[0]
        params = fast_parameters(info, parameters, tn, n_x, n_a)
        if params is not None and not blas_sizes_fit(
                m, info.spec.blocks * n_a + n_x,
                cnp.PyArray_DIMS(<cnp.ndarray>params[info.wy_index])[0]):
            params = None
    if params is None:
        xt, a_prev, c_prev, p = _validation.forward_inputs(info.cell, xt, a_prev, c_prev,
                                                           parameters, False)
        params = validated_parameters(info, p)
        tn = float_typenum(xt)
    n_x = cnp.PyArray_DIMS(<cnp.ndarray>xt)[0]
    m = cnp.PyArray_DIMS(<cnp.ndarray>xt)[1]
    n_a = cnp.PyArray_DIMS(<cnp.ndarray>a_prev)[0]
    cdef Py_ssize_t rows = info.spec.gates * n_a, width = n_a + n_x, q
    cdef cnp.ndarray Wy = params[info.wy_index]
    cdef Py_ssize_t n_y = Wy.shape[0]
    cdef Forward r
    keep, b = gate_weights(info, params, tn, n_x, n_a, rows * width <= STACK_LIMIT, &r.w)
    rows = info.spec.blocks * n_a
    a = new_array(tn, n_a, m)
    y = new_array(tn, n_y, m)
    c = new_array(tn, n_a, m) if info.spec.has_c else None
    G = a if info.spec.gates_are_state else new_array(tn, rows, m)
    # T = 1: the outputs are the time-major buffers themselves, xt is read in place
    r.cell = info.spec
    r.n_x, r.n_a, r.n_y, r.m, r.T = n_x, n_a, n_y, m, 1
    r.x, r.x_time_major, r.sx0, r.sx1, r.sx2 = data(xt), True, m, 1, m
    r.a0, r.c0, r.b = data(a_prev), data(c_prev), data(b)
    r.Wy, r.by = data(Wy), data(params[info.by_index])
    r.a_out, r.c_out, r.y_out = <void*>data(a), <void*>data(c), <void*>data(y)
    r.G, r.A, r.C, r.X = <void*>data(G), <void*>data(a), <void*>data(c), NULL
    r.reverse, r.gemm_only, r.single = False, False, tn == cnp.NPY_FLOAT
    r.offsets = r.active = r.bounds = NULL
    r.plan = PLAN_DIRECT        # one step: no recurrent products (concat) to plan
    r.ld, r.keep_gates = m, True
    cdef int status
    if holds_gil_worth_releasing(<double>m * (rows * width + n_y * n_a)):
        with nogil:
            status = forward_chunks(&r, 0, n_chunks(m), NULL)
    else:
        status = forward_chunks(&r, 0, n_chunks(m), NULL)
    if status != 0:
        raise MemoryError("could not allocate the workspace")
    if info.spec.gates_are_state:
        return a, c, y, ()
    cdef list gates = []
    for q in info.gate_blocks:
        gates.append(block_view(G, q * n_a * m, n_a, m))
    return a, c, y, tuple(gates)


cdef inline cnp.ndarray new_gradient(int tn, Py_ssize_t T_da, Py_ssize_t d0, Py_ssize_t d1):
    return new_array(tn, d0, d1) if T_da > 0 else new_zeros(tn, d0, d1)


cdef dict run_backward(CellInfo info, int tn, bint cell_call, cnp.ndarray da, object G,
                       object A, object C, object a0, object c0, object X, list params,
                       object dc_init, Py_ssize_t T, bint reverse=False, bint gemm_only=False,
                       _BackwardJob into=None, object packing=None):
    """The gradient dict of a backward call on kernel-ready buffers. A, C, G, X
    hold T steps (time-major; for a cell call, T = 1 and they are 2-D; packed
    (rows, sum of lengths) with a `packing`), da (n_a, m, T_da) or, for a cell
    call, (n_a, m)."""
    cdef Py_ssize_t n_a = cnp.PyArray_DIMS(<cnp.ndarray>a0)[0]
    cdef Py_ssize_t m = cnp.PyArray_DIMS(<cnp.ndarray>a0)[1]
    cdef Py_ssize_t n_x = cnp.PyArray_DIMS(<cnp.ndarray>X)[0]
    cdef Py_ssize_t T_da = 1 if cell_call else cnp.PyArray_DIMS(da)[2]
    cdef Py_ssize_t rows = info.spec.gates * n_a, width = n_a + n_x, q
    cdef Backward rb
    cdef Backward* r = &rb if into is None else &into.r
    keep, _ = gate_weights(info, params, tn, n_x, n_a,
                           not cell_call or rows * width <= STACK_LIMIT, &r.w, False)
    dG = dA = None
    cdef Py_ssize_t P
    cdef Packed k
    if packing is not None:
        # the columns sorted and packed like the forward's (cyrnn/_packing.py);
        # gradients start at zero: columns join as the steps go back
        P = packing.offsets[T_da]
        a0 = np.ascontiguousarray(a0[:, packing.order])
        if c0 is not None:
            c0 = np.ascontiguousarray(c0[:, packing.order])
        dG = new_array(tn, info.spec.blocks * n_a, P)
        dA = dG if info.spec.gates_are_state else new_array(tn, n_a, P)
        k = packed_view(packing)
        pack_into(tn == cnp.NPY_FLOAT, &k, n_a, T_da, data(da), elem_stride(da, 0),
                  elem_stride(da, 1), elem_stride(da, 2), <void*>data(dA), P)
        dX = new_array(tn, n_x, P)
        dx = None
        da0 = new_zeros(tn, n_a, m)
    elif not cell_call:
        dG = new_array(tn, info.spec.blocks * n_a, T_da, m)
        dA = dG if info.spec.gates_are_state else new_array(tn, n_a, T_da, m)
    if packing is None:
        dx = new_array(tn, n_x, m) if cell_call else new_array(tn, n_x, m, T_da)
        dX = dx if T_da <= 1 else new_array(tn, n_x, T_da, m)
        # every gradient is written in full when there is a step; zeros when none
        da0 = new_gradient(tn, T_da, n_a, m)
    dc = None
    if info.spec.has_c:
        dc = new_zeros(tn, n_a, m) if dc_init is None else cnp.PyArray_NewCopy(dc_init,
                                                                                cnp.NPY_CORDER)
    if info.weights_on_concat:
        dW = new_gradient(tn, T_da, rows, width)
        db = new_gradient(tn, T_da, info.spec.bias_blocks * n_a, 1)
        dWx, dWa = None, dW     # dWx: the columns from n_a on, see r.dWx below
    else:
        dWx, dWa = new_gradient(tn, T_da, rows, n_x), new_gradient(tn, T_da, rows, n_a)
        db = new_gradient(tn, T_da, rows, 1)
    r.cell = info.spec
    r.n_x, r.n_a, r.m, r.T, r.T_da = n_x, n_a, m, T, T_da
    r.da = data(da)
    r.sd0, r.sd1 = elem_stride(da, 0), elem_stride(da, 1)
    r.sd2 = 0 if cell_call else elem_stride(da, 2)
    r.G, r.A, r.C, r.X = data(G), data(A), data(C), data(X)
    r.a0, r.c0 = data(a0), data(c0)
    r.dA, r.dG, r.dX, r.dc = <void*>data(dA), <void*>data(dG), <void*>data(dX), <void*>data(dc)
    r.dx, r.da0 = <void*>data(dx), <void*>data(da0)
    r.dWa, r.db = <void*>data(dWa), <void*>data(db)
    r.dWx = <char*>data(dW) + n_a * (4 if tn == cnp.NPY_FLOAT else 8) \
        if info.weights_on_concat else <void*>data(dWx)
    r.lddwx = width if info.weights_on_concat else n_x
    r.lddwa = width if info.weights_on_concat else n_a
    r.reverse, r.gemm_only, r.single = reverse, gemm_only, tn == cnp.NPY_FLOAT
    r.offsets = r.active = NULL
    if packing is not None:
        r.offsets = <const Py_ssize_t*>data(packing.offsets)
        r.active = <const Py_ssize_t*>data(packing.active)
    if into is not None:
        into.keep = (da, G, A, C, a0, c0, X, params, keep, dG, dA, dx, dX, da0, dc, dWx, dWa,
                     db)
        return None
    cdef int status
    if not cell_call or holds_gil_worth_releasing(2.0 * m * rows * width):
        with nogil:
            status = backward_run(r)
    else:
        status = backward_run(r)
    if status != 0:
        raise MemoryError("could not allocate the backward pass's scratch")
    if packing is not None:
        # back to the user's layout and column order (zeros where nothing runs)
        dx = new_array(tn, n_x, m, T_da)
        unpack_into(tn == cnp.NPY_FLOAT, &k, n_x, T_da, data(dX), P, <void*>data(dx))
        da0_sorted, da0 = da0, new_array(tn, n_a, m)
        da0[:, packing.order] = da0_sorted
    cdef dict grads
    if cell_call:
        grads = {"dxt": dx, "da_prev": da0}
        if info.spec.has_c:
            grads["dc_prev"] = dc
    else:
        grads = {"dx": dx, "da0": da0}
    dW_keys, db_keys = info.dW_keys, info.db_keys
    if info.weights_on_concat:
        # each gate's dW then db (the notebook's order); extra bias blocks last
        paired = info.spec.bias_blocks == info.spec.gates
        for q in range(info.spec.gates):
            if isinstance(dW_keys[q], str):
                grads[dW_keys[q]] = block_view(dW, q * n_a * width, n_a, width)
            else:
                # a row block given as two matrices: [dWa | dWx], apart
                grads[dW_keys[q][0]] = column_block(dW, q * n_a, n_a, 0, n_a)
                grads[dW_keys[q][1]] = column_block(dW, q * n_a, n_a, n_a, n_x)
            if paired or q < info.spec.gates - 1:
                grads[db_keys[q]] = block_view(db, q * n_a, n_a, 1)
        for q in range(info.spec.gates if paired else info.spec.gates - 1,
                       info.spec.bias_blocks):
            grads[db_keys[q]] = block_view(db, q * n_a, n_a, 1)
    else:
        grads[dW_keys[0]], grads[dW_keys[1]], grads[db_keys[0]] = dWx, dWa, db
    return grads


cdef cnp.ndarray column_block(cnp.ndarray src, Py_ssize_t row0, Py_ssize_t rows,
                              Py_ssize_t col0, Py_ssize_t cols):
    """A C-contiguous copy of src[row0:row0 + rows, col0:col0 + cols] (src:
    2-D C-contiguous)."""
    cdef cnp.ndarray out = new_array(cnp.PyArray_TYPE(src), rows, cols)
    cdef Py_ssize_t ld = cnp.PyArray_DIMS(src)[1], item = cnp.PyArray_ITEMSIZE(src), i
    for i in range(rows):
        memcpy(<char*>cnp.PyArray_DATA(out) + i * cols * item,
               <char*>cnp.PyArray_DATA(src) + ((row0 + i) * ld + col0) * item, cols * item)
    return out


cdef object stacked_gates(int tn, tuple gates, Py_ssize_t n_a, Py_ssize_t m):
    """The activated gates of a step cache as one (gates·n_a, m) block."""
    cdef cnp.ndarray G = new_array(tn, len(gates) * n_a, m)
    cdef size_t nbytes = n_a * m * (4 if tn == cnp.NPY_FLOAT else 8)
    cdef Py_ssize_t q
    for q in range(len(gates)):
        memcpy(<char*>cnp.PyArray_DATA(G) + q * nbytes, cnp.PyArray_DATA(gates[q]), nbytes)
    return G


cdef void extra_gru_block(floating dummy, int kind, Py_ssize_t n_a, Py_ssize_t m,
                         const void* Wca, const void* bca, const void* r, const void* a_prev,
                         void* out) noexcept nogil:
    """One step's G block that a GRU step cache does not hold: hc = Wca·a_prev
    + bca (reset-after) or ra = Γr·a_prev (reset-before), all (n_a, m) C-contiguous."""
    cdef floating* o = <floating*>out
    cdef Py_ssize_t k
    if kind == CELL_GRU:
        fill_rows(n_a, m, <const floating*>bca, o, m)
        gemm(False, False, n_a, m, n_a, <floating>1, <const floating*>Wca, n_a,
             <const floating*>a_prev, m, <floating>1, o, m)
    else:
        for k in range(n_a * m):
            o[k] = (<const floating*>r)[k] * (<const floating*>a_prev)[k]


cdef object gate_buffer(CellInfo info, int tn, tuple gates, object a_prev, list params):
    """The engine's G from the activated gates of step caches, (n_a, m) each
    (one step) or (n_a, T, m) (stacked steps, a_prev likewise): the gates in
    their blocks, and for the GRU the block its backward needs that the
    notebook-style tuple does not hold: hc = Wca·a_prev + bca (reset-after) or
    ra = Γr·a_prev (reset-before). One step's arrays are kernel-ready."""
    cdef Py_ssize_t n_a = a_prev.shape[0], m, q
    cdef cnp.ndarray G
    cdef size_t item = 4 if tn == cnp.NPY_FLOAT else 8, nbytes
    cdef const void* W = NULL
    cdef const void* b = NULL
    if a_prev.ndim == 2:
        m = a_prev.shape[1]
        if info.extra_block < 0:
            return stacked_gates(tn, gates, n_a, m)
        G = new_array(tn, info.spec.blocks * n_a, m)
        nbytes = n_a * m * item
        for q in range(len(gates)):
            memcpy(<char*>cnp.PyArray_DATA(G) + <int>info.gate_blocks[q] * nbytes,
                   cnp.PyArray_DATA(<cnp.ndarray>gates[q]), nbytes)
        if info.spec.kind == CELL_GRU:
            W, b = data(params[info.keys.index("Wca")]), data(params[info.keys.index("bca")])
        if tn == cnp.NPY_FLOAT:
            extra_gru_block[float](0, info.spec.kind, n_a, m, W, b, data(gates[0]),
                                   data(a_prev),
                                   <char*>cnp.PyArray_DATA(G) + info.extra_block * nbytes)
        else:
            extra_gru_block[double](0, info.spec.kind, n_a, m, W, b, data(gates[0]),
                                    data(a_prev),
                                    <char*>cnp.PyArray_DATA(G) + info.extra_block * nbytes)
        return G
    blocks = [None] * info.spec.blocks
    for g, q in zip(gates, info.gate_blocks):
        blocks[q] = g
    if info.extra_block < 0:
        pass
    elif info.spec.kind == CELL_GRU:
        Wca, bca = params[info.keys.index("Wca")], params[info.keys.index("bca")]
        extra = np.matmul(Wca, a_prev.reshape(n_a, -1)).reshape(a_prev.shape)
        extra += bca.reshape((n_a, 1, 1))
        blocks[info.extra_block] = extra
    else:
        blocks[info.extra_block] = gates[0] * a_prev
    return np.ascontiguousarray(np.concatenate(blocks, axis=0),
                                np.float32 if tn == cnp.NPY_FLOAT else np.float64)


cdef dict cell_backward(CellInfo info, da_next, dc_next, cache):
    cdef int tn = float_typenum(da_next)
    cdef list params = None
    cdef tuple entries
    cdef Py_ssize_t k, n_a, m, n_x
    if (tn >= 0 and type(cache) is tuple and len(<tuple>cache) == info.n_entries
            and ready(da_next, tn, 2, -1)):
        entries = <tuple>cache
        n_a = cnp.PyArray_DIMS(<cnp.ndarray>da_next)[0]
        m = cnp.PyArray_DIMS(<cnp.ndarray>da_next)[1]
        if not info.spec.has_c or ready(dc_next, tn, 2, n_a, m):
            for k in range(info.i_xt):
                if not ready(entries[k], tn, 2, n_a, m):
                    break
            else:
                xt = entries[info.i_xt]
                if ready(xt, tn, 2, -1, m):
                    n_x = cnp.PyArray_DIMS(<cnp.ndarray>xt)[0]
                    params = fast_parameters(info, entries[info.i_parameters], tn, n_x, n_a,
                                             True)
                    if params is not None and not blas_sizes_fit(
                            m, info.spec.blocks * n_a + n_x, 0):
                        params = None
    if params is None:
        return cell_backward_checked(info, da_next, dc_next, cache)
    return cell_backward_ready(info, tn, da_next, dc_next, entries, params)


cdef dict cell_backward_ready(CellInfo info, int tn, da_next, dc_next, tuple entries,
                              list params):
    cdef Py_ssize_t n_a = cnp.PyArray_DIMS(<cnp.ndarray>da_next)[0]
    cdef Py_ssize_t m = cnp.PyArray_DIMS(<cnp.ndarray>da_next)[1]
    a_next = entries[info.i_a_next]
    if info.spec.gates_are_state:
        G = a_next
    else:
        G = gate_buffer(info, tn, tuple([entries[k] for k in info.i_gates]),
                        entries[info.i_a_prev], params)
    C = c_prev = None
    if info.spec.has_c:
        C, c_prev = entries[info.i_c_next], entries[info.i_c_prev]
    return run_backward(info, tn, True, da_next, G, a_next, C, entries[info.i_a_prev], c_prev,
                        entries[info.i_xt], params, dc_next, 1)


cdef dict cell_backward_checked(CellInfo info, da_next, dc_next, cache):
    cell = info.cell
    da_next = _validation.as_array("da_next", da_next)
    if info.spec.has_c:
        dc_next = _validation.as_array("dc_next", dc_next)
    entries = _validation.step_arrays(cell, cache, "cache")
    n_a, m = entries[0].shape
    xt = entries[cell.step_cache.index("xt")]
    n_x = xt.shape[0]
    _validation.check_shape("da_next", da_next, ("n_a", "m"), (n_a, m))
    if info.spec.has_c:
        _validation.check_shape("dc_next", dc_next, ("n_a", "m"), (n_a, m))
    parameters = entries[len(entries) - 1]
    p, _ = _validation.check_parameters(cell, parameters, n_x, n_a, keys=cell.backward_keys)
    _validation.check_blas_sizes(m, len(cell.blocks) * n_a + n_x)
    weights = [p[key] for key in cell.backward_keys]
    dtype = _validation.compute_dtype([da_next, dc_next, *entries[:len(entries) - 1], *weights])
    entries = [_validation.contiguous(e, dtype) for e in entries[:len(entries) - 1]] + [parameters]
    params = validated_parameters(info, {k: _validation.contiguous(v, dtype)
                                         for k, v in p.items()})
    dc_next = None if dc_next is None else _validation.contiguous(dc_next, dtype)
    return cell_backward_ready(info, float_typenum(entries[0]),
                               _validation.contiguous(da_next, dtype), dc_next, tuple(entries),
                               params)


cdef dict sequence_backward(CellInfo info, da, caches):
    cdef int tn
    cdef StepCaches steps
    cdef list params
    cdef Py_ssize_t n_a, T, m, n_x
    # cyrnn's own caches: (steps, x), or (steps, x, lengths) with their lengths
    if type(caches) is tuple and type((<tuple>caches)[0]) is info.caches_type and (
            (len(<tuple>caches) == 2 and (<StepCaches>(<tuple>caches)[0]).lengths is None)
            or (len(<tuple>caches) == 3
                and (<tuple>caches)[2] is (<StepCaches>(<tuple>caches)[0]).lengths)):
        steps = (<tuple>caches)[0]
        if steps.valid:
            tn = cnp.PyArray_TYPE(<cnp.ndarray>steps.A)
            n_a = cnp.PyArray_DIMS(<cnp.ndarray>steps.a0)[0]
            m = cnp.PyArray_DIMS(<cnp.ndarray>steps.a0)[1]
            T = steps.T
            n_x = cnp.PyArray_DIMS(<cnp.ndarray>steps.X)[0]
            if ready(da, tn, 3, n_a, m) and cnp.PyArray_DIMS(<cnp.ndarray>da)[2] <= T:
                params = fast_parameters(info, steps.parameters, tn, n_x, n_a, True)
                if params is not None and blas_sizes_fit(
                        cnp.PyArray_DIMS(<cnp.ndarray>da)[2] * m, info.spec.blocks * n_a + n_x,
                        0):
                    return run_backward(info, tn, False, da, steps.G, steps.A, steps.C,
                                        steps.a0, steps.c0, steps.X, params, None, T,
                                        False, False, None, steps.packing)
    return sequence_backward_checked(info, da, caches)


cdef dict sequence_backward_checked(CellInfo info, da, caches):
    cell = info.cell
    names = cell.step_cache
    da = _validation.as_array("da", da)
    steps, _, lengths = _validation.split_caches(caches, cell)
    packing = None
    if type(steps) is info.caches_type:
        if not (<StepCaches>steps).valid:
            raise ValueError(f"caches[0] is a {type(steps).__name__} that was not initialised")
        n_a, m = steps.a0.shape
        T = steps.T
        if lengths is not None:
            lengths = _validation.check_lengths(lengths, m, T)
            if not np.array_equal(lengths, np.full(m, T) if steps.lengths is None
                                  else steps.lengths):
                raise ValueError("caches[2] (lengths) differs from the lengths caches[0] "
                                 "was made with")
        T_da = _validation.check_da(da, T, n_a, m)
        G, A, C, a0, c0, X = steps.G, steps.A, steps.C, steps.a0, steps.c0, steps.X
        packing = (<StepCaches>steps).packing
        gates = ()
        parameters = steps.parameters
    else:
        if len(steps) == 0:
            raise ValueError("caches[0] is empty; it needs one step cache per time step")
        first = _validation.step_arrays(cell, steps[0], "caches[0][0]")
        n_a, m = first[0].shape
        T_da = _validation.check_da(da, len(steps), n_a, m)
        arrays = [first] + [_validation.step_arrays(cell, steps[t], f"caches[0][{t}]", n_a, m)
                            for t in range(1, T_da)]

        def stacked(name, rows):
            k = names.index(name)
            if T_da == 0:
                return np.zeros((rows, 0, m))
            return np.stack([s[k] for s in arrays], axis=1)

        n_x = first[names.index("xt")].shape[0]
        A, X = stacked("a_next", n_a), stacked("xt", n_x)
        a0 = first[names.index("a_prev")]
        C = c0 = None
        if cell.has_c:
            C, c0 = stacked("c_next", n_a), first[names.index("c_prev")]
        # G is made below from these, once the dtype is known
        G, gates = None, tuple(stacked(g, n_a) for g in cell.gate_cache)
        parameters = first[len(first) - 1]
    n_x = X.shape[0]
    p, _ = _validation.check_parameters(cell, parameters, n_x, n_a, keys=cell.backward_keys)
    _validation.check_blas_sizes(T_da * m, len(cell.blocks) * n_a + n_x)
    weights = [p[key] for key in cell.backward_keys]
    dtype = _validation.compute_dtype([da, G, A, C, a0, c0, X, *gates, *weights])
    G, A, C, a0, c0, X = [None if v is None else _validation.contiguous(v, dtype)
                          for v in (G, A, C, a0, c0, X)]
    params = validated_parameters(info, {k: _validation.contiguous(v, dtype)
                                         for k, v in p.items()})
    if info.spec.gates_are_state:
        G = A
    elif G is None:
        A_prev = np.concatenate([a0[:, None, :], A], axis=1)[:, :A.shape[1]]
        G = gate_buffer(info, float_typenum(A), tuple(_validation.contiguous(g, dtype)
                                                      for g in gates), A_prev, params)
    if type(steps) is not info.caches_type and lengths is not None:
        # step tuples with lengths: pack their first T_da steps like the engine's
        lengths = np.minimum(_validation.check_lengths(lengths, m, len(steps)), T_da)
        packing = _packing.packing(lengths, T_da)
        index = _packing.time_major_index(packing, T_da, m)
        G, A, C, X = [None if v is None else np.ascontiguousarray(
            v.reshape(v.shape[0], T_da * m)[:, index]) for v in (G, A, C, X)]
        if info.spec.gates_are_state:
            G = A
    return run_backward(info, float_typenum(a0), False, _validation.strided(da, dtype), G, A,
                        C, a0, c0, X, params, None,
                        A.shape[1] if packing is None else packing.active.shape[0],
                        False, False, None, packing)


# ------------------------------------------------------------------ the BLAS-only floor

cdef class GemmFloor:
    """GemmFloor(cell, n_x, n_a, n_y, m, T, dtype): .forward() / .backward()
    run the engine's driver for that problem with everything but the GEMMs
    switched off: the same plan (chunks, blocks, GEMM shapes and layouts) as
    the default call, nothing in between. No implementation of this design
    on this BLAS can be faster, which makes it the yardstick of benchmarks/.
    `plan`: the forward's recurrent-product orientation (one of
    FORWARD_PLANS) instead of the one the call would choose, so benchmarks
    show every candidate's floor."""
    cdef _ForwardJob fwd
    cdef _BackwardJob bwd

    def __init__(self, cell, Py_ssize_t n_x, Py_ssize_t n_a, Py_ssize_t n_y, Py_ssize_t m,
                 Py_ssize_t T, dtype=np.float64, plan=None):
        cdef CellInfo info = CELLS[cell]
        dtype = np.dtype(dtype)
        cdef int tn = cnp.NPY_FLOAT if dtype == np.float32 else cnp.NPY_DOUBLE
        rng = np.random.default_rng(0)

        def buf(*shape):
            return np.ascontiguousarray(rng.uniform(-0.5, 0.5, shape), dtype=dtype)

        dims = {_cells.ONE: 1, _cells.N_X: n_x, _cells.N_A: n_a, _cells.N_Y: n_y,
                _cells.N_A_PLUS_N_X: n_a + n_x}
        params = [buf(dims[rows], dims[cols]) for _, rows, cols, _ in info.cell.parameters]
        x, a0 = buf(n_x, m, T), buf(n_a, m)
        c0 = buf(n_a, m) if info.spec.has_c else None
        self.fwd = _ForwardJob.__new__(_ForwardJob)
        # the forward as inference runs it (scratch rows padded apart); the
        # backward on buffers in the caches' layout
        out = prepare_forward(info, tn, x, a0, c0, params, True, False, &self.fwd.r, None, True)
        self.fwd.keep = (x, a0, c0, params, out)
        self.fwd.r.gemm_only = True
        cdef Forward cached
        out = prepare_forward(info, tn, x, a0, c0, params, True, False, &cached)
        if plan is not None:
            if plan not in FORWARD_PLANS:
                raise ValueError(f"plan must be one of {FORWARD_PLANS} or None; got {plan!r}")
            self.fwd.r.plan = plan_applies(FORWARD_PLANS.index(plan), m)
        G, A, C, X = out[3:7]
        self.bwd = _BackwardJob.__new__(_BackwardJob)
        run_backward(info, tn, False, buf(n_a, m, T), G, A, C, a0, c0, X, params, None, T,
                     False, True, self.bwd)

    def forward(self):
        self.fwd(0, n_chunks(self.fwd.r.m))

    def backward(self):
        self.bwd()


# ------------------------------------------------------------------ public functions
# Each is a thin shell over the engine: the cell's description, the notebook's
# tuple. Compiled, these entry points cost ~0.1 us less per call than Python
# wrappers (about a tenth of a cell function's time at the notebook's sizes).

def rnn_cell_forward(xt, a_prev, parameters):
    """One step of the basic RNN.

    Parameters
    ----------
    xt : array, shape (n_x, m)
        Input at this step.
    a_prev : array, shape (n_a, m)
        Hidden state of the previous step.
    parameters : dict
        ``Wax`` (n_a, n_x), ``Waa`` (n_a, n_a), ``Wya`` (n_y, n_a),
        ``ba`` (n_a, 1), ``by`` (n_y, 1). Other keys are ignored.

    Returns
    -------
    a_next : ndarray, shape (n_a, m)
        ``tanh(Wax @ xt + Waa @ a_prev + ba)``
    yt_pred : ndarray, shape (n_y, m)
        ``softmax(Wya @ a_next + by)``
    cache : tuple
        ``(a_next, a_prev, xt, parameters)``, for `rnn_cell_backward`.
    """
    a_next, _, yt_pred, _ = cell_forward(RNN_INFO, xt, a_prev, None, parameters)
    return a_next, yt_pred, (a_next, a_prev, xt, parameters)


def rnn_forward(x, a0, parameters, *, lengths=None, cache=True, n_threads=1):
    """The basic RNN over all time steps.

    Parameters
    ----------
    x : array, shape (n_x, m, T_x)
        Inputs, time last. Any memory layout; read without copying when it is
        a transposed view of a C-contiguous (n_x, T_x, m) array.
    a0 : array, shape (n_a, m)
        Initial hidden state.
    parameters : dict
        As for `rnn_cell_forward`.
    lengths : array of int, shape (m,), optional, keyword-only
        Variable-length batch (SPEC §6): column j runs steps 0 .. lengths[j]-1
        only; its outputs are 0 after them, and padding in x is never read.
        The time spent follows the steps that run. The caches are then
        ``(steps, x, lengths)``, and backward ignores ``da`` at padding steps.
    cache : bool, keyword-only
        False for inference: no caches are kept (``None`` is returned in their
        place) and nothing is allocated beyond the outputs and a workspace of
        one block of steps per thread (see "Memory" in the README).
    n_threads : int or None, keyword-only
        Split the batch over this many native threads (None: all cores), each
        running the whole sequence on its part with single-threaded BLAS.
        Results do not depend on it, nor on `cache` (see src/_engine.pyx).

    Returns
    -------
    a : ndarray, shape (n_a, m, T_x)
        Hidden states of every step.
    y_pred : ndarray, shape (n_y, m, T_x)
        Predictions of every step.
    caches : tuple or None
        ``(steps, x)``; ``steps[t]`` is step t's ``(a_next, a_prev, xt,
        parameters)``, made on access (see `RNNStepCaches`). None when
        ``cache=False``.
    """
    a, y, _, caches = sequence_forward(RNN_INFO, x, a0, None, parameters, cache, n_threads,
                                       False, lengths)
    return a, y, caches


def rnn_cell_backward(da_next, cache):
    """Backward pass of one RNN step (without the output layer).

    Parameters
    ----------
    da_next : array, shape (n_a, m)
        Gradient of the loss with respect to this step's hidden state.
    cache : tuple
        ``(a_next, a_prev, xt, parameters)`` from `rnn_cell_forward`.

    Returns
    -------
    dict
        ``dxt`` (n_x, m), ``da_prev`` (n_a, m), ``dWax`` (n_a, n_x),
        ``dWaa`` (n_a, n_a), ``dba`` (n_a, 1).
    """
    return cell_backward(RNN_INFO, da_next, None, cache)


def rnn_backward(da, caches):
    """Backpropagation through time for the basic RNN.

    Parameters
    ----------
    da : array, shape (n_a, m, T)
        Upstream gradients of the hidden states. T may be smaller than the
        number of forward steps; then steps ``0 .. T-1`` are used.
    caches : tuple
        ``(steps, x)`` from `rnn_forward` (cyrnn's or `cyrnn.reference`'s).
        The weights are read from the parameters the caches hold.

    Returns
    -------
    dict
        ``dx`` (n_x, m, T), ``da0`` (n_a, m), ``dWax`` (n_a, n_x),
        ``dWaa`` (n_a, n_a), ``dba`` (n_a, 1).
    """
    return sequence_backward(RNN_INFO, da, caches)


def lstm_cell_forward(xt, a_prev, c_prev, parameters):
    """One LSTM step.

    Parameters
    ----------
    xt : array, shape (n_x, m)
    a_prev, c_prev : array, shape (n_a, m)
        Hidden and cell state of the previous step.
    parameters : dict
        ``Wf, Wi, Wc, Wo`` (n_a, n_a + n_x) acting on ``concat = [a_prev; xt]``,
        ``bf, bi, bc, bo`` (n_a, 1), ``Wy`` (n_y, n_a), ``by`` (n_y, 1).
        Other keys are ignored.

    Returns
    -------
    a_next, c_next : ndarray, shape (n_a, m)
    yt_pred : ndarray, shape (n_y, m)
    cache : tuple
        ``(a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)``.
    """
    a_next, c_next, yt_pred, (ft, it, cct, ot) = cell_forward(LSTM_INFO, xt, a_prev, c_prev,
                                                              parameters)
    return a_next, c_next, yt_pred, (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt,
                                     parameters)


def lstm_forward(x, a0, parameters, *, c0=None, lengths=None, cache=True, n_threads=1):
    """The LSTM over all time steps.

    Parameters
    ----------
    x : array, shape (n_x, m, T_x)
        Inputs, time last (any memory layout, see `rnn_forward`).
    a0 : array, shape (n_a, m)
        Initial hidden state.
    parameters : dict
        As for `lstm_cell_forward`.
    c0 : array, shape (n_a, m), optional, keyword-only
        Initial cell state; zeros (the notebook's choice) when omitted.
    lengths : array of int, shape (m,), optional, keyword-only
        Variable-length batch, see `rnn_forward` (c is 0 after a column's end).
    cache : bool, keyword-only
        False for inference: no caches (``None`` in their place), nothing
        allocated beyond the outputs and a workspace of one block of steps per
        thread.
    n_threads : int or None, keyword-only
        Split the batch over this many native threads (None: all cores); results
        do not depend on it (see `rnn_forward`).

    Returns
    -------
    a : ndarray, shape (n_a, m, T_x)
        Hidden states of every step.
    y : ndarray, shape (n_y, m, T_x)
        Predictions of every step.
    c : ndarray, shape (n_a, m, T_x)
        Cell states of every step.
    caches : tuple or None
        ``(steps, x)``; ``steps[t]`` is step t's 10-tuple as from
        `lstm_cell_forward`, made on access (see `LSTMStepCaches`). None when
        ``cache=False``.
    """
    return sequence_forward(LSTM_INFO, x, a0, c0, parameters, cache, n_threads, False,
                            lengths)


def lstm_cell_backward(da_next, dc_next, cache):
    """Backward pass of one LSTM step (without the output layer).

    Parameters
    ----------
    da_next, dc_next : array, shape (n_a, m)
        Gradients of the loss with respect to this step's hidden and cell state.
    cache : tuple
        The 10-tuple from `lstm_cell_forward`.

    Returns
    -------
    dict
        ``dxt`` (n_x, m), ``da_prev``, ``dc_prev`` (n_a, m), ``dWf, dWi, dWc,
        dWo`` (n_a, n_a + n_x), ``dbf, dbi, dbc, dbo`` (n_a, 1).
    """
    return cell_backward(LSTM_INFO, da_next, dc_next, cache)


def lstm_backward(da, caches):
    """Backpropagation through time for the LSTM.

    Parameters
    ----------
    da : array, shape (n_a, m, T)
        Upstream gradients of the hidden states. T may be smaller than the
        number of forward steps; then steps ``0 .. T-1`` are used.
    caches : tuple
        ``(steps, x)`` from `lstm_forward` (cyrnn's or `cyrnn.reference`'s).
        The weights are read from the parameters the caches hold.

    Returns
    -------
    dict
        ``dx`` (n_x, m, T), ``da0`` (n_a, m), ``dWf, dWi, dWc, dWo``
        (n_a, n_a + n_x), ``dbf, dbi, dbc, dbo`` (n_a, 1).
    """
    return sequence_backward(LSTM_INFO, da, caches)


def gru_cell_forward(xt, a_prev, parameters):
    """One GRU step (../shared/SPEC.md §5, the course's notation).

    Parameters
    ----------
    xt : array, shape (n_x, m)
    a_prev : array, shape (n_a, m)
        Hidden state of the previous step.
    parameters : dict
        ``Wr, Wu`` (n_a, n_a + n_x) acting on ``concat = [a_prev; xt]``,
        ``br, bu`` (n_a, 1), ``Wy`` (n_y, n_a), ``by`` (n_y, 1), and the
        candidate's weights, whose keys choose the variant:

        - reset-after (PyTorch, Keras ``reset_after=True``, ONNX
          ``linear_before_reset=1``): ``Wcx`` (n_a, n_x), ``Wca`` (n_a, n_a),
          ``bcx``, ``bca`` (n_a, 1);
          ``cct = tanh(Wcx @ xt + bcx + rt * (Wca @ a_prev + bca))``;
        - reset-before (the course's lecture, Keras ``reset_after=False``,
          ONNX's default): ``Wc`` (n_a, n_a + n_x), ``bc`` (n_a, 1);
          ``cct = tanh(Wc @ [rt * a_prev; xt] + bc)``.

        Both sets at once is a ValueError; other keys are ignored.

    Returns
    -------
    a_next : ndarray, shape (n_a, m)
        ``ut * cct + (1 - ut) * a_prev``, with ``rt = sigmoid(Wr @ concat + br)``
        and ``ut = sigmoid(Wu @ concat + bu)`` (the update gate weights the
        candidate; PyTorch's z is ``1 - ut``).
    yt_pred : ndarray, shape (n_y, m)
        ``softmax(Wy @ a_next + by)``
    cache : tuple
        ``(a_next, a_prev, rt, ut, cct, xt, parameters)``, for `gru_cell_backward`.
    """
    a_next, _, yt_pred, (rt, ut, cct) = cell_forward(gru_info(parameters), xt, a_prev, None,
                                                     parameters)
    return a_next, yt_pred, (a_next, a_prev, rt, ut, cct, xt, parameters)


def gru_forward(x, a0, parameters, *, lengths=None, cache=True, n_threads=1):
    """The GRU over all time steps.

    Parameters
    ----------
    x : array, shape (n_x, m, T_x)
        Inputs, time last (any memory layout, see `rnn_forward`).
    a0 : array, shape (n_a, m)
        Initial hidden state.
    parameters : dict
        As for `gru_cell_forward` (its keys choose the variant).
    lengths : array of int, shape (m,), optional, keyword-only
        Variable-length batch, see `rnn_forward`.
    cache : bool, keyword-only
        False for inference: no caches (``None`` in their place).
    n_threads : int or None, keyword-only
        Split the batch over this many native threads (None: all cores); results
        do not depend on it (see `rnn_forward`).

    Returns
    -------
    a : ndarray, shape (n_a, m, T_x)
        Hidden states of every step.
    y : ndarray, shape (n_y, m, T_x)
        Predictions of every step.
    caches : tuple or None
        ``(steps, x)``; ``steps[t]`` is step t's 7-tuple as from
        `gru_cell_forward`, made on access (see `GRUStepCaches`). None when
        ``cache=False``.
    """
    a, y, _, caches = sequence_forward(gru_info(parameters), x, a0, None, parameters, cache,
                                       n_threads, False, lengths)
    return a, y, caches


def gru_cell_backward(da_next, cache):
    """Backward pass of one GRU step (without the output layer).

    Parameters
    ----------
    da_next : array, shape (n_a, m)
        Gradient of the loss with respect to this step's hidden state.
    cache : tuple
        The 7-tuple from `gru_cell_forward`.

    Returns
    -------
    dict
        ``dxt`` (n_x, m), ``da_prev`` (n_a, m), ``dWr, dWu`` (n_a, n_a + n_x),
        ``dbr, dbu`` (n_a, 1), and ``dWcx`` (n_a, n_x), ``dWca`` (n_a, n_a),
        ``dbcx, dbca`` (n_a, 1) (reset-after) or ``dWc`` (n_a, n_a + n_x),
        ``dbc`` (n_a, 1) (reset-before).
    """
    info = GRU_INFO
    if isinstance(cache, tuple) and len(<tuple>cache) == 7:
        info = gru_info((<tuple>cache)[6])
    return cell_backward(info, da_next, None, cache)


def gru_backward(da, caches):
    """Backpropagation through time for the GRU.

    Parameters
    ----------
    da : array, shape (n_a, m, T)
        Upstream gradients of the hidden states. T may be smaller than the
        number of forward steps; then steps ``0 .. T-1`` are used.
    caches : tuple
        ``(steps, x)`` from `gru_forward` (cyrnn's or `cyrnn.reference`'s).
        The weights are read from the parameters the caches hold.

    Returns
    -------
    dict
        ``dx`` (n_x, m, T), ``da0`` (n_a, m), and the weight and bias
        gradients of `gru_cell_backward`.
    """
    return sequence_backward(gru_caches_info(caches), da, caches)


# ------------------------------------------------------------------ for the models to come

def _run_direction(cell, x, a0, parameters, *, c0=None, lengths=None, reverse=False,
                   cache=False, n_threads=1, out=None):
    """A layer's direction: (a, y, c, caches) with the steps run from T-1 down to
    0 when `reverse` (its step caches then follow the reverse order: see
    _backward_direction); with lengths, reversed, column j runs from its step
    lengths[j]-1 down to 0 (PyTorch's bidirectional packed sequences). Engine
    entry for stacked and bidirectional models.

    out: where the hidden states go, an (n_a, m, T) array of the compute dtype
    (no head: Wy with 0 rows), returned as `a`: C-contiguous (the user's
    layout: e.g. one direction's rows of a layer's output), or, without lengths
    and caches, a transposed view of a C-contiguous (n_a, T, m) array, which the
    steps write directly (the time-major layout the next layer reads in place;
    `c` then views the cell states likewise)."""
    info = gru_info(parameters) if cell == "gru" else CELLS[cell]
    return sequence_forward(info, x, a0, c0, parameters, cache, n_threads, reverse, lengths,
                            out)


cdef object _checked_out(object out, int tn, Py_ssize_t n_a, Py_ssize_t m, Py_ssize_t T,
                         bint time_major_ok):
    """out if it fits _run_direction's rules, else ValueError naming them."""
    if out is None:
        return None
    if type(out) is not cnp.ndarray or cnp.PyArray_TYPE(<cnp.ndarray>out) != tn or \
            cnp.PyArray_NDIM(<cnp.ndarray>out) != 3 or \
            cnp.PyArray_DIMS(<cnp.ndarray>out)[0] != n_a or \
            cnp.PyArray_DIMS(<cnp.ndarray>out)[1] != m or \
            cnp.PyArray_DIMS(<cnp.ndarray>out)[2] != T or \
            not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out):
        raise ValueError(f"out must be a writable {np.dtype(np.float32 if tn == cnp.NPY_FLOAT else np.float64)} "
                         f"array of shape {(n_a, m, T)}; got {type(out).__name__} "
                         f"{getattr(out, 'dtype', '')} {getattr(out, 'shape', '')}")
    if cnp.PyArray_ISCARRAY(<cnp.ndarray>out):
        return out
    if time_major_ok and is_time_major_view(<cnp.ndarray>out) and \
            cnp.PyArray_ISALIGNED(<cnp.ndarray>out):
        return out
    raise ValueError("out must be C-contiguous, or (without lengths and caches) a transposed "
                     "view of a C-contiguous (n_a, T, m) array")


def _backward_direction(cell, da, caches, *, reverse=False):
    """Gradients of a `_run_direction` call with caches, all steps (T_da = T)."""
    cdef StepCaches steps = caches[0]
    cdef CellInfo info = steps.info()
    cdef int tn = cnp.PyArray_TYPE(<cnp.ndarray>steps.A)
    n_a, m = steps.a0.shape
    T = steps.T
    da = _validation.contiguous(_validation.as_array("da", da), steps.A.dtype)
    _validation.check_shape("da", da, ("n_a", "m", "T_x"), (n_a, m, T))
    p, _ = _validation.check_parameters(info.cell, steps.parameters, steps.X.shape[0], n_a,
                                        keys=info.cell.backward_keys)
    params = validated_parameters(info, {k: _validation.contiguous(v, steps.A.dtype)
                                         for k, v in p.items()})
    return run_backward(info, tn, False, da, steps.G, steps.A, steps.C, steps.a0, steps.c0,
                        steps.X, params, None, T, reverse, False, None, steps.packing)
