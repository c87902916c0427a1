"""Benchmark cyrnn against its NumPy reference and PyTorch, in one process.

    python -m cyrnn.bench                      # short run, under a minute
    python -m cyrnn.bench --shapes all --json results.json --plot results.png

For each shape it times the functions of cyrnn and of cyrnn.reference (the
eight notebook functions and the GRU's, whose reset-before variant is listed
as gru_reset_before_*), and PyTorch's nn.RNN/nn.LSTM/nn.GRU + Linear + softmax
when torch is installed,
interleaving the implementations round by round and reporting medians, so
machine noise hits them alike. It also times the BLAS-only floor (the GEMMs
of cyrnn's algorithm alone, see cyrnn._engine.GemmFloor) and a 2048^3 GEMM as the peak,
and reports achieved GFLOP/s as a fraction of it. BLAS (and PyTorch) threads
are pinned with threadpoolctl (--threads, default 1).
"""
import platform
import sys

import numpy as np

from cyrnn.bench.report import Table, ms, ratio
from cyrnn.bench.report import progress as report_progress
from cyrnn.bench.timing import dgemm_peak, measure

SHAPES = {  # (n_x, n_a, n_y, m, T)
    "tiny": (3, 5, 2, 10, 7),
    "small": (32, 64, 10, 16, 50),
    "medium": (128, 256, 64, 64, 100),
    "bigbatch": (64, 128, 32, 1024, 50),
    "wide": (512, 1024, 128, 32, 20),
}
DEFAULT_SHAPES = ("tiny", "small", "medium")
FUNCTIONS = ("rnn_cell_forward", "rnn_forward", "rnn_cell_backward", "rnn_backward",
             "lstm_cell_forward", "lstm_forward", "lstm_cell_backward", "lstm_backward",
             "gru_cell_forward", "gru_forward", "gru_cell_backward", "gru_backward",
             "gru_reset_before_forward", "gru_reset_before_backward")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def cell_of(function):
    """The GemmFloor cell name of a benchmarked function."""
    return "gru_reset_before" if function.startswith("gru_reset_before") else \
        function.split("_")[0]


def gemm_flops(function, n_x, n_a, n_y, m, T):
    """Floating-point operations of the GEMMs the function needs (2·M·N·K each)."""
    gates = GATES[function.split("_")[0]]
    steps = 1 if "_cell_" in function else T
    rows = gates * n_a
    if function.endswith("forward"):
        return 2 * m * steps * (rows * (n_a + n_x) + n_y * n_a)
    # backward: recurrent da, dx, and the weight gradients
    return 2 * m * steps * rows * (n_a + n_x) * 2


def make_problem(shape, dtype, seed=0):
    n_x, n_a, n_y, m, T = shape
    rng = np.random.default_rng(seed)

    def draw(*s, scale=1.0):
        return (scale * rng.standard_normal(s)).astype(dtype)

    p = {"Wax": draw(n_a, n_x, scale=0.3), "Waa": draw(n_a, n_a, scale=0.3),
         "Wya": draw(n_y, n_a, scale=0.3), "ba": draw(n_a, 1), "by": draw(n_y, 1)}
    for g in "fico":
        p["W" + g] = draw(n_a, n_a + n_x, scale=0.3)
        p["b" + g] = draw(n_a, 1)
    p["Wy"], x, a0 = p["Wya"], draw(n_x, m, T), draw(n_a, m)
    gru = {k: p[k] for k in ("Wy", "by")}
    for g in "ru":
        gru["W" + g] = draw(n_a, n_a + n_x, scale=0.3)
        gru["b" + g] = draw(n_a, 1)
    gru_before = dict(gru, Wc=draw(n_a, n_a + n_x, scale=0.3), bc=draw(n_a, 1))
    gru.update(Wcx=draw(n_a, n_x, scale=0.3), Wca=draw(n_a, n_a, scale=0.3), bcx=draw(n_a, 1),
               bca=draw(n_a, 1))
    return {"x": x, "a0": a0, "c0": draw(n_a, m), "p": p, "da": draw(n_a, m, T),
            "gru": gru, "gru_before": gru_before}


def calls_for(module, prob):
    """The eight functions of `module` bound to one problem, caches made up front."""
    x, a0, c0, p, da = prob["x"], prob["a0"], prob["c0"], prob["p"], prob["da"]
    xt, da_t = np.ascontiguousarray(x[:, :, 0]), np.ascontiguousarray(da[:, :, 0])
    rnn_caches = module.rnn_forward(x, a0, p)[2]
    lstm_caches = module.lstm_forward(x, a0, p)[3]
    rnn_cell_cache = module.rnn_cell_forward(xt, a0, p)[2]
    lstm_cell_cache = module.lstm_cell_forward(xt, a0, c0, p)[3]
    pg, pb = prob["gru"], prob["gru_before"]
    gru_caches = module.gru_forward(x, a0, pg)[2]
    gru_before_caches = module.gru_forward(x, a0, pb)[2]
    gru_cell_cache = module.gru_cell_forward(xt, a0, pg)[2]
    return {
        "rnn_cell_forward": lambda: module.rnn_cell_forward(xt, a0, p),
        "rnn_forward": lambda: module.rnn_forward(x, a0, p),
        "rnn_cell_backward": lambda: module.rnn_cell_backward(da_t, rnn_cell_cache),
        "rnn_backward": lambda: module.rnn_backward(da, rnn_caches),
        "lstm_cell_forward": lambda: module.lstm_cell_forward(xt, a0, c0, p),
        "lstm_forward": lambda: module.lstm_forward(x, a0, p),
        "lstm_cell_backward": lambda: module.lstm_cell_backward(da_t, da_t, lstm_cell_cache),
        "lstm_backward": lambda: module.lstm_backward(da, lstm_caches),
        "gru_cell_forward": lambda: module.gru_cell_forward(xt, a0, pg),
        "gru_forward": lambda: module.gru_forward(x, a0, pg),
        "gru_cell_backward": lambda: module.gru_cell_backward(da_t, gru_cell_cache),
        "gru_backward": lambda: module.gru_backward(da, gru_caches),
        "gru_reset_before_forward": lambda: module.gru_forward(x, a0, pb),
        "gru_reset_before_backward": lambda: module.gru_backward(da, gru_before_caches),
    }


def torch_calls(prob, dtype):
    """PyTorch doing the same work: nn.RNN/nn.LSTM/nn.GRU with the same weights
    plus the per-step Linear + softmax; 'backward' is forward + backward from
    da. (PyTorch's GRU is the reset-after variant; its z is 1 - Γu, docs/contract.md §5.)"""
    import torch

    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    x, a0, p, da = prob["x"], prob["a0"], prob["p"], prob["da"]
    n_x, m, T = x.shape
    n_a, n_y = a0.shape[0], p["Wya"].shape[0]

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(tdtype)

    xs = t(x.transpose(2, 1, 0))  # (T, m, n_x)
    h0 = t(a0.T)[None]
    upstream = t(da.transpose(2, 1, 0))
    rnn = torch.nn.RNN(n_x, n_a, nonlinearity="tanh").to(tdtype)
    lstm = torch.nn.LSTM(n_x, n_a).to(tdtype)
    gru = torch.nn.GRU(n_x, n_a).to(tdtype)
    pg = prob["gru"]
    head = torch.nn.Linear(n_a, n_y).to(tdtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(t(p["Wax"]))
        rnn.weight_hh_l0.copy_(t(p["Waa"]))
        rnn.bias_ih_l0.copy_(t(p["ba"][:, 0]))
        rnn.bias_hh_l0.zero_()
        order = "ifco"  # PyTorch's gate order (i, f, g, o)
        W = np.concatenate([p["W" + g] for g in order])
        lstm.weight_hh_l0.copy_(t(W[:, :n_a]))
        lstm.weight_ih_l0.copy_(t(W[:, n_a:]))
        lstm.bias_ih_l0.copy_(t(np.concatenate([p["b" + g][:, 0] for g in order])))
        lstm.bias_hh_l0.zero_()
        gru.weight_hh_l0.copy_(t(np.concatenate([pg["Wr"][:, :n_a], -pg["Wu"][:, :n_a],
                                                 pg["Wca"]])))
        gru.weight_ih_l0.copy_(t(np.concatenate([pg["Wr"][:, n_a:], -pg["Wu"][:, n_a:],
                                                 pg["Wcx"]])))
        gru.bias_ih_l0.copy_(t(np.concatenate([pg["br"], -pg["bu"], pg["bcx"]])[:, 0]))
        gru.bias_hh_l0.copy_(t(np.concatenate([0 * pg["br"], 0 * pg["bu"], pg["bca"]])[:, 0]))
        head.weight.copy_(t(p["Wya"]))
        head.bias.copy_(t(p["by"][:, 0]))
    c0 = torch.zeros_like(h0)

    def forward(net, state, grad):
        with torch.set_grad_enabled(grad):
            out, _ = net(xs, state)
            y = torch.softmax(head(out), dim=-1)
        return out, y

    def forward_backward(net, state):
        out, y = forward(net, state, True)
        out.backward(upstream)
        return y

    return {
        "rnn_forward": lambda: forward(rnn, h0, False),
        "rnn_backward": lambda: forward_backward(rnn, h0),
        "lstm_forward": lambda: forward(lstm, (h0, c0), False),
        "lstm_backward": lambda: forward_backward(lstm, (h0, c0)),
        "gru_forward": lambda: forward(gru, h0, False),
        "gru_backward": lambda: forward_backward(gru, h0),
    }


def run(shapes, dtype, threads, budget, functions=FUNCTIONS, use_torch=True, progress=True):
    import cyrnn
    import cyrnn.reference
    from cyrnn._engine import GemmFloor
    from threadpoolctl import threadpool_info, threadpool_limits

    torch = None
    if use_torch:
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            torch = None
    blas = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})"
            for i in threadpool_info()]
    rows = []
    tasks = [(s, f) for s in shapes for f in functions]
    bar = report_progress(len(tasks) + 1, progress)
    with threadpool_limits(threads):
        peak = dgemm_peak(dtype)
        bar.update(1)
        for shape_name in shapes:
            shape = SHAPES[shape_name]
            prob = make_problem(shape, dtype)
            ours, ref = calls_for(cyrnn, prob), calls_for(cyrnn.reference, prob)
            theirs = torch_calls(prob, dtype) if torch is not None else {}
            cells = sorted({cell_of(f) for f in functions})
            floors = {cell: GemmFloor(cell, *shape, dtype=dtype) for cell in cells}
            for function in functions:
                candidates = {"cyrnn": ours[function], "reference": ref[function]}
                sequence = "_cell_" not in function
                if sequence:
                    floor = floors[cell_of(function)]
                    candidates["floor"] = (floor.forward if function.endswith("forward")
                                           else floor.backward)
                if function in theirs:
                    candidates["torch"] = theirs[function]
                # A shape's slowest calls get more of the budget.
                t = measure(candidates, budget)
                flops = gemm_flops(function, *shape)
                row = {"shape": shape_name, "dims": shape, "function": function,
                       "cyrnn_s": t["cyrnn"], "reference_s": t["reference"],
                       "speedup_vs_reference": t["reference"] / t["cyrnn"],
                       "gflops": flops / t["cyrnn"] / 1e9}
                row["fraction_of_peak"] = row["gflops"] / peak
                if "floor" in t:
                    row["floor_s"] = t["floor"]
                    row["vs_floor"] = t["cyrnn"] / t["floor"]
                if "torch" in t:
                    # PyTorch's "backward" row is forward + backward: compare like with like.
                    mine = t["cyrnn"]
                    if function.endswith("backward"):
                        fwd = function.replace("backward", "forward")
                        mine += measure({"f": ours[fwd]}, budget / 4)["f"]
                        row["cyrnn_fwd_bwd_s"] = mine
                    row["torch_s"] = t["torch"]
                    row["speedup_vs_torch"] = t["torch"] / mine
                rows.append(row)
                bar.update(1)
    bar.close()
    return {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(),
                    "numpy": np.__version__, "blas": blas,
                    "torch": getattr(torch, "__version__", None)},
        "settings": {"dtype": np.dtype(dtype).name, "threads": threads, "budget_s": budget},
        "gemm_peak_gflops": peak,
        "rows": rows,
    }


TABLE = Table([("shape", 9), ("function", max(map(len, FUNCTIONS))), ("cyrnn ms", 9),
               ("ref ms", 9), ("x ref", 7), ("torch ms", 9), ("x torch", 7), ("floor ms", 9),
               ("/floor", 6), ("GFLOP/s", 8), ("%peak", 6)], names=2)


def describe(result):
    """The text above the table: the run's settings and what every column means."""
    settings = result["settings"]
    return f"""dtype {settings['dtype']}, {settings['threads']} BLAS/PyTorch thread(s); medians of \
interleaved rounds.
  cyrnn ms    cyrnn's function, milliseconds per call
  ref ms      cyrnn.reference's (the notebook's NumPy code); x ref: ref ms / cyrnn ms
  torch ms    PyTorch nn.RNN/LSTM/GRU + Linear + softmax (empty: no PyTorch, or what
              it has no counterpart of: cell functions, the reset-before GRU);
              x torch: torch / cyrnn, forward + backward in backward rows on both sides
  floor ms    the BLAS products of cyrnn's algorithm alone (cyrnn._engine.GemmFloor);
              /floor: cyrnn ms / floor ms
  GFLOP/s     the products' floating-point operations per second in cyrnn's call;
              %peak: of a 2048^3 GEMM's rate here ({result['gemm_peak_gflops']:.1f} GFLOP/s)"""


def format_table(result):
    lines = [describe(result), TABLE.header()]
    for r in result["rows"]:
        lines.append(TABLE.row(
            r["shape"], r["function"], ms(r["cyrnn_s"]), ms(r["reference_s"]),
            ratio(r["speedup_vs_reference"], 1), ms(r.get("torch_s")),
            ratio(r.get("speedup_vs_torch")), ms(r.get("floor_s")), ratio(r.get("vs_floor")),
            ratio(r["gflops"]), f"{100 * r['fraction_of_peak']:.1f}%"))
    return "\n".join(lines)


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    labels = [f"{r['shape']}\n{r['function']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.45), 5))
    xs = np.arange(len(rows))
    if any("speedup_vs_torch" in r for r in rows):     # a legend entry only for drawn bars
        ax.bar(xs - 0.2, [r["speedup_vs_reference"] for r in rows], 0.4,
               label="vs NumPy reference")
        ax.bar(xs + 0.2, [r.get("speedup_vs_torch", np.nan) for r in rows], 0.4,
               label="vs PyTorch")
    else:
        ax.bar(xs, [r["speedup_vs_reference"] for r in rows], 0.6, label="vs NumPy reference")
    ax.set_yscale("log")
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_xticks(xs, labels, rotation=90, fontsize=7)
    ax.set_ylabel("speed-up of cyrnn (higher is better)")
    ax.set_title(f"cyrnn speed-up, {result['settings']['dtype']}, "
                 f"{result['settings']['threads']} thread(s)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_agreement(dtype):
    """Quick guard that the timed functions compute what the reference does."""
    import cyrnn
    import cyrnn.reference

    prob = make_problem(SHAPES["tiny"], dtype)
    x, a0, p, da = prob["x"], prob["a0"], prob["p"], prob["da"]
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for forward, backward, n_out, q in (("rnn_forward", "rnn_backward", 3, p),
                                        ("lstm_forward", "lstm_backward", 4, p),
                                        ("gru_forward", "gru_backward", 3, prob["gru"]),
                                        ("gru_forward", "gru_backward", 3, prob["gru_before"])):
        ours = getattr(cyrnn, forward)(x, a0, q)
        theirs = getattr(cyrnn.reference, forward)(x, a0, q)
        for u, v in zip(ours[:n_out - 1], theirs[:n_out - 1]):
            np.testing.assert_allclose(u, v, rtol=tol, atol=tol)
        g1 = getattr(cyrnn, backward)(da, ours[-1])
        g2 = getattr(cyrnn.reference, backward)(da, theirs[-1])
        for key in g2:
            np.testing.assert_allclose(g1[key], g2[key], rtol=tol, atol=tol)
