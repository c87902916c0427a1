"""Real models (issue 20's targets): cyrnn.models against PyTorch and onnxruntime
running the same weights, float32, at 1 and 2 threads; and the per-call
overhead of a Model over the bare notebook function.

    python benchmarks/bench_models.py [--budget 2] [--json results/models.json]

Models:
- "bilstm": 2-layer bidirectional LSTM(256) on m = 8, T = 2000, n_x = 256 (the
  model of pytorch#81634);
- "bigru": batch-1 bidirectional GRU(32) on n_x = 96, T = 63 (speech-like,
  oneDNN#837).
PyTorch: the nn module under no_grad, torch.set_num_threads(k). onnxruntime: the
module exported by torch.onnx (TorchScript exporter), CPU provider,
intra_op_num_threads = k, one session per k. cyrnn: Model(x, n_threads=k);
at 2 threads its best of n_threads=2 (one BLAS thread per cyrnn thread) and
n_threads=1 with SciPy's BLAS on 2 threads. Interleaved rounds, medians
(cyrnn.bench.measure); ratios are peer time / cyrnn time (above 1: cyrnn faster).

Overhead: Model(x) of a 1-layer, 1-direction model against the bare
`*_forward(x, a0, parameters, cache=False)` on the same weights, at the
bench shapes small, medium and bigbatch (1 thread): Model time / bare time - 1.

Kept packing: Model(x) (each direction's packed weights kept between calls)
against the same model packing them on every call (its caches taken away), the
plan as the planner chooses, 1 thread: per-call time / kept time - 1, at the
batch-1 bi-GRU(32), serving-sized LSTM(128) requests (m = 1 and 8, T = 100,
n_x = 64) and the bi-LSTM(256) on T = 200.
"""
import argparse
import io
import json
import platform
import sys
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

import cyrnn
from cyrnn import models
from cyrnn.bench import SHAPES, measure

MODELS = {"bilstm": ("lstm", 256, 256, 2, 8, 2000),     # cell, n_x, n_a, layers, m, T
          "bigru": ("gru", 96, 32, 1, 1, 63)}


def peers():
    found = {}
    for name in ("torch", "onnxruntime"):
        try:
            found[name] = __import__(name)
        except ImportError:
            print(f"{name} is not installed: its columns stay empty "
                  f"(pip install {name}; or pip install 'cyrnn[peers]')")
    if "onnxruntime" in found and "torch" not in found:
        print("onnxruntime needs PyTorch here to export the models: its columns stay empty")
        del found["onnxruntime"]
    return found


def build(torch, cell, n_x, n_a, layers):
    torch.manual_seed(0)
    net = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
        n_x, n_a, num_layers=layers, bidirectional=True)
    return net.float().eval()


def onnx_session(ort, torch, net, x, threads):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(x),), buffer, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def model_rows(found, budget):
    torch, ort = found.get("torch"), found.get("onnxruntime")
    rows = []
    for name, (cell, n_x, n_a, layers, m, T) in MODELS.items():
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n_x, m, T)).astype(np.float32)
        xt = np.ascontiguousarray(x.transpose(2, 1, 0))        # PyTorch/ONNX: (T, m, n_x)
        if torch is not None:
            net = build(torch, cell, n_x, n_a, layers)
            model = models.from_torch(net)
        else:   # the same architecture with random weights: cyrnn's column alone
            net = None
            model = models.Model(cell, [[random_direction(cell, n_x if l == 0 else 2 * n_a,
                                                          n_a, rng) for _ in range(2)]
                                        for l in range(layers)])
        for threads in (1, 2):
            calls = {"cyrnn": lambda k=threads: model(x, n_threads=k)}
            if threads == 2:
                def blas_threads():
                    with threadpool_limits(2, "blas"):
                        return model(x)
                calls["cyrnn (BLAS threads)"] = blas_threads
            if torch is not None:
                tx = torch.from_numpy(xt)

                def torch_call(k=threads):
                    torch.set_num_threads(k)
                    with torch.no_grad():
                        return net(tx)
                calls["torch"] = torch_call
            if ort is not None:
                session = onnx_session(ort, torch, net, xt, threads)
                feed = {session.get_inputs()[0].name: xt}
                calls["onnxruntime"] = lambda s=session, f=feed: s.run(None, f)
            with threadpool_limits(1, "blas"):
                t = measure(calls, budget)
            best = min(v for k, v in t.items() if k.startswith("cyrnn"))
            row = {"model": name, "threads": threads, "seconds": t, "cyrnn_best": best}
            for peer in ("torch", "onnxruntime"):
                if peer in t:
                    row[f"{peer}_vs_cyrnn"] = t[peer] / best
            rows.append(row)
            print(f"{name:7} {threads} thread(s): cyrnn {best * 1e3:8.2f} ms"
                  + "".join(f" | {p} {t[p] * 1e3:8.2f} ms ({row[p + '_vs_cyrnn']:.2f}x)"
                            for p in ("torch", "onnxruntime") if p in t)
                  + (f" | cyrnn n_threads=2 {t['cyrnn'] * 1e3:.2f} ms, BLAS threads "
                     f"{t['cyrnn (BLAS threads)'] * 1e3:.2f} ms" if threads == 2 else ""),
                  flush=True)
    return rows


def random_direction(cell, n_x, n_a, rng):
    def draw(*shape):
        return (0.3 * rng.standard_normal(shape)).astype(np.float32)
    if cell == "lstm":
        return {f"{w}{g}": draw(n_a, n_a + n_x) if w == "W" else draw(n_a, 1)
                for g in "fico" for w in "Wb"}
    return {"Wr": draw(n_a, n_a + n_x), "Wu": draw(n_a, n_a + n_x), "br": draw(n_a, 1),
            "bu": draw(n_a, 1), "Wcx": draw(n_a, n_x), "Wca": draw(n_a, n_a),
            "bcx": draw(n_a, 1), "bca": draw(n_a, 1)}


def overhead_rows(budget):
    rows = []
    with threadpool_limits(1, "blas"):
        for shape in ("small", "medium", "bigbatch"):
            n_x, n_a, _, m, T = SHAPES[shape]
            for cell in ("lstm", "gru"):
                rng = np.random.default_rng(1)
                p = random_direction(cell, n_x, n_a, rng)
                model = models.Model(cell, [[p]])
                x = rng.standard_normal((n_x, m, T)).astype(np.float32)
                a0 = np.zeros((n_a, m), np.float32)
                full = dict(p, Wy=np.zeros((0, n_a), np.float32), by=np.zeros((0, 1), np.float32))
                bare = getattr(cyrnn, f"{cell}_forward")
                t = measure({"bare": lambda: bare(x, a0, full, cache=False),
                             "model": lambda: model(x)}, budget)
                row = {"shape": shape, "cell": cell, "seconds": t,
                       "overhead": t["model"] / t["bare"] - 1}
                rows.append(row)
                print(f"overhead {shape:9} {cell}: bare {t['bare'] * 1e3:8.3f} ms, Model "
                      f"{t['model'] * 1e3:8.3f} ms: {100 * row['overhead']:+.1f}%", flush=True)
    return rows


KEPT_PACKING = {  # cell, n_x, n_a, layers, directions, m, T
    "bigru": ("gru", 96, 32, 1, 2, 1, 63),
    "lstm128 m=1": ("lstm", 64, 128, 1, 1, 1, 100),
    "lstm128 m=8": ("lstm", 64, 128, 1, 1, 8, 100),
    "bilstm T=200": ("lstm", 256, 256, 2, 2, 8, 200),
}


def kept_packing_rows(budget):
    import copy
    rows = []
    with threadpool_limits(1, "blas"):
        for name, (cell, n_x, n_a, layers, D, m, T) in KEPT_PACKING.items():
            rng = np.random.default_rng(2)
            model = models.Model(cell, [[random_direction(cell, n_x if l == 0 else D * n_a,
                                                          n_a, rng) for _ in range(D)]
                                        for l in range(layers)])
            per_call = copy.copy(model)
            per_call._packed = [[None] * D for _ in range(layers)]
            x = rng.standard_normal((n_x, m, T)).astype(np.float32)
            np.testing.assert_array_equal(model(x)[0], per_call(x)[0])
            t = measure({"kept": lambda: model(x), "per call": lambda: per_call(x)}, budget)
            row = {"model": name, "seconds": t, "saved": t["per call"] / t["kept"] - 1,
                   "plan": _plan_of(model)}
            rows.append(row)
            print(f"kept packing {name:13}: per call {t['per call'] * 1e3:8.3f} ms, kept "
                  f"{t['kept'] * 1e3:8.3f} ms: {100 * row['saved']:+.1f}% "
                  f"(packed plan: {row['plan']})", flush=True)
    return rows


def _plan_of(model):
    return any(c.filled for layer in model._packed for c in layer if c is not None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=2.0)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    found = peers()
    rows = model_rows(found, args.budget)
    overhead = overhead_rows(args.budget / 2)
    kept = kept_packing_rows(args.budget / 2)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": {"platform": platform.platform(),
                                   "processor": platform.processor(),
                                   **{k: v.__version__ for k, v in found.items()}},
                       "models": rows, "overhead": overhead, "kept_packing": kept}, fh,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
