"""Denormal-producing inputs vs ordinary ones (the speed issue asks for <= 1.5x).

    python benchmarks/bench_denormals.py

Times lstm_forward + lstm_backward and rnn_forward + rnn_backward at the medium
shape on ordinary inputs and on inputs that drive values into the denormal range
(x ~ 1e-310, upstream gradients ~ 1e-305 that vanish through time), medians of
interleaved runs, 1 BLAS thread, and the same for the NumPy reference.
"""
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import cyrnn
import cyrnn.reference
from cyrnn.bench import SHAPES, make_problem


def fwd_bwd(module, kind, x, a0, p, da):
    if kind == "lstm":
        module.lstm_backward(da, module.lstm_forward(x, a0, p)[3])
    else:
        module.rnn_backward(da, module.rnn_forward(x, a0, p)[2])


def main(rounds=5):
    prob = make_problem(SHAPES["medium"], np.float64)
    x, a0, p, da = prob["x"], prob["a0"], prob["p"], prob["da"]
    tiny = {"x": x * 1e-310, "a0": a0 * 1e-310, "da": da * 1e-305}
    with threadpool_limits(1):
        for module in (cyrnn, cyrnn.reference):
            for kind in ("rnn", "lstm"):
                normal, denormal = [], []
                for _ in range(rounds):
                    for inputs, samples in (((x, a0, da), normal),
                                            ((tiny["x"], tiny["a0"], tiny["da"]), denormal)):
                        start = time.perf_counter()
                        fwd_bwd(module, kind, inputs[0], inputs[1], p, inputs[2])
                        samples.append(time.perf_counter() - start)
                n, d = statistics.median(normal), statistics.median(denormal)
                print(f"{module.__name__:16s} {kind}: ordinary {n * 1e3:7.1f} ms, "
                      f"denormal {d * 1e3:7.1f} ms, ratio {d / n:.2f}")


if __name__ == "__main__":
    main()
