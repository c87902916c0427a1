"""Inference against PyTorch and onnxruntime: the LSTM forward pass, in one process.

    cyrnn-bench --inference [--dtype float32,float64] [--json PATH]

Three tables, every implementation timed in interleaved rounds (medians,
cyrnn.bench.timing.measure) on the same weights, after checking they agree:

- single thread, the seven shapes below, hidden states only (cyrnn: `Wy` with 0
  rows) and with the notebook's output head (Linear + softmax per step):
  cyrnn `lstm_forward(cache=False)` and cached, PyTorch `nn.LSTM` under
  `no_grad`, onnxruntime running a one-node ONNX `LSTM` graph (float32 only:
  its CPU LSTM has no float64 kernel), and the BLAS-only floor of every plan
  cyrnn could run for the shape (`cyrnn._engine.GemmFloor`, one per plan);
- two threads (medium, bigbatch, long): sequences/s of cyrnn `n_threads=2` and
  of 2 user threads on half batches, PyTorch `set_num_threads(2)`, onnxruntime
  `intra_op_num_threads=2`, each sample after a pause (SETTLE_SECONDS) that lets
  the previous call's spinning worker threads go idle;
- serving: requests of m = 1..8 sequences (T = 100, n_x = 64, n_a = 128) from 2
  user threads, requests/s (PyTorch and onnxruntime on 1 intra-op thread each).
Ratios are peer time / cyrnn time: above 1, cyrnn is faster.
"""
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from cyrnn.bench.report import Table, ms, progress, ratio
from cyrnn.models import Model
from cyrnn.serve import Batcher
from cyrnn.bench.timing import measure

SHAPES = {  # (n_x, n_a, m, T)
    "tiny": (3, 5, 10, 7),
    "small": (32, 64, 16, 50),
    "medium": (128, 256, 64, 100),
    "bigbatch": (64, 128, 1024, 50),
    "wide": (512, 1024, 32, 20),
    "batch1": (64, 128, 1, 100),
    "long": (256, 256, 8, 2000),
}
HEAD_ROWS = 32              # n_y of the "with head" rows
THREAD_SHAPES = ("medium", "bigbatch", "long")
SERVING = (64, 128, 100)    # n_x, n_a, T
# The two-thread table sleeps this long before each sample (cyrnn.bench.timing.measure's
# settle): the spinning worker threads of the call before then no longer hold a core.
SETTLE_SECONDS = 0.25
PEER_HINT = "pip install torch onnx onnxruntime (or pip install \"cyrnn[peers]\")"


def find_peers():
    """{name: module} of the installed peers; says which are missing and how to add them."""
    found = {}
    for name in ("torch", "onnx", "onnxruntime"):
        try:
            found[name] = __import__(name)
        except ImportError:
            pass
    if "onnx" not in found:
        found.pop("onnxruntime", None)
    missing = [n for n in ("torch", "onnxruntime") if n not in found]
    if missing:
        print(f"{' and '.join(missing)} not installed: {'its' if len(missing) == 1 else 'their'}"
              f" columns stay empty. Add {'it' if len(missing) == 1 else 'them'} with "
              f"`{PEER_HINT}`.")
    return found


def lstm_problem(n_x, n_a, m, T, dtype, n_y=0, seed=0):
    rng = np.random.default_rng(seed)

    def draw(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    # weights at the usual initial scale (PyTorch's: about 1/sqrt(fan-in)), so the
    # gates are not saturated and float32's rounding stays comparable across peers
    p = {f"W{g}": draw(n_a, n_a + n_x, scale=(n_a + n_x) ** -0.5) for g in "fico"}
    p.update({f"b{g}": draw(n_a, 1) for g in "fico"})
    p["Wy"], p["by"] = draw(n_y, n_a, scale=n_a ** -0.5), draw(n_y, 1)
    return p, draw(n_x, m, T, scale=1.0), np.zeros((n_a, m), dtype)


def _stacked(p, order, n_a):
    """Per-gate weights in a framework's gate order: (input part, recurrent part, bias)."""
    W = np.concatenate([p["W" + g] for g in order])
    return W[:, n_a:], W[:, :n_a], np.concatenate([p["b" + g][:, 0] for g in order])


def torch_forward(torch, p, n_x, n_a, dtype):
    """PyTorch nn.LSTM (+ Linear + softmax when p has a head) on x (T, m, n_x)."""
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    lstm = torch.nn.LSTM(n_x, n_a).to(tdtype).eval()
    n_y = p["Wy"].shape[0]
    head = torch.nn.Linear(n_a, n_y).to(tdtype) if n_y else None
    Wx, Wa, b = _stacked(p, "ifco", n_a)      # PyTorch's (i, f, g, o)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(np.ascontiguousarray(Wx)))
        lstm.weight_hh_l0.copy_(torch.from_numpy(np.ascontiguousarray(Wa)))
        lstm.bias_ih_l0.copy_(torch.from_numpy(b))
        lstm.bias_hh_l0.zero_()
        if head is not None:
            head.weight.copy_(torch.from_numpy(p["Wy"]))
            head.bias.copy_(torch.from_numpy(p["by"][:, 0]))

    def call(xt):
        with torch.no_grad():
            out, _ = lstm(xt)
            return torch.softmax(head(out), dim=-1) if head is not None else out
    return call


def onnx_session(onnx, ort, p, n_x, n_a, threads):
    """An onnxruntime session of one ONNX LSTM node (+ MatMul, Add, Softmax for a head)."""
    h = onnx.helper
    Wx, Wa, b = _stacked(p, "iofc", n_a)      # ONNX's (i, o, f, c)
    init = [onnx.numpy_helper.from_array(a[None].astype(np.float32), name) for a, name in
            ((Wx, "W"), (Wa, "R"), (np.concatenate([b, np.zeros_like(b)]), "B"))]
    nodes = [h.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=n_a),
             h.make_node("Squeeze", ["Y", "axis1"], ["H"])]
    init.append(onnx.numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    out = "H"
    if p["Wy"].shape[0]:
        init += [onnx.numpy_helper.from_array(np.ascontiguousarray(p["Wy"].T), "WyT"),
                 onnx.numpy_helper.from_array(p["by"][:, 0], "by")]
        nodes += [h.make_node("MatMul", ["H", "WyT"], ["Z"]), h.make_node("Add", ["Z", "by"], ["Zb"]),
                  h.make_node("Softmax", ["Zb"], ["Yhat"], axis=-1)]
        out = "Yhat"
    f32 = onnx.TensorProto.FLOAT
    graph = h.make_graph(nodes, "lstm", [h.make_tensor_value_info("X", f32, ["T", "m", n_x])],
                         [h.make_tensor_value_info(out, f32, None)], initializer=init)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return lambda xt: session.run(None, {"X": xt})[0]


def _check(name, theirs, ours, dtype):
    tol = 2e-4 if dtype == np.float32 else 1e-9
    if not np.allclose(np.asarray(theirs), ours, rtol=tol, atol=tol):
        raise AssertionError(f"{name} does not compute what cyrnn does (max difference "
                             f"{np.max(np.abs(np.asarray(theirs) - ours)):.3g})")


def implementations(found, shape, dtype, n_y, threads=1):
    """{name: zero-argument call} for one problem, every peer checked against cyrnn."""
    import cyrnn
    n_x, n_a, m, T = shape
    p, x, a0 = lstm_problem(n_x, n_a, m, T, dtype, n_y)
    xt = np.ascontiguousarray(x.transpose(2, 1, 0))          # the peers' (T, m, n_x)
    out = 1 if n_y else 0
    calls = {"cyrnn": lambda: cyrnn.lstm_forward(x, a0, p, cache=False, n_threads=threads),
             "cyrnn cached": lambda: cyrnn.lstm_forward(x, a0, p, n_threads=threads)}
    want = calls["cyrnn"]()[out].transpose(2, 1, 0)
    torch, onnx, ort = (found.get(k) for k in ("torch", "onnx", "onnxruntime"))
    if torch is not None:
        forward = torch_forward(torch, p, n_x, n_a, dtype)
        tx = torch.from_numpy(xt)

        def torch_call():
            torch.set_num_threads(threads)
            return forward(tx)
        _check("PyTorch", torch_call().numpy(), want, dtype)
        calls["torch"] = torch_call
    if ort is not None and dtype == np.float32:
        run = onnx_session(onnx, ort, p, n_x, n_a, threads)
        _check("onnxruntime", run(xt), want, dtype)
        calls["onnxruntime"] = lambda: run(xt)
    return calls


def floors(shape, dtype, n_y):
    """{plan name: zero-argument call} of the BLAS-only floors of every forward plan."""
    from cyrnn import _engine
    n_x, n_a, m, T = shape
    # (a row-block plan on weights no taller than its blocks is the direct one)
    plans = [p for p in _engine.FORWARD_PLANS
             if not (p == "gemv" and m != 1 or p == "transposed" and m == 1
                     or p.startswith("rows") and int(p[4:]) >= 4 * n_a)]
    return {f"floor {plan}": _engine.GemmFloor("lstm", n_x, n_a, n_y, m, T, dtype,
                                               plan=plan).forward for plan in plans}


def describe(shapes):
    """The text printed above the tables: what every column means."""
    sizes = ", ".join(f"{name} {SHAPES[name]}" for name in shapes)
    return f"""LSTM inference: cyrnn against PyTorch and onnxruntime in one process, interleaved
rounds, medians; every implementation is checked against cyrnn before it is timed.
One thread:
  out         a: hidden states only (cyrnn: Wy with 0 rows); head: with the
              notebook's output head ({HEAD_ROWS} rows, softmax per step)
  cyrnn ms    lstm_forward(..., cache=False), milliseconds per call
  cached ms   lstm_forward keeping its caches (the notebook's default, for backward)
  floor       the plan cyrnn could run whose BLAS products alone are fastest here
  floor ms    those products' time (cyrnn._engine.GemmFloor); x floor: cyrnn / floor
  torch ms    PyTorch nn.LSTM (+ Linear, softmax) under no_grad
  ort ms      onnxruntime, a one-node ONNX LSTM graph; n/a in float64: its CPU LSTM
              has no float64 kernel
  /cyrnn      that peer's time / cyrnn's: above 1, cyrnn is faster
Two threads, sequences/s: cyrnn n_threads=2 (one call on 2 threads); 2 user threads
  (2 Python threads, each calling cyrnn on half the batch); 2 BLAS threads (one call,
  SciPy's BLAS on 2 threads); PyTorch and onnxruntime on 2 intra-op threads.
Serving, requests/s: 2 user threads each sending requests of m sequences (n_x, n_a,
  T = {SERVING}); cyrnn per request (lstm_forward), and through cyrnn.serve.Batcher
  (2 workers, coalescing the threads' requests); PyTorch and onnxruntime on 1
  intra-op thread each.
Shapes (n_x, n_a, m, T): {sizes}"""


SINGLE_TABLE = Table([("dtype", 7), ("shape", 8), ("out", 4), ("floor", 10), ("cyrnn ms", 9),
                      ("cached ms", 9), ("floor ms", 9), ("x floor", 7), ("torch ms", 9),
                      ("/cyrnn", 6), ("ort ms", 9), ("/cyrnn", 6)], names=4)
TWO_THREAD_TABLE = Table([("dtype", 7), ("shape", 8), ("n_threads=2", 0),
                          ("2 user threads", 0), ("2 BLAS threads", 0), ("torch", 9),
                          ("ort", 9), ("best cyrnn / faster peer", 0)], names=2)
SERVING_TABLE = Table([("dtype", 7), ("m", 3), ("cyrnn", 9), ("batcher", 9), ("torch", 9),
                       ("ort", 9), ("cyrnn / faster peer", 0), ("batcher / faster peer", 0)])


def single_thread_rows(found, shapes, dtypes, budget, log=print, bar=None):
    rows = []
    log(SINGLE_TABLE.header())
    with threadpool_limits(1, "blas"):
        for dtype in dtypes:
            for name in shapes:
                for n_y in (0, HEAD_ROWS):
                    calls = implementations(found, SHAPES[name], dtype, n_y)
                    calls.update(floors(SHAPES[name], dtype, n_y))
                    t = measure(calls, budget)
                    rows.append(summarise({"shape": name, "dtype": np.dtype(dtype).name,
                                           "head": bool(n_y), "seconds": t}))
                    log(format_row(rows[-1], "onnxruntime" in found))
                    if bar is not None:
                        bar.update()
    return rows


def summarise(row):
    t = row["seconds"]
    fl = {k: v for k, v in t.items() if k.startswith("floor")}
    if fl:
        row["best_floor"] = min(fl, key=fl.get)
        row["cyrnn_vs_best_floor"] = t["cyrnn"] / fl[row["best_floor"]]
        row["cached_vs_best_floor"] = t["cyrnn cached"] / fl[row["best_floor"]]
    for peer in ("torch", "onnxruntime"):
        if peer in t:
            row[f"{peer}_vs_cyrnn"] = t[peer] / t["cyrnn"]
            if fl:
                row[f"{peer}_vs_best_floor"] = t[peer] / min(fl.values())
    return row


def format_row(row, with_onnxruntime=True):
    """A row of SINGLE_TABLE; 'n/a' where onnxruntime is installed but has no kernel."""
    t = row["seconds"]
    floor = row.get("best_floor")
    ort = ms(t.get("onnxruntime")) if "onnxruntime" in t else \
        ("n/a" if with_onnxruntime and row["dtype"] == "float64" else "")
    return SINGLE_TABLE.row(
        row["dtype"], row["shape"], "head" if row["head"] else "a",
        floor and floor.removeprefix("floor "), ms(t["cyrnn"]), ms(t["cyrnn cached"]),
        ms(t.get(floor)),
        ratio(row.get("cyrnn_vs_best_floor")),
        ms(t.get("torch")), ratio(row.get("torch_vs_cyrnn")),
        ort, ratio(row.get("onnxruntime_vs_cyrnn")))


class _Halves:
    """cyrnn on 2 user threads, each on half the batch (a persistent pool)."""

    def __init__(self, pool, x, a0, p):
        import cyrnn
        m = x.shape[1]
        parts = [(np.ascontiguousarray(x[:, s]), np.ascontiguousarray(a0[:, s]))
                 for s in (slice(0, m // 2), slice(m // 2, m))]
        self.pool, self.calls = pool, [
            (lambda x=x, a=a: cyrnn.lstm_forward(x, a, p, cache=False)) for x, a in parts]

    def __call__(self):
        return [f.result() for f in [self.pool.submit(c) for c in self.calls]]


def two_thread_rows(found, dtypes, budget, log=print, bar=None):
    import cyrnn
    rows = []
    log(TWO_THREAD_TABLE.header())
    with ThreadPoolExecutor(2) as pool, threadpool_limits(1, "blas"):
        for dtype in dtypes:
            for name in THREAD_SHAPES:
                n_x, n_a, m, T = SHAPES[name]
                calls = implementations(found, SHAPES[name], dtype, 0, threads=2)
                del calls["cyrnn cached"]
                p, x, a0 = lstm_problem(n_x, n_a, m, T, dtype)
                calls["cyrnn 2 user threads"] = _Halves(pool, x, a0, p)
                calls["cyrnn 2 BLAS threads"] = _blas_threads(
                    lambda x=x, a0=a0, p=p: cyrnn.lstm_forward(x, a0, p, cache=False))
                t = measure(calls, budget, settle=SETTLE_SECONDS)
                rate = {k: m / v for k, v in t.items()}
                ours = max(v for k, v in rate.items() if k.startswith("cyrnn"))
                peers = [v for k, v in rate.items() if not k.startswith("cyrnn")]
                row = {"shape": name, "dtype": np.dtype(dtype).name,
                       "sequences_per_s": rate, "cyrnn_best": ours}
                if peers:
                    row["cyrnn_vs_faster_peer"] = ours / max(peers)
                rows.append(row)
                log(TWO_THREAD_TABLE.row(
                    row["dtype"], name, *(_rate(rate.get(k)) for k in (
                        "cyrnn", "cyrnn 2 user threads", "cyrnn 2 BLAS threads", "torch")),
                    _ort_rate(found, rate, dtype), ratio(row.get("cyrnn_vs_faster_peer"))))
                if bar is not None:
                    bar.update()
    return rows


def _rate(value):
    return "" if value is None else f"{value:.0f}"


def _ort_rate(found, rate, dtype):
    """onnxruntime's cell: 'n/a' where it is installed but has no float64 LSTM."""
    if "onnxruntime" in found and np.dtype(dtype) == np.float64:
        return "n/a"
    return _rate(rate.get("onnxruntime"))


def _blas_threads(call):
    def run():
        with threadpool_limits(2, "blas"):
            return call()
    return run


def serving_rows(found, dtypes, seconds, log=print, threads=2, bar=None):
    """Requests/s of m = 1..8-sequence requests served from `threads` user threads."""
    import cyrnn
    n_x, n_a, T = SERVING
    rows = []
    log(SERVING_TABLE.header())
    for dtype in dtypes:
        for m in (1, 8):
            p, x, a0 = lstm_problem(n_x, n_a, m, T, dtype)
            calls = {"cyrnn": lambda x=x, a0=a0, p=p: cyrnn.lstm_forward(x, a0, p, cache=False)}
            impl = implementations(found, (n_x, n_a, m, T), dtype, 0, threads=1)
            calls.update({k: v for k, v in impl.items() if k in ("torch", "onnxruntime")})
            batcher = Batcher(Model("lstm", [[p]]), n_threads=threads)
            calls["batcher"] = lambda x=x, batcher=batcher: batcher(x)
            rate = {}
            with threadpool_limits(1, "blas"), batcher:
                for name, call in calls.items():
                    rate[name] = _serve(call, threads, seconds)
            row = {"m": m, "dtype": np.dtype(dtype).name, "threads": threads,
                   "requests_per_s": rate}
            peers = [v for k, v in rate.items() if k in ("torch", "onnxruntime")]
            if peers:
                row["cyrnn_vs_faster_peer"] = rate["cyrnn"] / max(peers)
            rows.append(row)
            if peers:
                row["batcher_vs_faster_peer"] = rate["batcher"] / max(peers)
            log(SERVING_TABLE.row(row["dtype"], m, *(_rate(rate.get(k)) for k in (
                "cyrnn", "batcher", "torch")), _ort_rate(found, rate, dtype),
                ratio(row.get("cyrnn_vs_faster_peer")),
                ratio(row.get("batcher_vs_faster_peer"))))
            if bar is not None:
                bar.update()
    return rows


def _serve(call, threads, seconds, rounds=3):
    """Median over rounds of requests/s with `threads` threads calling `call` in a loop."""
    results = []

    def worker(i, start, counts):
        start.wait()
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            call()
            counts[i] += 1
    for _ in range(rounds):
        counts = [0] * threads
        start = threading.Barrier(threads + 1)
        workers = [threading.Thread(target=worker, args=(i, start, counts))
                   for i in range(threads)]
        for w in workers:
            w.start()
        start.wait()
        for w in workers:
            w.join()
        results.append(sum(counts) / seconds)
    return statistics.median(results)


def run(shapes, dtypes, budget, serving_seconds=1.0, log=print, progress_bar=True):
    """The three tables, printed as their rows come (above a progress bar)."""
    found = find_peers()
    log(describe(shapes))
    steps = len(dtypes) * (2 * len(shapes) + len(THREAD_SHAPES) + 2)
    bar = progress(steps, progress_bar, unit="row")
    write = bar.write if log is print else log
    try:
        result = {"machine": machine(found),
                  "single_thread": single_thread_rows(found, shapes, dtypes, budget, write,
                                                      bar)}
        result["two_threads"] = two_thread_rows(found, dtypes, budget, write, bar)
        result["serving"] = serving_rows(found, dtypes, serving_seconds, write, bar=bar)
    finally:
        bar.close()
    return result


def machine(found):
    import platform

    import scipy
    from threadpoolctl import threadpool_info
    blas = [i for i in threadpool_info() if "scipy" in i.get("filepath", "")]
    return {"platform": platform.platform(), "processor": platform.processor(),
            "scipy": scipy.__version__,
            "blas": {k: blas[0].get(k) for k in ("internal_api", "version", "architecture")}
            if blas else None,
            **{k: v.__version__ for k, v in found.items()}}


def plot(result, path):
    """Peer time / cyrnn time per shape (1 thread, hidden states only), one panel per dtype."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["single_thread"] if not r["head"]]
    dtypes = sorted({r["dtype"] for r in rows})
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6 * len(dtypes), 4), squeeze=False)
    for ax, dtype in zip(axes[0], dtypes):
        these = [r for r in rows if r["dtype"] == dtype]
        names = [r["shape"] for r in these]
        x = np.arange(len(names))
        series = []
        for key, label in (("torch_vs_cyrnn", "PyTorch"),
                           ("onnxruntime_vs_cyrnn", "onnxruntime"),
                           ("floor_vs_cyrnn", "best BLAS floor")):
            values = [r.get(key, r["seconds"][r["best_floor"]] / r["seconds"]["cyrnn"]
                            if key == "floor_vs_cyrnn" and "best_floor" in r else np.nan)
                      for r in these]
            if not np.isnan(values).all():          # a legend entry only for drawn bars
                series.append((values, label))
        width = 0.8 / max(len(series), 1)
        for k, (values, label) in enumerate(series):
            ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=label)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(x, names)
        ax.set_title(f"LSTM inference, {dtype}, 1 thread")
        ax.set_ylabel("their time / cyrnn time (above 1: cyrnn faster)")
        if series:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
