"""Timing shared by the benchmarks: interleaved rounds, medians, the GEMM peak."""
import statistics
import time

import numpy as np


def measure(candidates, budget, min_rounds=5, max_rounds=200, settle=0.0):
    """Median seconds per call of each candidate, timed in interleaved rounds.

    Each round times every candidate once (looping fast ones so a sample lasts
    >= 1 ms); rounds continue until `budget` seconds or max_rounds pass.
    settle: seconds to sleep before each sample, then one untimed call, for
    multi-threaded candidates: the worker threads of OpenBLAS, OpenMP and
    onnxruntime spin for a while after a call, and on a small machine they take
    a core from the next candidate (cyrnn n_threads=2 right after a call on 2
    OpenBLAS threads: 0.62x its rate alone on 2 cores); the untimed call then
    lets each candidate's own threads be as warm as in a loop of its calls.
    """
    loops = {}
    for name, fn in candidates.items():
        fn()  # warm up (first-touch allocation, lazy imports)
        start = time.perf_counter()
        fn()
        once = time.perf_counter() - start
        loops[name] = max(1, int(1e-3 / max(once, 1e-9)))
    samples = {name: [] for name in candidates}
    deadline = time.perf_counter() + budget
    rounds = 0
    while rounds < max_rounds and (rounds < min_rounds or time.perf_counter() < deadline):
        for name, fn in candidates.items():
            n = loops[name]
            if settle:
                time.sleep(settle)
                fn()
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - start) / n)
        rounds += 1
    return {name: statistics.median(s) for name, s in samples.items()}


def dgemm_peak(dtype, n=2048):
    """GFLOP/s of one n^3 GEMM through SciPy's BLAS (the same library cyrnn calls)."""
    from scipy.linalg import blas

    gemm = blas.sgemm if dtype == np.float32 else blas.dgemm
    a = np.asfortranarray(np.random.default_rng(0).standard_normal((n, n)), dtype=dtype)
    gemm(1.0, a, a)
    best = min(_timed(lambda: gemm(1.0, a, a)) for _ in range(3))
    return 2 * n ** 3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
