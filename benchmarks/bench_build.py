"""Time the four sequence functions of the installed cyrnn build, to compare builds.

Run it with the Python of each environment to compare, alternating, e.g. the
default build (elementwise kernels cloned for SSE2/AVX2/AVX-512) against
`CYRNN_ARCH=x86-64-v3 pip install .` (AVX2 only), and compare the medians:

    python benchmarks/bench_build.py > default.txt
    other-venv/bin/python benchmarks/bench_build.py > avx2.txt

Prints "shape function milliseconds" per line (float64, 1 BLAS thread, medians).
"""
import time

import numpy as np
from threadpoolctl import threadpool_limits

import cyrnn

SHAPES = {  # (n_x, n_a, n_y, m, T), as in cyrnn.bench
    "tiny": (3, 5, 2, 10, 7),
    "small": (32, 64, 10, 16, 50),
    "medium": (128, 256, 64, 64, 100),
    "bigbatch": (64, 128, 32, 1024, 50),
}


def median_seconds(f, budget=1.0, sample=0.02):
    """Median time of f() over samples of at least `sample` seconds each."""
    f()
    start = time.perf_counter()
    f()
    reps = max(1, int(sample / (time.perf_counter() - start)))
    times = []
    deadline = time.perf_counter() + budget
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 40):
        start = time.perf_counter()
        for _ in range(reps):
            f()
        times.append((time.perf_counter() - start) / reps)
    return float(np.median(times))


def main():
    with threadpool_limits(1):
        for name, (n_x, n_a, n_y, m, T) in SHAPES.items():
            rng = np.random.default_rng(0)

            def draw(*shape):
                return rng.standard_normal(shape) * 0.5

            x, a0, da = draw(n_x, m, T), draw(n_a, m), draw(n_a, m, T)
            lstm = {k: draw(n_a, n_a + n_x) / np.sqrt(n_a + n_x) for k in ("Wf", "Wi", "Wc", "Wo")}
            lstm.update({k: draw(n_a, 1) for k in ("bf", "bi", "bc", "bo")})
            lstm.update(Wy=draw(n_y, n_a), by=draw(n_y, 1))
            rnn = dict(Wax=draw(n_a, n_x), Waa=draw(n_a, n_a) / np.sqrt(n_a), Wya=draw(n_y, n_a),
                       ba=draw(n_a, 1), by=draw(n_y, 1))
            rnn_caches = cyrnn.rnn_forward(x, a0, rnn)[2]
            lstm_caches = cyrnn.lstm_forward(x, a0, lstm)[3]
            calls = {
                "rnn_forward": lambda: cyrnn.rnn_forward(x, a0, rnn),
                "rnn_backward": lambda: cyrnn.rnn_backward(da, rnn_caches),
                "lstm_forward": lambda: cyrnn.lstm_forward(x, a0, lstm),
                "lstm_backward": lambda: cyrnn.lstm_backward(da, lstm_caches),
            }
            for function, call in calls.items():
                print(f"{name} {function} {median_seconds(call) * 1e3:.5f}", flush=True)


if __name__ == "__main__":
    main()
