"""Training (issue 22's targets): the Dinosaurus assignment's `optimize` and
`model` against the course's NumPy code, and a batched training step against
PyTorch.

    python benchmarks/bench_train.py [--budget 2] [--iterations 35000] [--json ...]

- optimize: n_a = 100, vocabulary 27, a 6-step name (the notebook's test cell
  shapes, weights N(0, 0.01)); cyrnn.dinosaurus vs cyrnn.reference.dinosaurus
  (the course's code), interleaved, medians, 1 BLAS thread.
- model: `model(names, ..., num_iterations)` end to end, each once (output
  silenced), on 1536 made-up names (the size of the course's dinos.txt, which
  is not shipped here), NumPy's global state seeded alike.
- training step: one-hot characters (vocabulary 100) -> LSTM(256) -> Linear
  -> softmax cross-entropy -> Adam, m = 64 sequences of T = 100, float32.
  cyrnn: lstm_forward (hidden states, caches) + cyrnn.train.softmax_cross_entropy
  + lstm_backward + Adam.step; PyTorch: nn.LSTM + nn.Linear + CrossEntropyLoss +
  torch.optim.Adam (forward, backward, step, zero_grad). 1 thread (BLAS and
  torch.set_num_threads) and 2 threads (cyrnn: the better of SciPy's BLAS on 2
  threads and on 1, as n_threads has nothing to split at m = 64; PyTorch:
  set_num_threads(2)).
"""
import argparse
import contextlib
import io
import json
import platform
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import cyrnn
from cyrnn import dinosaurus, models, train
from cyrnn.bench import measure
from cyrnn.reference import dinosaurus as course

CHARS = ["\n"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]


def optimize_row(budget):
    np.random.seed(1)
    n_a, vocab = 100, 27
    p = {"Wax": np.random.randn(n_a, vocab) * 0.01, "Waa": np.random.randn(n_a, n_a) * 0.01,
         "Wya": np.random.randn(vocab, n_a) * 0.01, "b": np.zeros((n_a, 1)),
         "by": np.zeros((vocab, 1))}
    mine, theirs = ({k: v.copy() for k, v in p.items()} for _ in range(2))
    a_prev = np.zeros((n_a, 1))
    X, Y = [None, 12, 3, 5, 11, 22], [12, 3, 5, 11, 22, 0]
    t = measure({"cyrnn": lambda: dinosaurus.optimize(X, Y, a_prev, mine),
                 "numpy": lambda: course.optimize(X, Y, a_prev, theirs)}, budget)
    return {"seconds": t, "speedup": t["numpy"] / t["cyrnn"]}


def made_up_names(count=1536, seed=0):
    rng = np.random.default_rng(seed)
    syllables = ["sau", "rus", "tor", "don", "ra", "ptor", "mega", "lo", "ce", "pha", "tri",
                 "ank", "ylo", "bra", "chio", "nyx", "stego", "ops", "iguan", "odon"]
    return ["".join(rng.choice(syllables, rng.integers(2, 5))) for _ in range(count)]


def model_row(iterations):
    names = made_up_names()
    char_to_ix = {c: i for i, c in enumerate(CHARS)}
    ix_to_char = dict(enumerate(CHARS))
    seconds = {}
    for name, module in (("cyrnn", dinosaurus), ("numpy", course)):
        with contextlib.redirect_stdout(io.StringIO()):
            start = time.perf_counter()
            module.model(names, ix_to_char, char_to_ix, num_iterations=iterations)
            seconds[name] = time.perf_counter() - start
    return {"iterations": iterations, "seconds": seconds,
            "speedup": seconds["numpy"] / seconds["cyrnn"]}


def step_rows(budget):
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: the training-step comparison is skipped "
              "(pip install torch, or cyrnn[peers])")
        return []
    V, n_a, m, T = 100, 256, 64, 100
    rng = np.random.default_rng(0)
    codes = rng.integers(0, V, (m, T + 1))
    inputs, targets = codes[:, :-1], codes[:, 1:]
    torch.manual_seed(0)
    lstm, linear = torch.nn.LSTM(V, n_a), torch.nn.Linear(n_a, V)
    net = models.from_torch(lstm)
    p = {k: v.copy() for k, v in net.layers[0][0].items() if k not in ("Wy", "by")}
    parameters = dict(p, Wy=linear.weight.detach().numpy().copy(),
                      by=linear.bias.detach().numpy().copy()[:, None])
    optimizer = train.Adam(parameters, learning_rate=1e-3)
    x = np.zeros((V, m, T), np.float32)
    j, t = np.indices((m, T))
    x[inputs, j, t] = 1
    a0 = np.zeros((n_a, m), np.float32)
    no_head = {"Wy": np.zeros((0, n_a), np.float32), "by": np.zeros((0, 1), np.float32)}

    def cyrnn_step():
        cell = {k: parameters[k] for k in p}
        a, _, _, caches = cyrnn.lstm_forward(x, a0, dict(cell, **no_head))
        loss, da, head = train.softmax_cross_entropy(a, parameters["Wy"], parameters["by"],
                                                     targets)
        gradients = cyrnn.lstm_backward(da, caches)
        gradients.update(head)
        optimizer.step(gradients)
        return loss

    tx = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0)))
    ty = torch.from_numpy(np.ascontiguousarray(targets.T)).reshape(-1)
    torch_adam = torch.optim.Adam(list(lstm.parameters()) + list(linear.parameters()), lr=1e-3)

    def torch_step():
        out = linear(lstm(tx)[0])
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, V), ty)
        loss.backward()
        torch_adam.step()
        torch_adam.zero_grad()
        return loss

    def one_blas_thread():
        with threadpool_limits(1, "blas"):
            return cyrnn_step()

    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        calls = {"cyrnn": cyrnn_step, "torch": torch_step}
        if threads == 2:      # cyrnn's better configuration is reported
            calls["cyrnn, 1 BLAS thread"] = one_blas_thread
        with threadpool_limits(threads, "blas"):
            t = measure(calls, budget)
        best = min(v for k, v in t.items() if k.startswith("cyrnn"))
        rows.append({"threads": threads, "seconds": t, "torch_vs_cyrnn": t["torch"] / best})
        print(f"training step, {threads} thread(s): cyrnn {best * 1e3:.1f} ms, PyTorch "
              f"{t['torch'] * 1e3:.1f} ms: PyTorch / cyrnn = {t['torch'] / best:.2f}"
              + (f" (cyrnn with SciPy's BLAS on 2 threads {t['cyrnn'] * 1e3:.1f} ms, on 1 "
                 f"{t['cyrnn, 1 BLAS thread'] * 1e3:.1f} ms)" if threads == 2 else ""),
              flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=2.0)
    parser.add_argument("--iterations", type=int, default=35000)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    with threadpool_limits(1, "blas"):
        opt = optimize_row(args.budget)
        print(f"optimize: cyrnn {opt['seconds']['cyrnn'] * 1e6:.1f} us, NumPy "
              f"{opt['seconds']['numpy'] * 1e6:.1f} us: {opt['speedup']:.1f}x", flush=True)
        mod = model_row(args.iterations)
        print(f"model ({args.iterations} iterations): cyrnn {mod['seconds']['cyrnn']:.2f} s, "
              f"NumPy {mod['seconds']['numpy']:.2f} s: {mod['speedup']:.1f}x", flush=True)
    steps = step_rows(args.budget)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": {"platform": platform.platform(),
                                   "processor": platform.processor()},
                       "optimize": opt, "model": mod, "training_step": steps}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
