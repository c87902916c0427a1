"""Threads: running batch chunks on `n_threads`, and the BLAS thread policy.

Chunks. The forward functions cut the batch into column chunks that depend
on m only (src/engine/blocking.pxi, `n_chunks`) and run each chunk over the whole
sequence; threads take contiguous ranges of chunks. The arithmetic of every
column is therefore the same whatever the number of threads, and results are
bit-identical for any ``n_threads``. A one-chunk batch under a row-block plan
runs split instead (src/engine/split.pxi): every thread given to
`run_chunks` claims parts of each step until none is left.

The pool is shared by every call (and by a bidirectional layer's directions,
whose calls then run on it), so `run_chunks` never waits for work the pool has
not started: the caller takes it back and runs it.

BLAS threads. Inside cyrnn's own parallel region each thread must call BLAS
single-threaded, or OpenBLAS's pool and ours fight over the cores; so while a
``n_threads > 1`` call runs, SciPy's OpenBLAS is limited to one thread (through
one cached threadpoolctl controller) and restored afterwards. When *users* call
cyrnn from several threads of their own while OpenBLAS runs several threads,
cyrnn does not change that global setting behind their back: it warns once,
with the fix (``threadpoolctl.threadpool_limits(1, "blas")`` or
``OPENBLAS_NUM_THREADS=1``).
"""
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

# Calls smaller than this (n_a·m·T elements) never use multi-threaded BLAS
# anyway, so the oversubscription check is skipped for them.
CONCURRENCY_CHECK_SIZE = 100_000

_lock = threading.Lock()
_executor = None
_executor_workers = 0
_controller = None
_blas_limit = None      # the active threadpoolctl limit while regions run
_regions = 0            # cyrnn parallel regions running now
_active_calls = 0       # large single-threaded calls running now
_warned = False


def resolve_threads(n_threads):
    """n_threads as a positive int (None: all cores), else TypeError/ValueError."""
    if n_threads is None:
        return os.cpu_count() or 1
    if isinstance(n_threads, bool) or not isinstance(n_threads, int):
        raise TypeError(f"n_threads must be a positive int or None; got {n_threads!r}")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1 (or None for all cores); got {n_threads}")
    return n_threads


def blas_controller():
    """The one threadpoolctl controller of cyrnn, made on first use."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()
    return _controller


def _pool(workers):
    """An executor with at least `workers` threads. A smaller one is replaced,
    never shut down: a call in another thread may have fetched it and be about
    to submit ("cannot schedule new futures after shutdown"). Its idle threads
    exit once the last call holding it drops it (ThreadPoolExecutor's workers
    stop when their executor is garbage-collected)."""
    global _executor, _executor_workers
    with _lock:
        if _executor is None or _executor_workers < workers:
            _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cyrnn")
            _executor_workers = workers
        return _executor


def _enter_region():
    global _regions, _blas_limit
    with _lock:
        _regions += 1
        if _regions == 1:
            _blas_limit = blas_controller().limit(limits=1, user_api="blas")


def _leave_region():
    global _regions, _blas_limit
    with _lock:
        _regions -= 1
        if _regions == 0 and _blas_limit is not None:
            _blas_limit.restore_original_limits()
            _blas_limit = None


def run_chunks(work, n_chunks, n_threads):
    """Call work(first, last) on contiguous ranges of the n_chunks chunks, from
    min(n_threads, n_chunks) threads (the caller being one of them); return when
    all are done, raising the first error any of them raised.

    The caller never waits for a range the pool has not started: it takes such
    ranges back (cancels them) and runs them itself. The pool is shared, so its
    threads may all be busy with other calls, or be the caller itself (a
    bidirectional layer's directions run on the pool, each calling this): waiting
    for them would hang (it did: Model(n_threads=4), m = 2100)."""
    k = min(n_threads, n_chunks)
    if k <= 1:
        work(0, n_chunks)
        return
    bounds = [n_chunks * i // k for i in range(k + 1)]
    _enter_region()
    try:
        pool = _pool(k - 1)
        futures = [pool.submit(work, bounds[i], bounds[i + 1]) for i in range(1, k)]
        error = None
        try:
            work(bounds[0], bounds[1])
        except BaseException as exc:  # still wait: the others write into our arrays
            error = exc
        for i, f in enumerate(futures, 1):
            try:
                if f.cancel():
                    if error is None:
                        work(bounds[i], bounds[i + 1])
                else:
                    f.result()
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error
    finally:
        _leave_region()


class concurrent_use:
    """Context for a large single-threaded call: warns once when such calls
    overlap in several user threads while OpenBLAS itself runs several threads."""

    __slots__ = ("size",)

    def __init__(self, size):
        self.size = size

    def __enter__(self):
        global _active_calls
        if self.size < CONCURRENCY_CHECK_SIZE:
            return self
        with _lock:
            _active_calls += 1
            overlap = _active_calls > 1 and not _warned and _regions == 0
        if overlap:
            _warn_if_blas_threaded()
        return self

    def __exit__(self, *exc):
        global _active_calls
        if self.size >= CONCURRENCY_CHECK_SIZE:
            with _lock:
                _active_calls -= 1
        return False


def _warn_if_blas_threaded():
    global _warned
    threads = max((info.get("num_threads", 1) for info in blas_controller().info()
                   if info.get("user_api") == "blas"), default=1)
    if threads > 1 and not _warned:
        _warned = True
        warnings.warn(
            f"cyrnn is being called from several threads at once while SciPy's BLAS "
            f"runs {threads} threads of its own; the two oversubscribe the cores and "
            f"slow each other down. Limit BLAS to one thread: "
            f"`threadpoolctl.threadpool_limits(1, 'blas')` (or set OPENBLAS_NUM_THREADS=1 "
            f"before starting Python), or let cyrnn split the batch itself with "
            f"`n_threads=k`.", RuntimeWarning, stacklevel=4)
