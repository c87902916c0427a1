"""Variable-length batches: cyrnn with `lengths=` against the same call without
lengths (padded to T), and against PyTorch's packed sequences.

    python benchmarks/bench_lengths.py [--json results/lengths.json]

For the medium and bigbatch shapes, LSTM and GRU (reset-after), float64 and
float32, 1 thread: lengths uniform in [1, T] (seeded), and all lengths = T.
Hidden states only (no output layer), forward with caches, backward from a
random da; PyTorch: pack_padded_sequence (enforce_sorted=False) + nn.LSTM/GRU
+ pad_packed_sequence, its backward from the same da. Interleaved rounds,
medians (cyrnn.bench.measure). Ratios: time with lengths / time without
(below 1: lengths pay off), PyTorch time / cyrnn time (above 1: cyrnn faster).
"""
import argparse
import json
import platform
import sys

import numpy as np
from threadpoolctl import threadpool_limits

import cyrnn
from cyrnn.bench import SHAPES, measure

CELLS = ("lstm", "gru")


def parameters(cell, n_x, n_a, dtype, rng):
    def draw(*shape):
        return (0.3 * rng.standard_normal(shape)).astype(dtype)
    if cell == "lstm":
        p = {f"{w}{g}": draw(n_a, n_a + n_x) if w == "W" else draw(n_a, 1)
             for g in "fico" for w in "Wb"}
    else:
        p = {"Wr": draw(n_a, n_a + n_x), "Wu": draw(n_a, n_a + n_x), "br": draw(n_a, 1),
             "bu": draw(n_a, 1), "Wcx": draw(n_a, n_x), "Wca": draw(n_a, n_a),
             "bcx": draw(n_a, 1), "bca": draw(n_a, 1)}
    p["Wy"], p["by"] = np.zeros((0, n_a), dtype), np.zeros((0, 1), dtype)
    return p


def torch_calls(torch, cell, p, x, a0, lengths, da, dtype):
    n_x, m, T = x.shape
    n_a = a0.shape[0]
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    net = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(n_x, n_a).to(tdtype)
    xs = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0)))
    h0 = torch.from_numpy(np.ascontiguousarray(a0.T))[None]
    state = (h0, torch.zeros_like(h0)) if cell == "lstm" else h0
    tl = torch.from_numpy(lengths)
    upstream = torch.from_numpy(np.ascontiguousarray(da.transpose(2, 1, 0)))
    rnn = torch.nn.utils.rnn

    def run(grad):
        with torch.set_grad_enabled(grad):
            packed = rnn.pack_padded_sequence(xs, tl, enforce_sorted=False)
            out, _ = net(packed, state)
            return rnn.pad_packed_sequence(out, total_length=T)[0]

    def forward_backward():
        run(True).backward(upstream)

    return lambda: run(False), forward_backward


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="medium,bigbatch")
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
        print("PyTorch is not installed: its columns stay empty (pip install torch)")
    rows = []
    with threadpool_limits(1):
        for shape in args.shapes.split(","):
            n_x, n_a, _, m, T = SHAPES[shape]
            for dtype in (np.float64, np.float32):
                for cell in CELLS:
                    rng = np.random.default_rng(0)
                    p = parameters(cell, n_x, n_a, dtype, rng)
                    x = rng.standard_normal((n_x, m, T)).astype(dtype)
                    a0 = rng.standard_normal((n_a, m)).astype(dtype)
                    da = rng.standard_normal((n_a, m, T)).astype(dtype)
                    uniform = rng.integers(1, T + 1, m)
                    full = np.full(m, T)
                    fwd = getattr(cyrnn, cell + "_forward")
                    bwd = getattr(cyrnn, cell + "_backward")
                    caches = {k: fwd(x, a0, p, lengths=v)[-1]
                              for k, v in (("none", None), ("uniform", uniform), ("full", full))}
                    calls = {}
                    for k, v in (("none", None), ("uniform", uniform), ("full", full)):
                        calls[f"fwd {k}"] = (lambda v=v: fwd(x, a0, p, lengths=v))
                        calls[f"bwd {k}"] = (lambda k=k: bwd(da, caches[k]))
                    if torch is not None:
                        tf, tfb = torch_calls(torch, cell, p, x, a0, uniform, da, dtype)
                        calls["torch fwd"], calls["torch fwd+bwd"] = tf, tfb
                    t = measure(calls, args.budget)
                    row = {"shape": shape, "dtype": np.dtype(dtype).name, "cell": cell,
                           "mean_length": float(uniform.mean()), "seconds": t,
                           "fwd_uniform_vs_none": t["fwd uniform"] / t["fwd none"],
                           "bwd_uniform_vs_none": t["bwd uniform"] / t["bwd none"],
                           "fwd_full_vs_none": t["fwd full"] / t["fwd none"],
                           "bwd_full_vs_none": t["bwd full"] / t["bwd none"]}
                    if torch is not None:
                        row["torch_fwd_vs_cyrnn"] = t["torch fwd"] / t["fwd uniform"]
                        row["torch_fwd_bwd_vs_cyrnn"] = t["torch fwd+bwd"] / (
                            t["fwd uniform"] + t["bwd uniform"])
                    rows.append(row)
                    print(f"{shape:9} {row['dtype']:8} {cell:5} uniform/none fwd "
                          f"{row['fwd_uniform_vs_none']:.2f} bwd {row['bwd_uniform_vs_none']:.2f}"
                          f" | full/none fwd {row['fwd_full_vs_none']:.3f} bwd "
                          f"{row['bwd_full_vs_none']:.3f}"
                          + (f" | torch packed / cyrnn fwd {row['torch_fwd_vs_cyrnn']:.1f} "
                             f"fwd+bwd {row['torch_fwd_bwd_vs_cyrnn']:.1f}" if torch else ""),
                          flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": {"platform": platform.platform(),
                                   "torch": getattr(torch, "__version__", None)},
                       "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
