"""Serving: cyrnn.serve.Batcher against per-request calls of cyrnn, onnxruntime
and PyTorch, with many client threads.

    python benchmarks/bench_serve.py [--clients 1,8,64] [--seconds 2]
        [--dtype float32,float64] [--cells lstm,gru] [--json PATH] [--plot PATH]

Each of N client threads sends single sequences (n_x = 64) of random lengths
10-200 to a 1-layer LSTM(128) or GRU(128) model, one request after another, for
`--seconds`; requests/s counts answered requests, latency is from the client's
call to its result (p50, p99 over every request of the run). Implementations,
one after another on the same weights and the same request stream:
- batcher: `Batcher(model)` (one worker per core), clients call `batcher(x)`;
- cyrnn: `model(x)` per request, SciPy's BLAS on one thread;
- onnxruntime: one session shared by the clients (the module exported by
  torch.onnx with a dynamic length axis), intra_op_num_threads = 1; float32
  only (its CPU LSTM/GRU have no float64 kernels);
- torch: the nn module under no_grad, torch.set_num_threads(1).
Before timing, each implementation's answer to a few requests is checked
against the model's, and each answers every request once (first calls of a
length, untimed).
"""
import argparse
import io
import json
import os
import platform
import statistics
import sys
import threading
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from bench_models import peers     # (the same peers, exported the same way)
from cyrnn import models
from cyrnn.serve import Batcher

N_X, N_A = 64, 128
LENGTHS = (10, 200)
POOL = 256      # distinct requests the clients cycle through


def build(found, cell, dtype):
    """(model, torch module or None, the requests)."""
    rng = np.random.default_rng(0)
    torch = found.get("torch")
    net = None
    if torch is not None:
        torch.manual_seed(0)
        net = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](N_X, N_A).eval()
        net = net.double() if dtype == np.float64 else net.float()
        model = models.from_torch(net)
    else:
        G = 4 if cell == "lstm" else 3
        model = models.Model(cell, [[models.convert._direction(
            cell, N_A, rng.uniform(-0.1, 0.1, (G * N_A, N_X)),
            rng.uniform(-0.1, 0.1, (G * N_A, N_A)), rng.uniform(-0.1, 0.1, G * N_A),
            rng.uniform(-0.1, 0.1, G * N_A), "ifco" if cell == "lstm" else "rzn")]])
        model = models.Model(cell, [[{k: v.astype(dtype) for k, v in model.layers[0][0].items()
                                      if v.shape[0]}]])
    requests = [rng.standard_normal((N_X, int(rng.integers(*LENGTHS, endpoint=True))))
                .astype(dtype) for _ in range(POOL)]
    return model, net, requests


def implementations(found, model, net, dtype, batcher):
    calls = {"batcher": lambda x: batcher(x)[0],
             "cyrnn": lambda x: model(x[:, None, :])[0][:, 0]}
    torch = found.get("torch")
    if torch is not None:
        def torch_call(x):
            with torch.no_grad():
                return net(torch.from_numpy(np.ascontiguousarray(x.T[:, None, :])))[0]
        calls["torch"] = torch_call
    if "onnxruntime" in found and dtype == np.float32:
        ort = found["onnxruntime"]
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.zeros(7, 1, N_X),), buffer, dynamo=False,
                              input_names=["x"], dynamic_axes={"x": {0: "T"}})
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(buffer.getvalue(), options,
                                       providers=["CPUExecutionProvider"])
        calls["onnxruntime"] = lambda x: session.run(
            None, {"x": np.ascontiguousarray(x.T[:, None, :])})[0]
    return calls


def as_states(name, out):
    """An implementation's answer as cyrnn's (n_a, T) hidden states."""
    if name in ("batcher", "cyrnn"):
        return out
    out = out.numpy() if hasattr(out, "numpy") else out
    return out.reshape(out.shape[0], -1).T      # (T, 1, [1,] n_a) -> (n_a, T)


def serve(call, requests, clients, seconds):
    """(requests/s, latencies) of `clients` threads calling `call` in a loop."""
    latencies = [[] for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(i):
        mine = latencies[i]
        k = i * 37
        start.wait()
        while True:
            x = requests[k % len(requests)]
            k += 1
            began = time.perf_counter()
            call(x)
            done = time.perf_counter()
            if done > stop_at[0]:
                return
            mine.append(done - began)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds + 0.3
    start.wait()
    began = time.perf_counter()
    time.sleep(0.3)                                 # warm-up: not counted
    warm = sum(len(x) for x in latencies)
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began - 0.3
    every = [v for mine in latencies for v in mine]
    counted = len(every) - warm
    return counted / elapsed, every[warm:] if counted > 0 else every


def run(found, cells, dtypes, clients_list, seconds):
    rows = []
    for cell in cells:
        for dtype in dtypes:
            model, net, requests = build(found, cell, dtype)
            with Batcher(model) as batcher, threadpool_limits(1, "blas"):
                if "torch" in found:
                    found["torch"].set_num_threads(1)
                calls = implementations(found, model, net, dtype, batcher)
                tol = 1e-4 if dtype == np.float32 else 1e-10
                for name, call in calls.items():
                    for x in requests[:4]:
                        got = as_states(name, call(x))
                        want = model(x[:, None, :])[0][:, 0]
                        np.testing.assert_allclose(got, want, rtol=tol, atol=tol,
                                                   err_msg=f"{name} does not compute what "
                                                           f"cyrnn does")
                for call in calls.values():     # every length's first call, untimed
                    for x in requests:
                        call(x)
                for clients in clients_list:
                    row = {"cell": cell, "dtype": np.dtype(dtype).name, "clients": clients,
                           "requests_per_s": {}, "p50_ms": {}, "p99_ms": {}}
                    for name, call in calls.items():
                        rate, lat = serve(call, requests, clients, seconds)
                        row["requests_per_s"][name] = rate
                        row["p50_ms"][name] = 1e3 * statistics.median(lat)
                        row["p99_ms"][name] = 1e3 * float(np.percentile(lat, 99))
                    peers_rates = [v for k, v in row["requests_per_s"].items()
                                   if k in ("torch", "onnxruntime")]
                    if peers_rates:
                        row["batcher_vs_faster_peer"] = \
                            row["requests_per_s"]["batcher"] / max(peers_rates)
                    row["batcher_stats"] = batcher.stats()
                    rows.append(row)
                    print(f"{cell:4} {row['dtype']:7} {clients:3} clients: " + " | ".join(
                        f"{k} {v:7.0f} req/s p50 {row['p50_ms'][k]:6.2f} p99 "
                        f"{row['p99_ms'][k]:6.2f} ms" for k, v in row["requests_per_s"].items())
                        + (f" | batcher/faster peer {row['batcher_vs_faster_peer']:.2f}"
                           if peers_rates else ""), flush=True)
    return rows


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = sorted({(r["cell"], r["dtype"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (cell, dtype) in zip(axes[0], panels):
        these = [r for r in rows if r["cell"] == cell and r["dtype"] == dtype]
        for name in these[0]["requests_per_s"]:
            xs = [r["p99_ms"][name] for r in these]
            ys = [r["requests_per_s"][name] for r in these]
            ax.plot(xs, ys, marker="o", label=name)
            for r, x, y in zip(these, xs, ys):
                ax.annotate(str(r["clients"]), (x, y), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("p99 latency, ms (points: client threads)")
        ax.set_ylabel("requests/s")
        ax.set_title(f"{cell.upper()}(128), {dtype}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="1,8,64")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--dtype", default="float32,float64")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--json")
    parser.add_argument("--plot")
    args = parser.parse_args(argv)
    found = peers()
    rows = run(found, args.cells.split(","), [np.dtype(d).type for d in args.dtype.split(",")],
               [int(c) for c in args.clients.split(",")], args.seconds)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": {"platform": platform.platform(),
                                   "processor": platform.processor(), "cpus": os.cpu_count(),
                                   **{k: v.__version__ for k, v in found.items()}},
                       "rows": rows}, fh, indent=1)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
