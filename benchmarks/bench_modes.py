"""Inference's memory modes on this machine: cache=False against the cached call,
and against each run mode forced, for the inference benchmark's LSTM shapes and
the notebook benchmark's RNN, LSTM and GRU shapes (interleaved, medians).

    python benchmarks/bench_modes.py [--budget 1.0] [--dtypes float32,float64]
                                     [--json results/modes.json]

Columns: milliseconds of cache=False (the mode it chose), of the cached call,
and of cache=False with each mode forced through the engine's size limits
(blocks; state buffers; scratch in buffers: narrow batches whose scratch does
not fit the CPU's caches always run in blocks, so there those columns time
blocks too); the ratio cache=False / cached (the engine's promise:
at most 1.02).
"""
import argparse
import json
import platform

import numpy as np
from threadpoolctl import threadpool_limits

import cyrnn
from cyrnn import _engine
from cyrnn.bench import SHAPES as NOTEBOOK_SHAPES
from cyrnn.bench.inference import SHAPES as INFERENCE_SHAPES, lstm_problem
from cyrnn.bench.timing import measure

INF = float("inf")
# each mode forced: through the size limits, and where the engine would time
# two ways, pinned (src/engine/modes.pxi)
FORCED = {
    "blocks": (dict(cached_output_bytes=INF), "states"),
    "states": (dict(cached_output_bytes=0.0, scratch_bytes=1e18), "states"),
    "scratch": (dict(cached_output_bytes=0.0, scratch_bytes=1e18), "scratch"),
}


def problems(dtype):
    for name, (n_x, n_a, m, T) in INFERENCE_SHAPES.items():
        p, x, a0 = lstm_problem(n_x, n_a, m, T, dtype)
        yield f"lstm {name}", cyrnn.lstm_forward, x, a0, p
    rng = np.random.default_rng(0)
    for name in ("small", "medium", "bigbatch", "wide"):
        n_x, n_a, n_y, m, T = NOTEBOOK_SHAPES[name]
        x = rng.standard_normal((n_x, m, T)).astype(dtype)
        a0 = np.zeros((n_a, m), dtype)
        scale = (n_a + n_x) ** -0.5
        rnn = {"Wax": rng.standard_normal((n_a, n_x)) * scale,
               "Waa": rng.standard_normal((n_a, n_a)) * scale,
               "Wya": rng.standard_normal((n_y, n_a)) * scale,
               "ba": np.zeros((n_a, 1)), "by": np.zeros((n_y, 1))}
        gru = {k: rng.standard_normal((n_a, n_a + n_x)) * scale for k in ("Wr", "Wu")}
        gru.update(Wcx=rng.standard_normal((n_a, n_x)) * scale,
                   Wca=rng.standard_normal((n_a, n_a)) * scale,
                   **{k: np.zeros((n_a, 1)) for k in ("br", "bu", "bcx", "bca")},
                   Wy=rng.standard_normal((n_y, n_a)) * scale, by=np.zeros((n_y, 1)))
        for cell, forward, p in (("rnn", cyrnn.rnn_forward, rnn), ("gru", cyrnn.gru_forward, gru)):
            p = {k: v.astype(dtype) for k, v in p.items()}
            yield f"{cell} {name}", forward, x, a0, p


def forced(forward, x, a0, p, how):
    limits, mode = how

    def call():
        old, old_mode = _engine._set_limits(**limits), _engine.set_inference_mode(mode)
        try:
            forward(x, a0, p, cache=False)
        finally:
            _engine._set_limits(**old)
            _engine.set_inference_mode(old_mode)
    return call


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--json")
    parser.add_argument("--only", help="comma-separated problem names (e.g. 'lstm medium')")
    args = parser.parse_args()
    rows = []
    print(f"{platform.processor() or platform.machine()}; ms, medians of interleaved rounds")
    print(f"{'problem':18s} {'dtype':8s} {'no cache':>9s} {'cached':>9s} "
          f"{'blocks':>9s} {'states':>9s} {'scratch':>9s}  no cache / cached")
    with threadpool_limits(1):
        for dtype in args.dtypes.split(","):
            for name, forward, x, a0, p in problems(np.dtype(dtype).type):
                if args.only and name not in args.only.split(","):
                    continue
                calls = {"no cache": lambda: forward(x, a0, p, cache=False),
                         "cached": lambda: forward(x, a0, p)}
                calls["blocks"] = forced(forward, x, a0, p, FORCED["blocks"])
                calls["states"] = forced(forward, x, a0, p, FORCED["states"])
                calls["scratch"] = forced(forward, x, a0, p, FORCED["scratch"])
                times = measure(calls, args.budget)
                row = {"problem": name, "dtype": dtype,
                       **{k: v * 1e3 for k, v in times.items()}}
                rows.append(row)
                cells = " ".join(f"{row[k]:9.3f}" if k in row else f"{'-':>9s}"
                                 for k in ("no cache", "cached", "blocks", "states", "scratch"))
                print(f"{name:18s} {dtype:8s} {cells}  {row['no cache'] / row['cached']:.3f}",
                      flush=True)
    print("chosen where timed:", _engine.inference_modes())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
