"""The packed plan against the BLAS plans and the peers, in one process.

    python benchmarks/bench_packed.py [--dtype float32,float64] [--shapes medium,long]
        [--threads 1,2] [--budget 3] [--json PATH]

For each shape (cyrnn.bench.inference.SHAPES) and dtype, interleaved medians
(cyrnn.bench.timing.measure) of the LSTM forward, hidden states only:
cyrnn's `lstm_forward(cache=False)` with the forward plan pinned to `direct`
(SciPy's OpenBLAS, one GEMM per step) and to `packed` (cyrnn's kernel), and as
the planner chooses (`auto`), on each thread count; PyTorch `nn.LSTM` and
onnxruntime's LSTM (float32) on as many intra-op threads; and the product-only
floors of both plans (`GemmFloor`, 1 thread). SciPy's OpenBLAS runs on one
thread throughout (threadpoolctl), as cyrnn's own threads do. Ratios: peer
time / cyrnn time (above 1, cyrnn is faster).
"""
import argparse
import json
import platform

import numpy as np
from threadpoolctl import threadpool_limits

import cyrnn
from cyrnn import _engine
from cyrnn.bench.inference import SHAPES, find_peers, implementations, lstm_problem
from cyrnn.bench.timing import measure

DEFAULT_SHAPES = ("small", "medium", "bigbatch", "wide", "batch1", "long")
PLANS = ("direct", "packed", "auto")


def pinned(plan, x, a0, p, threads):
    def call():
        old = _engine.set_forward_plan(plan)
        try:
            return cyrnn.lstm_forward(x, a0, p, cache=False, n_threads=threads)
        finally:
            _engine.set_forward_plan(old)
    return call


def candidates(found, shape, dtype, threads):
    n_x, n_a, m, T = shape
    p, x, a0 = lstm_problem(n_x, n_a, m, T, dtype)
    calls = {f"cyrnn {plan}": pinned(plan, x, a0, p, threads) for plan in PLANS}
    # the peers as the inference benchmark runs them (the same problem, checked)
    calls.update({name: call for name, call in
                  implementations(found, shape, dtype, 0, threads).items()
                  if name in ("torch", "onnxruntime")})
    if threads == 1:
        for plan in ("direct", "packed"):
            calls[f"floor {plan}"] = _engine.GemmFloor("lstm", n_x, n_a, 0, m, T, dtype,
                                                       plan=plan).forward
    return calls


def row(name, dtype, threads, seconds):
    peers = [seconds[k] for k in ("torch", "onnxruntime") if k in seconds]
    out = {"shape": name, "dtype": np.dtype(dtype).name, "threads": threads,
           "ms": {k: round(v * 1e3, 4) for k, v in seconds.items()},
           "packed / direct": seconds["cyrnn direct"] / seconds["cyrnn packed"],
           "faster peer / cyrnn auto": min(peers) / seconds["cyrnn auto"] if peers else None,
           "faster peer / cyrnn packed": min(peers) / seconds["cyrnn packed"] if peers else None,
           "best cyrnn": min(PLANS, key=lambda plan: seconds[f"cyrnn {plan}"])}
    if "floor packed" in seconds:
        out["packed / its floor"] = seconds["cyrnn packed"] / seconds["floor packed"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32,float64")
    ap.add_argument("--shapes", default=",".join(DEFAULT_SHAPES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds per table row")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    found = find_peers()
    print(f"CPU: {platform.processor() or platform.machine()}; packed kernel: "
          f"{_engine.packed_isa()}")
    rows = []
    with threadpool_limits(1, "blas"):
        for dtype in [np.dtype(d).type for d in args.dtype.split(",")]:
            for name in args.shapes.split(","):
                for threads in [int(t) for t in args.threads.split(",")]:
                    seconds = measure(candidates(found, SHAPES[name], dtype, threads),
                                      args.budget, settle=0.25 if threads > 1 else 0.0)
                    rows.append(row(name, dtype, threads, seconds))
                    r = rows[-1]
                    print(f"{name:9s} {r['dtype']:8s} {threads} thr  "
                          + "  ".join(f"{k} {v:.3f}" for k, v in r["ms"].items())
                          + f"  | packed/direct {r['packed / direct']:.2f}"
                          + (f"  peer/auto {r['faster peer / cyrnn auto']:.2f}"
                             f"  peer/packed {r['faster peer / cyrnn packed']:.2f}"
                             if r["faster peer / cyrnn auto"] else "")
                          + (f"  packed/floor {r['packed / its floor']:.2f}"
                             if "packed / its floor" in r else ""), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": platform.processor(), "packed_isa": _engine.packed_isa(),
                       "plans_chosen": {str(k): v for k, v in _engine.forward_plans().items()},
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
