"""Time the sequence functions of the installed cyrnn build, to compare builds.

Run it with the Python of each environment to compare, alternating, e.g. the
default build (elementwise kernels cloned for SSE2/AVX2/AVX-512) against
`CYRNN_ARCH=x86-64-v3 pip install .` (AVX2 only), and compare the medians:

    python benchmarks/bench_build.py > default.txt
    other-venv/bin/python benchmarks/bench_build.py > avx2.txt

Prints "shape function milliseconds" per line (float64, 1 BLAS thread, medians;
problems and timing as in cyrnn.bench).
"""
import numpy as np
from threadpoolctl import threadpool_limits

import cyrnn
from cyrnn.bench import SHAPES, calls_for, make_problem, measure

FUNCTIONS = ("rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward")


def main(shapes=("tiny", "small", "medium", "bigbatch"), budget=1.0):
    with threadpool_limits(1):
        for shape in shapes:
            calls = calls_for(cyrnn, make_problem(SHAPES[shape], np.float64))
            for function in FUNCTIONS:
                seconds = measure({function: calls[function]}, budget)[function]
                print(f"{shape} {function} {seconds * 1e3:.5f}", flush=True)


if __name__ == "__main__":
    main()
