"""First calls (nothing pooled: fresh pages) vs repeated calls, at the bigbatch shape.

    python benchmarks/bench_first_call.py

cyrnn keeps the memory of its large arrays for reuse (src/cyrnn_pool.h); the
suite's medians are of repeated calls, which find it pooled. Here every "first"
call starts with cyrnn.release_memory(), so it pays for fresh pages as a
process's first call, or a call of a new shape, does. Medians of interleaved
runs, 1 BLAS thread; the NumPy reference for comparison (NumPy keeps no large
blocks, so all its calls are first calls).
"""
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import cyrnn
import cyrnn.reference
from cyrnn.bench import SHAPES, make_problem


def main(rounds=7):
    prob = make_problem(SHAPES["bigbatch"], np.float64)
    x, a0, p, da = prob["x"], prob["a0"], prob["p"], prob["da"]
    caches = {"rnn": cyrnn.rnn_forward(x, a0, p)[2], "lstm": cyrnn.lstm_forward(x, a0, p)[3]}
    calls = {
        "rnn_forward": lambda m: m.rnn_forward(x, a0, p),
        "lstm_forward": lambda m: m.lstm_forward(x, a0, p),
        "rnn_backward": lambda m: m.rnn_backward(da, caches["rnn"]),
        "lstm_backward": lambda m: m.lstm_backward(da, caches["lstm"]),
    }
    with threadpool_limits(1):
        for name, call in calls.items():
            first, repeated, reference = [], [], []
            for _ in range(rounds):
                for samples, module, empty_pool in ((first, cyrnn, True),
                                                    (repeated, cyrnn, False),
                                                    (reference, cyrnn.reference, False)):
                    if empty_pool:
                        cyrnn.release_memory()
                    start = time.perf_counter()
                    result = call(module)
                    samples.append(time.perf_counter() - start)
                    del result
            f, r, ref = (statistics.median(s) * 1e3 for s in (first, repeated, reference))
            print(f"{name:14s} cyrnn first call {f:6.1f} ms, repeated {r:6.1f} ms "
                  f"(first/repeated {f / r:.2f}); reference {ref:6.1f} ms")


if __name__ == "__main__":
    main()
