"""Training (docs/contract.md §9): the loss and its gradient for the
notebook's backward functions, gradient clipping, SGD and Adam, and
`cyrnn-train`, a character-level language model on any UTF-8 text.

    a, _, caches = cyrnn.lstm_forward(x, a0, cell_parameters)   # Wy with 0 rows
    loss, da, head_gradients = softmax_cross_entropy(a, Wy, by, targets, lengths=lengths)
    gradients = cyrnn.lstm_backward(da, caches) | head_gradients
    clip_by_global_norm(gradients, 5.0)
    optimizer.step(gradients)        # Adam(parameters) or SGD(parameters): in place

The optimisers' and clipping's loops are compiled (src/cyrnn_train.h), in
place, one pass over each array, without the GIL.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

from . import _train
from .models.model import _HEAD_KEYS

__all__ = ["softmax_cross_entropy", "clip_by_value", "clip_by_global_norm", "SGD", "Adam",
           "initialize_adam", "update_parameters_with_adam", "main"]

# Gradients of the inputs and initial states, which the backward functions
# return beside the parameters' and which clipping by norm leaves out.
_INPUT_GRADIENTS = ("dx", "da0", "dc0")


# ------------------------------------------------------------------- loss

def softmax_cross_entropy(a, Wy, by, targets, *, lengths=None, reduction="mean"):
    """The cross-entropy of a per-step softmax output layer.

    a: hidden states (n_a, m, T) (as the forward functions return them);
    Wy (n_y, n_a), by (n_y, 1): the output layer; targets: integer classes
    (m, T) in [0, n_y); lengths (m,): column j counts its first lengths[j]
    steps only (the rest of its targets are ignored). reduction: "mean" over
    the counted steps (PyTorch's CrossEntropyLoss) or "sum".

    Returns (loss, da, {"dWy", "dby"}): da (n_a, m, T) is the gradient of the
    loss with respect to a, zero at uncounted steps, for the backward
    functions; dWy, dby the output layer's."""
    a = np.asarray(a)
    if a.ndim != 3 or a.dtype not in (np.float32, np.float64):
        raise ValueError(f"a must be a float32/float64 array (n_a, m, T); got {a.dtype} "
                         f"{a.shape}")
    n_a, m, T = a.shape
    dtype = a.dtype
    Wy = np.asarray(Wy, dtype)
    by = np.asarray(by, dtype).reshape(-1, 1)
    if Wy.ndim != 2 or Wy.shape[1] != n_a or by.shape[0] != Wy.shape[0]:
        raise ValueError(f"Wy has shape {Wy.shape} and by {by.shape}; expected (n_y, {n_a}) "
                         "and (n_y, 1)")
    n_y = Wy.shape[0]
    targets = np.asarray(targets)
    if targets.shape != (m, T) or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integers of shape (m, T) = ({m}, {T}); got "
                         f"{targets.dtype} {targets.shape}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")
    counted = np.ones((m, T), bool)
    if lengths is not None:
        from ._validation import check_lengths
        lengths = check_lengths(lengths, m, T)
        counted = np.arange(T) < lengths[:, None]
    flat_targets = targets.reshape(-1)
    flat_counted = counted.reshape(-1)
    bad = flat_counted & ((flat_targets < 0) | (flat_targets >= n_y))
    if bad.any():
        j, t = divmod(int(np.flatnonzero(bad)[0]), T)
        raise ValueError(f"targets[{j}, {t}] is {targets[j, t]}; classes must be in "
                         f"[0, {n_y}) where counted")
    count = int(flat_counted.sum())
    A = a.reshape(n_a, m * T)
    every = count == m * T
    # the counted (j, t) pairs, as columns j·T + t of A (all of them: A itself)
    columns = None if every else np.flatnonzero(flat_counted)
    picked_targets = flat_targets if every else flat_targets[columns]
    A_counted = A if every else A[:, columns]
    # Z = Wy·a + by, then in place: softmax over the classes, then its gradient
    Z = Wy @ A_counted
    Z += by
    Z -= Z.max(axis=0)
    rows, cols = picked_targets, np.arange(count)
    picked = Z[rows, cols].astype(np.float64)
    np.exp(Z, out=Z)
    total = Z.sum(axis=0)
    loss = float(np.sum(np.log(total, dtype=np.float64)) - np.sum(picked))
    scale = 1.0 / count if reduction == "mean" and count else 1.0
    Z /= total
    Z[rows, cols] -= 1
    Z *= dtype.type(scale)                        # dZ
    if every:
        da = Wy.T @ Z
    else:
        da = np.zeros((n_a, m * T), dtype)
        da[:, columns] = Wy.T @ Z
    head = {"dWy": Z @ A_counted.T, "dby": Z.sum(axis=1, keepdims=True)}
    return loss * scale, da.reshape(n_a, m, T), head


# --------------------------------------------------------------- clipping

def _flat(array, name):
    """array as a writable C-contiguous float32/float64 ndarray the kernels can
    change in place, or None (then NumPy's in-place operations are used)."""
    if type(array) is np.ndarray and array.dtype in (np.float32, np.float64) and \
            array.flags.c_contiguous and array.flags.writeable:
        return array
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array; got {type(array).__name__}")
    return None


def clip_by_value(gradients, max_value):
    """Every gradient clipped to [-max_value, max_value] in place (NaN stays
    NaN, as with np.clip); returns the dict."""
    if not max_value >= 0:
        raise ValueError(f"max_value must be >= 0; got {max_value}")
    for key, g in gradients.items():
        flat = _flat(g, f"gradients[{key!r}]")
        if flat is not None:
            _train.clip_values(flat, max_value)
        else:
            np.clip(g, -max_value, max_value, out=g)
    return gradients


def clip_by_global_norm(gradients, max_norm, *, keys=None):
    """Scales the gradients in place so that their global norm (the norm of
    all of them as one vector) is at most max_norm; returns the norm before
    clipping. keys: the gradients to count and scale (default: all but the
    inputs' and initial states' dx, da0, dc0). A NaN or infinite norm leaves
    the gradients as they are (the caller sees it in the result)."""
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0; got {max_norm}")
    keys = [k for k in gradients if k not in _INPUT_GRADIENTS] if keys is None else list(keys)
    total = 0.0
    for key in keys:
        g = gradients[key]
        flat = _flat(g, f"gradients[{key!r}]")
        total += _train.sum_squares(flat) if flat is not None else \
            float(np.sum(np.square(g, dtype=np.float64)))
    norm = math.sqrt(total)
    if math.isfinite(norm) and norm > max_norm:
        factor = max_norm / (norm + 1e-6)
        for key in keys:
            g = gradients[key]
            flat = _flat(g, f"gradients[{key!r}]")
            if flat is not None:
                _train.scale_values(flat, factor)
            else:
                g *= factor
    return norm


# ------------------------------------------------------------- optimisers

def _gradient(gradients, key, p):
    """The gradient of parameter `key` (gradients["d" + key]) as p's dtype and shape."""
    name = "d" + key
    if name not in gradients:
        raise KeyError(f"gradients has no {name!r} for parameters[{key!r}]")
    g = gradients[name]
    if np.shape(g) != p.shape:
        raise ValueError(f"gradients[{name!r}] has shape {np.shape(g)}; parameters[{key!r}] "
                         f"has {p.shape}")
    return np.ascontiguousarray(g, p.dtype)


class SGD:
    """Gradient descent, in place: p += -learning_rate·gradients["d" + key]
    for every key of `parameters` (the course's update_parameters)."""

    def __init__(self, parameters, learning_rate=0.01):
        self.parameters = parameters
        self.learning_rate = learning_rate

    def step(self, gradients):
        for key, p in self.parameters.items():
            g = _gradient(gradients, key, p)
            if _flat(p, f"parameters[{key!r}]") is not None:
                _train.sgd_step(p, g, self.learning_rate)
            else:
                p += -self.learning_rate * g


class Adam:
    """Adam (bias-corrected, the course's update_parameters_with_adam rule), in
    place on every array of `parameters` with gradients["d" + key]:

        v = β1·v + (1-β1)·g;  s = β2·s + (1-β2)·g²
        p -= learning_rate · (v / (1-β1ᵗ)) / (sqrt(s / (1-β2ᵗ)) + ε)

    `t` counts the steps taken; `state()` / `load_state()` save and restore
    v, s and t (for checkpoints)."""

    def __init__(self, parameters, learning_rate=0.001, beta1=0.9, beta2=0.999,
                 epsilon=1e-8):
        self.parameters = parameters
        self.learning_rate, self.beta1, self.beta2 = learning_rate, beta1, beta2
        self.epsilon = epsilon
        self.t = 0
        self.v = {k: np.zeros_like(p) for k, p in parameters.items()}
        self.s = {k: np.zeros_like(p) for k, p in parameters.items()}

    def step(self, gradients):
        self.t += 1
        for key, p in self.parameters.items():
            g = _gradient(gradients, key, p)
            _adam(p, g, self.v[key], self.s[key], self.t, self.learning_rate, self.beta1,
                  self.beta2, self.epsilon, key)

    def state(self):
        """{"t", "v/<key>", "s/<key>"} as arrays."""
        out = {"t": np.array(self.t)}
        out.update({f"v/{k}": v for k, v in self.v.items()})
        out.update({f"s/{k}": s for k, s in self.s.items()})
        return out

    def load_state(self, state):
        self.t = int(state["t"])
        for key, p in self.parameters.items():
            self.v[key] = np.array(state[f"v/{key}"], p.dtype)
            self.s[key] = np.array(state[f"s/{key}"], p.dtype)


def _adam(p, g, v, s, t, learning_rate, beta1, beta2, epsilon, key):
    if _flat(p, f"parameters[{key!r}]") is not None and \
            all(_flat(a, key) is not None and a.dtype == p.dtype for a in (v, s)):
        _train.adam_step(p, g, v, s, t, learning_rate, beta1, beta2, epsilon)
        return
    v *= beta1
    v += (1 - beta1) * g
    s *= beta2
    s += (1 - beta2) * np.power(g, 2)
    p -= learning_rate * (v / (1 - beta1 ** t)) / (np.sqrt(s / (1 - beta2 ** t)) + epsilon)


def initialize_adam(parameters):
    """The course's initialize_adam for any parameter dict: (v, s), zeros
    keyed "d" + key."""
    v = {"d" + k: np.zeros_like(p) for k, p in parameters.items()}
    s = {"d" + k: np.zeros_like(p) for k, p in parameters.items()}
    return v, s


def update_parameters_with_adam(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9,
                                beta2=0.999, epsilon=1e-8):
    """The course's update_parameters_with_adam for any parameter dict, in
    place (parameters, v, s); returns (parameters, v, s)."""
    for key, p in parameters.items():
        g = _gradient(grads, key, p)
        _adam(p, g, v["d" + key], s["d" + key], t, learning_rate, beta1, beta2, epsilon, key)
    return parameters, v, s


# ------------------------------------------------- character-level model

class CharModel:
    """A one-layer RNN/LSTM/GRU over one-hot characters with a softmax head:
    `parameters` = the cell's (notebook keys) plus "Wy", "by"."""

    def __init__(self, cell, vocabulary, n_a, dtype=np.float32, seed=0, parameters=None):
        self.cell, self.vocabulary, self.n_a = cell, vocabulary, n_a
        self.dtype = np.dtype(dtype)
        self.index = {c: i for i, c in enumerate(vocabulary)}
        V = len(vocabulary)
        if parameters is None:
            rng = np.random.default_rng(seed)
            parameters = _initial_parameters(cell, V, n_a, rng, self.dtype)
        self.parameters = parameters
        import cyrnn
        self._forward = getattr(cyrnn, f"{cell}_forward")
        self._backward = getattr(cyrnn, f"{cell}_backward")
        self._cell_forward = getattr(cyrnn, f"{cell}_cell_forward")
        Wy, by = _HEAD_KEYS[cell]
        self._no_head = {Wy: np.zeros((0, n_a), self.dtype), by: np.zeros((0, 1), self.dtype)}

    def cell_parameters(self):
        return {k: v for k, v in self.parameters.items() if k not in ("Wy", "by")}

    def one_hot(self, codes):
        """(V, m, T) one-hot inputs of codes (m, T) (negative: zeros)."""
        m, T = codes.shape
        x = np.zeros((len(self.vocabulary), m, T), self.dtype)
        j, t = np.nonzero(codes >= 0)
        x[codes[j, t], j, t] = 1
        return x

    def loss_and_gradients(self, inputs, targets, lengths):
        """Mean cross-entropy of predicting targets (m, T) after inputs (m, T),
        and the gradients of every parameter ("d" + key)."""
        x = self.one_hot(inputs)
        m = inputs.shape[0]
        a0 = np.zeros((self.n_a, m), self.dtype)
        p = dict(self.cell_parameters(), **self._no_head)
        a, _, *rest = self._forward(x, a0, p, lengths=lengths)
        caches = rest[-1]
        loss, da, head = softmax_cross_entropy(a, self.parameters["Wy"], self.parameters["by"],
                                               targets, lengths=lengths)
        gradients = self._backward(da, caches)
        gradients.update(head)
        return loss, gradients

    def sample(self, length, rng, prefix="", reset_after=None):
        """Text of `length` characters drawn one by one from the model after
        `prefix`; the state starts again from zeros after each `reset_after`
        character (the newline of line-by-line training, whose sequences each
        start from zeros)."""
        V = len(self.vocabulary)
        p = dict(self.cell_parameters())
        Wy, by = _HEAD_KEYS[self.cell]
        p[Wy], p[by] = self.parameters["Wy"], self.parameters["by"]
        a = np.zeros((self.n_a, 1), self.dtype)
        c = np.zeros((self.n_a, 1), self.dtype)
        x = np.zeros((V, 1), self.dtype)
        out = []
        for ch in prefix[:-1]:
            x[:] = 0
            x[self.index[ch]] = 1
            a, c = self._step(x, a, c, p)[:2]
        if prefix:
            x[:] = 0
            x[self.index[prefix[-1]]] = 1
        for _ in range(length):
            a, c, y = self._step(x, a, c, p)
            probabilities = y[:, 0].astype(np.float64)
            k = int(rng.choice(V, p=probabilities / probabilities.sum()))
            out.append(self.vocabulary[k])
            x[:] = 0
            x[k] = 1
            if self.vocabulary[k] == reset_after:
                a = np.zeros_like(a)
                c = np.zeros_like(c)
        return prefix + "".join(out)

    def _step(self, x, a, c, p):
        if self.cell == "lstm":
            a, c, y, _ = self._cell_forward(x, a, c, p)
            return a, c, y
        a, y, _ = self._cell_forward(x, a, p)
        return a, c, y


def _initial_parameters(cell, V, n_a, rng, dtype):
    """Uniform in ±1/sqrt(n_a) (PyTorch's RNN initialisation), zero biases but
    the LSTM's forget gate (1: remember by default)."""
    bound = 1 / math.sqrt(n_a)

    def weights(*shape):
        return rng.uniform(-bound, bound, shape).astype(dtype)

    def zeros(*shape):
        return np.zeros(shape, dtype)

    if cell == "rnn":
        p = {"Wax": weights(n_a, V), "Waa": weights(n_a, n_a), "ba": zeros(n_a, 1)}
    elif cell == "lstm":
        p = {}
        for g in "fico":
            p["W" + g], p["b" + g] = weights(n_a, n_a + V), zeros(n_a, 1)
        p["bf"] += 1
    else:
        p = {"Wr": weights(n_a, n_a + V), "Wu": weights(n_a, n_a + V), "br": zeros(n_a, 1),
             "bu": zeros(n_a, 1), "Wcx": weights(n_a, V), "Wca": weights(n_a, n_a),
             "bcx": zeros(n_a, 1), "bca": zeros(n_a, 1)}
    p["Wy"], p["by"] = weights(V, n_a), zeros(V, 1)
    return p


class Batches:
    """Mini-batches of (inputs, targets, lengths) from encoded text.

    by_line: every non-empty line is a sequence (ending with its newline, at
    most seq_length characters), batches of lines padded to the longest, with
    their lengths; else windows of seq_length + 1 characters at random offsets."""

    def __init__(self, codes, newline, seq_length, batch_size, by_line, rng):
        self.codes, self.seq_length, self.batch_size = codes, seq_length, batch_size
        self.rng, self.newline = rng, newline
        self.lines = None
        if by_line:
            ends = np.flatnonzero(codes == newline)
            starts = np.concatenate([[0], ends[:-1] + 1])
            self.lines = [(s, min(e + 1, s + seq_length)) for s, e in zip(starts, ends)
                          if e > s]
            if not self.lines:
                raise ValueError("--by-line: the text has no non-empty line")
        elif len(codes) < seq_length + 1:
            raise ValueError(f"the text has {len(codes)} characters; --seq-length "
                             f"{seq_length} needs at least {seq_length + 1}")

    def next(self):
        m, T = self.batch_size, self.seq_length
        if self.lines is None:
            offsets = self.rng.integers(0, len(self.codes) - T, m)
            windows = self.codes[offsets[:, None] + np.arange(T + 1)]
            return windows[:, :-1], windows[:, 1:], np.full(m, T)
        picked = self.rng.integers(0, len(self.lines), m)
        spans = [self.lines[i] for i in picked]
        # a line c_0..c_{n-1} (c_{n-1} its newline) is n steps: from the newline
        # before it (the previous line's end), predict c_0, then c_1, ...
        lengths = np.array([e - s for s, e in spans])
        T = int(lengths.max())
        inputs = np.full((m, T), -1)
        targets = np.zeros((m, T), np.intp)
        for j, (s, e) in enumerate(spans):
            n = e - s
            inputs[j, 0] = self.newline
            inputs[j, 1:n] = self.codes[s:e - 1]
            targets[j, :n] = self.codes[s:e]
        return inputs, targets, lengths

    def prefix(self):
        """Where a sample starts: a newline (lines), or a character of the text."""
        if self.lines is not None:
            return self.newline
        return int(self.codes[self.rng.integers(0, len(self.codes))])


def _save_checkpoint(path, model, optimizer, step, history, rng, args):
    from .models import Model
    head = {"Wy": model.parameters["Wy"], "by": model.parameters["by"]}
    net = Model(model.cell, [[model.cell_parameters()]], head)
    state = {"vocabulary": json.dumps(model.vocabulary), "step": step,
             "rng": json.dumps(rng.bit_generator.state), "history": np.array(history),
             "settings": json.dumps({k: getattr(args, k) for k in _SETTINGS})}
    state.update({f"adam/{k}": v for k, v in optimizer.state().items()})
    tmp = path + ".tmp.npz"
    net.save(tmp, extra=state)
    os.replace(tmp, path)


_SETTINGS = ("cell", "hidden", "seq_length", "batch_size", "learning_rate", "clip", "dtype",
             "by_line")


def _load_checkpoint(path):
    from .models import load
    net = load(path)
    with np.load(path, allow_pickle=False) as f:
        extra = {k[len("extra/"):]: f[k] for k in f.files if k.startswith("extra/")}
    # (writable copies: a Model's arrays are read-only, training updates in place)
    parameters = {k: np.array(v) for k, v in net.layers[0][0].items()}
    for key in list(parameters):
        if key in ("Wy", "Wya", "by") and parameters[key].shape[0] == 0:
            del parameters[key]
    parameters["Wy"], parameters["by"] = np.array(net.head["Wy"]), np.array(net.head["by"])
    return net.cell, parameters, extra


def main(argv=None):
    """cyrnn-train: a character-level language model on a UTF-8 text file."""
    parser = argparse.ArgumentParser(
        prog="cyrnn-train", description="Train a character-level language model (RNN, LSTM "
        "or GRU) on a UTF-8 text file with cyrnn: Adam, gradient clipping, mini-batches "
        "with lengths, periodic samples, a loss curve and resumable checkpoints.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("text", help="a UTF-8 text file")
    parser.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="lstm",
                        help="the recurrent cell")
    parser.add_argument("--hidden", type=int, default=128, help="n_a, the hidden size")
    parser.add_argument("--seq-length", type=int, default=100,
                        help="characters per training sequence")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per step")
    parser.add_argument("--steps", type=int, default=1000, help="training steps in all")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="Adam's step size")
    parser.add_argument("--clip", type=float, default=5.0, help="max global gradient norm")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="the parameters' and computations' precision")
    parser.add_argument("--by-line", action="store_true",
                        help="one sequence per line (names, words), padded, with lengths")
    parser.add_argument("--sample-every", type=int, default=200,
                        help="steps between printed samples")
    parser.add_argument("--sample-length", type=int, default=200,
                        help="characters per sample")
    parser.add_argument("--checkpoint-every", type=int, default=500,
                        help="steps between checkpoints")
    parser.add_argument("--out", default="cyrnn-train-out",
                        help="folder for checkpoint.npz, loss.png and samples.txt")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.npz (same settings)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights and batches")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("hidden", "seq_length", "batch_size", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    try:
        with open(args.text, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as error:
        parser.error(f"cannot read {args.text!r} as UTF-8 text: {error}")
    os.makedirs(args.out, exist_ok=True)
    checkpoint = os.path.join(args.out, "checkpoint.npz")
    step, history = 0, []
    rng = np.random.default_rng(args.seed)
    if args.resume:
        if not os.path.exists(checkpoint):
            parser.error(f"--resume: no checkpoint at {checkpoint}")
        cell, parameters, extra = _load_checkpoint(checkpoint)
        saved = json.loads(str(extra["settings"]))
        changed = [k for k in _SETTINGS if saved.get(k) != getattr(args, k)]
        if changed:
            parser.error("--resume with other settings than the checkpoint's: " +
                         ", ".join(f"{k} (was {saved.get(k)!r})" for k in changed))
        vocabulary = json.loads(str(extra["vocabulary"]))
        model = CharModel(cell, vocabulary, args.hidden, args.dtype, parameters=parameters)
        optimizer = Adam(model.parameters, args.learning_rate)
        optimizer.load_state({k[len("adam/"):]: v for k, v in extra.items()
                              if k.startswith("adam/")})
        step, history = int(extra["step"]), list(extra["history"])
        rng.bit_generator.state = json.loads(str(extra["rng"]))
    else:
        vocabulary = sorted(set(text))
        model = CharModel(args.cell, vocabulary, args.hidden, args.dtype, seed=args.seed)
        optimizer = Adam(model.parameters, args.learning_rate)
    unknown = set(text) - set(vocabulary)
    if unknown:
        parser.error(f"the text has characters the checkpoint's vocabulary lacks: "
                     f"{sorted(unknown)[:10]}")
    codes = np.array([model.index[c] for c in text], np.intp)
    newline = model.index.get("\n", -1)
    batches = Batches(codes, newline, args.seq_length, args.batch_size, args.by_line, rng)
    baseline = math.log(len(vocabulary))
    print(f"{len(text)} characters, vocabulary {len(vocabulary)} (uniform guess: loss "
          f"{baseline:.3f}); {args.cell} n_a={args.hidden}, {args.dtype}; from step {step}",
          flush=True)
    bar = _progress(args.steps, step, args.no_progress)
    samples = open(os.path.join(args.out, "samples.txt"), "a", encoding="utf-8")
    started, characters = time.perf_counter(), 0
    try:
        while step < args.steps:
            inputs, targets, lengths = batches.next()
            loss, gradients = model.loss_and_gradients(inputs, targets, lengths)
            clip_by_global_norm(gradients, args.clip)
            optimizer.step(gradients)
            step += 1
            history.append(loss)
            characters += int(lengths.sum())
            rate = characters / max(time.perf_counter() - started, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", chars_per_s=f"{rate:,.0f}")
            if step % args.sample_every == 0 or step == args.steps:
                start = model.vocabulary[batches.prefix()]
                text_sample = model.sample(args.sample_length, rng, prefix=start,
                                           reset_after="\n" if args.by_line else None)
                samples.write(f"--- step {step}, loss {loss:.4f}\n{text_sample}\n")
                samples.flush()
                bar.write(f"--- step {step}, loss {loss:.4f}\n{text_sample}")
            if step % args.checkpoint_every == 0 or step == args.steps:
                _save_checkpoint(checkpoint, model, optimizer, step, history, rng, args)
    finally:
        bar.close()
        samples.close()
    _plot(history, baseline, os.path.join(args.out, "loss.png"))
    print(f"done: step {step}, loss {np.mean(history[-20:]):.4f} (last 20 steps), "
          f"uniform guess {baseline:.4f}; {checkpoint}", flush=True)
    return 0


class _NoBar:
    def __init__(self, total, initial):
        self.n, self.total = initial, total

    def update(self, k):
        self.n += k

    def set_postfix(self, **kwargs):
        pass

    def write(self, text):
        print(text, flush=True)

    def close(self):
        pass


def _progress(total, initial, disabled):
    if disabled:
        return _NoBar(total, initial)
    try:
        from tqdm import tqdm
    except ImportError:
        print("(no progress bar: pip install tqdm, or cyrnn[train])", flush=True)
        return _NoBar(total, initial)
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def _plot(history, baseline, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no loss curve: pip install matplotlib, or cyrnn[train])", flush=True)
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(history) + 1)
    ax.plot(steps, history, lw=0.6, alpha=0.5, label="loss per step")
    if len(history) >= 20:
        window = max(10, len(history) // 50)
        smooth = np.convolve(history, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, lw=1.5, label=f"mean of {window} steps")
    ax.axhline(baseline, color="gray", ls="--", lw=1, label="uniform guess")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
