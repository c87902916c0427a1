"""Models: stacks of RNN/LSTM/GRU layers, one or two directions, an optional
output head, and their weights to and from PyTorch (../shared/SPEC.md §7).

    model = cyrnn.models.from_torch(torch_lstm)       # or its state dict
    outputs, final_state = model(x, lengths=lengths)  # x: (n_x, m, T)

Every direction of every layer runs in the one engine (src/_engine.pyx); a
reverse direction runs natively (no reversed copy of x), each column over its
own steps backwards when lengths are given (PyTorch's packed semantics).
The weights are the notebook's parameter dicts (cyrnn/_cells.py), one per
layer and direction.
"""
import json

import numpy as np

from . import _cells, _engine, _validation

__all__ = ["Model", "from_torch", "load"]

# The notebook's keys of each cell's gate weights (the output head is the model's).
_HEAD_KEYS = {"rnn": ("Wya", "by"), "lstm": ("Wy", "by"), "gru": ("Wy", "by")}
_TORCH_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_FORMAT = "cyrnn.models/1"


def _gate_keys(cell, parameters=None):
    description = {"rnn": _cells.RNN, "lstm": _cells.LSTM}.get(cell) or (
        _cells.gru_variant(parameters) if parameters is not None else _cells.GRU)
    head = set(description.head)
    return [key for key, *_ in description.parameters if key not in head]


class Model:
    """A stack of `cell` layers ("rnn", "lstm" or "gru").

    `layers[l][d]` is the parameter dict of layer l, direction d (0: forward,
    1: reverse), in the notebook's keys (without the output layer); layer 0 acts
    on n_x inputs, layer l on the D·n_a outputs of layer l - 1. `head`: None or
    {"Wy": (n_y, D·n_a), "by": (n_y, 1)}, a per-step softmax as in the notebook.
    The arrays' dtype (float32 or float64) is the model's compute dtype."""

    def __init__(self, cell, layers, head=None):
        if cell not in _TORCH_GATES:
            raise ValueError(f"cell must be 'rnn', 'lstm' or 'gru'; got {cell!r}")
        if not layers or not all(len(layer) in (1, 2) for layer in layers) or \
                len({len(layer) for layer in layers}) != 1:
            raise ValueError("layers must be a non-empty list of layers, each a list of one "
                             "(forward) or two (forward, reverse) parameter dicts, alike")
        self.cell = cell
        self.directions = len(layers[0])
        first = layers[0][0]
        self.dtype = np.result_type(*[np.asarray(v) for v in first.values()])
        if self.dtype not in (np.float32, np.float64):
            self.dtype = np.dtype(np.float64)
        self.n_a = np.asarray(first[_gate_keys(cell, first)[0]]).shape[0]
        self.layers = []
        n_in = None
        for l, layer in enumerate(layers):
            checked = []
            for d, p in enumerate(layer):
                keys = _gate_keys(cell, p)
                p = {k: np.ascontiguousarray(p[k], self.dtype) for k in keys if k in p}
                n_x = self._input_size(cell, p, l, d)
                if n_in is not None and n_x != n_in:
                    raise ValueError(f"layers[{l}][{d}] takes {n_x} inputs; the layer before "
                                     f"gives {n_in} (directions × n_a)")
                full = dict(p)
                Wy, by = _HEAD_KEYS[cell]
                full[Wy], full[by] = np.zeros((0, self.n_a), self.dtype), np.zeros((0, 1),
                                                                                   self.dtype)
                _validation.check_parameters(
                    {"rnn": _cells.RNN, "lstm": _cells.LSTM}.get(cell) or
                    _cells.gru_variant(full), full, n_x, self.n_a)
                checked.append(full)
            if l == 0:
                self.n_x = n_x
            n_in = self.directions * self.n_a
            self.layers.append(checked)
        self.head = None
        if head is not None:
            Wy = np.ascontiguousarray(head["Wy"], self.dtype)
            by = np.ascontiguousarray(head["by"], self.dtype).reshape(-1, 1)
            if Wy.ndim != 2 or Wy.shape[1] != n_in or by.shape[0] != Wy.shape[0]:
                raise ValueError(f"head['Wy'] has shape {Wy.shape} and head['by'] "
                                 f"{by.shape}; expected (n_y, {n_in}) and (n_y, 1)")
            self.head = {"Wy": Wy, "by": by}

    @staticmethod
    def _input_size(cell, p, l, d):
        if cell == "rnn":
            return np.asarray(p["Wax"]).shape[1]
        W = p["Wf"] if cell == "lstm" else p["Wr"]
        return np.asarray(W).shape[1] - np.asarray(W).shape[0]

    @property
    def num_layers(self):
        return len(self.layers)

    @property
    def bidirectional(self):
        return self.directions == 2

    def __repr__(self):
        return (f"Model({self.cell!r}, n_x={self.n_x}, n_a={self.n_a}, "
                f"num_layers={self.num_layers}, bidirectional={self.bidirectional}, "
                f"head={'none' if self.head is None else self.head['Wy'].shape[0]}, "
                f"dtype={self.dtype.name})")

    def __call__(self, x, *, lengths=None, initial_state=None, n_threads=1):
        """(outputs, final_state) for x of shape (n_x, m, T).

        outputs: the last layer's hidden states (D·n_a, m, T), the forward
        direction's block first, or the head's softmax (n_y, m, T);
        final_state: {"a": (L·D, n_a, m)} (and "c" for the LSTM), ordered like
        PyTorch's h_n (layer-major, forward then reverse). With lengths, a
        column's outputs are 0 after its length and its final state is the
        one at its last step (forward) or at step 0 (reverse)."""
        x = _validation.as_array("x", x)
        _validation.check_ndim("x", x, ("n_x", "m", "T"))
        if x.shape[0] != self.n_x:
            raise ValueError(f"x has shape {x.shape}; its first dimension n_x must be "
                             f"{self.n_x}, the input size of the model")
        x = np.asarray(x, self.dtype)
        n_x, m, T = x.shape
        if lengths is not None:
            lengths = _validation.check_lengths(lengths, m, T)
        states = self.num_layers * self.directions
        a0s = self._initial(initial_state, "a", states, m)
        c0s = self._initial(initial_state, "c", states, m) if self.cell == "lstm" else None
        final_a, final_c = [], []
        columns = np.arange(m)
        for l, layer in enumerate(self.layers):
            outs = []
            for d, p in enumerate(layer):
                k = l * self.directions + d
                a, _, c, _ = _engine._run_direction(
                    self.cell, x, a0s[k], p, c0=None if c0s is None else c0s[k],
                    lengths=lengths, reverse=d == 1, cache=False, n_threads=n_threads)
                outs.append(a)
                final_a.append(self._final(a, a0s[k], lengths, d, columns))
                if c is not None:
                    final_c.append(self._final(c, c0s[k], lengths, d, columns))
            x = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)
        final = {"a": np.stack(final_a)}
        if self.cell == "lstm":
            final["c"] = np.stack(final_c)
        if self.head is None:
            return x, final
        from ._activations import softmax
        D, T = x.shape[0], x.shape[2]
        z = self.head["Wy"] @ x.reshape(D, m * T) + self.head["by"]
        y = softmax(z).reshape(-1, m, T)
        if lengths is not None:
            y[:, lengths[:, None] <= np.arange(T)] = 0
        return y, final

    def _initial(self, initial_state, key, states, m):
        if initial_state is None or key not in initial_state:
            return [np.zeros((self.n_a, m), self.dtype)] * states
        s = np.asarray(initial_state[key], self.dtype)
        if s.shape != (states, self.n_a, m):
            raise ValueError(f"initial_state[{key!r}] has shape {s.shape}; expected "
                             f"(layers·directions, n_a, m) = ({states}, {self.n_a}, {m})")
        return [np.ascontiguousarray(s[k]) for k in range(states)]

    @staticmethod
    def _final(a, a0, lengths, d, columns):
        T = a.shape[2]
        if T == 0:
            return a0.copy()
        if lengths is None:
            return a[:, :, 0 if d == 1 else T - 1].copy()
        step = np.zeros_like(lengths) if d == 1 else np.maximum(lengths - 1, 0)
        out = a[:, columns, step]
        out[:, lengths == 0] = a0[:, lengths == 0]
        return out

    # ---------------------------------------------------------------- PyTorch

    def to_torch_state_dict(self):
        """The weights as a PyTorch nn.RNN/LSTM/GRU state dict of tensors
        (`module.load_state_dict(model.to_torch_state_dict())`); the head is
        not part of it."""
        import torch
        return {k: torch.from_numpy(np.ascontiguousarray(v))
                for k, v in self._torch_arrays().items()}

    def _torch_arrays(self):
        n_a, out = self.n_a, {}
        for l, layer in enumerate(self.layers):
            for d, p in enumerate(layer):
                sfx = f"l{l}" + ("_reverse" if d == 1 else "")
                if self.cell == "rnn":
                    W_ih, W_hh, b_ih = p["Wax"], p["Waa"], p["ba"][:, 0]
                    b_hh = np.zeros_like(b_ih)
                elif self.cell == "lstm":
                    W = np.concatenate([p["W" + g] for g in "ifco"])
                    W_ih, W_hh = W[:, n_a:], W[:, :n_a]
                    b_ih = np.concatenate([p["b" + g] for g in "ifco"])[:, 0]
                    b_hh = np.zeros_like(b_ih)
                else:
                    if "Wc" in p:
                        raise ValueError("PyTorch's GRU is the reset-after variant; this model "
                                         "is reset-before ('Wc'), which PyTorch cannot run")
                    W_ih = np.concatenate([p["Wr"][:, n_a:], -p["Wu"][:, n_a:], p["Wcx"]])
                    W_hh = np.concatenate([p["Wr"][:, :n_a], -p["Wu"][:, :n_a], p["Wca"]])
                    b_ih = np.concatenate([p["br"], -p["bu"], p["bcx"]])[:, 0]
                    b_hh = np.concatenate([0 * p["br"], 0 * p["bu"], p["bca"]])[:, 0]
                out.update({f"weight_ih_{sfx}": W_ih, f"weight_hh_{sfx}": W_hh,
                            f"bias_ih_{sfx}": b_ih, f"bias_hh_{sfx}": b_hh})
        return out

    # ---------------------------------------------------------------- files

    def save(self, path):
        """Write the model to a .npz file (arrays and a JSON description; read
        back by `load`, without pickle)."""
        arrays = {}
        for l, layer in enumerate(self.layers):
            for d, p in enumerate(layer):
                for key in _gate_keys(self.cell, p):
                    arrays[f"layers/{l}/{d}/{key}"] = p[key]
        if self.head is not None:
            arrays["head/Wy"], arrays["head/by"] = self.head["Wy"], self.head["by"]
        meta = {"format": _FORMAT, "cell": self.cell, "num_layers": self.num_layers,
                "directions": self.directions, "head": self.head is not None}
        np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)


def load(path):
    """A model written by Model.save (no pickle is read)."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["__meta__"]))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path!r} is not a cyrnn model file (format {meta.get('format')!r})")
        layers = []
        for l in range(meta["num_layers"]):
            layer = []
            for d in range(meta["directions"]):
                prefix = f"layers/{l}/{d}/"
                layer.append({k[len(prefix):]: f[k] for k in f.files if k.startswith(prefix)})
            layers.append(layer)
        head = {"Wy": f["head/Wy"], "by": f["head/by"]} if meta["head"] else None
    return Model(meta["cell"], layers, head)


def from_torch(module_or_state_dict, *, head=None):
    """A Model with the weights of a PyTorch nn.RNN (tanh), nn.LSTM or nn.GRU,
    or of its state dict (tensors or NumPy arrays: no torch needed). Any
    num_layers, bidirectional, with or without biases. Inputs are always
    (n_x, m, T), whatever the module's batch_first. Unsupported: LSTM
    proj_size, ReLU RNNs (ValueError naming them)."""
    obj = module_or_state_dict
    if hasattr(obj, "state_dict") and hasattr(obj, "mode"):
        mode = obj.mode
        if mode == "RNN_RELU":
            raise ValueError("nn.RNN with nonlinearity='relu' is not supported (tanh only)")
        if getattr(obj, "proj_size", 0):
            raise ValueError(f"nn.LSTM with proj_size={obj.proj_size} is not supported")
        state = obj.state_dict()
    else:
        state = obj
    arrays = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v))
              for k, v in dict(state).items()}
    if any(k.startswith("weight_hr") for k in arrays):
        raise ValueError("an LSTM state dict with weight_hr (proj_size) is not supported")
    if "weight_hh_l0" not in arrays:
        raise KeyError("the state dict has no 'weight_hh_l0': not an nn.RNN/LSTM/GRU's")
    n_a = arrays["weight_hh_l0"].shape[1]
    gates = arrays["weight_hh_l0"].shape[0] // n_a
    cell = {1: "rnn", 4: "lstm", 3: "gru"}.get(gates)
    if cell is None or gates * n_a != arrays["weight_hh_l0"].shape[0]:
        raise ValueError(f"weight_hh_l0 has shape {arrays['weight_hh_l0'].shape}; expected "
                         f"(gates·hidden, hidden) with 1, 3 or 4 gates")
    num_layers = 1 + max(int(k.split("_l")[1].split("_")[0]) for k in arrays if "_l" in k)
    directions = 2 if "weight_hh_l0_reverse" in arrays else 1
    layers = []
    for l in range(num_layers):
        layer = []
        for d in range(directions):
            sfx = f"l{l}" + ("_reverse" if d == 1 else "")
            W_ih, W_hh = arrays[f"weight_ih_{sfx}"], arrays[f"weight_hh_{sfx}"]
            zeros = np.zeros(W_hh.shape[0], W_hh.dtype)
            b_ih = arrays.get(f"bias_ih_{sfx}", zeros)
            b_hh = arrays.get(f"bias_hh_{sfx}", zeros)
            layer.append(_from_torch_direction(cell, n_a, W_ih, W_hh, b_ih, b_hh))
        layers.append(layer)
    return Model(cell, layers, head)


def _from_torch_direction(cell, n_a, W_ih, W_hh, b_ih, b_hh):
    if cell == "rnn":
        return {"Wax": W_ih, "Waa": W_hh, "ba": (b_ih + b_hh)[:, None]}
    if cell == "lstm":      # PyTorch's gate order: i, f, g (candidate), o
        p = {}
        for q, g in enumerate("ifco"):
            rows = slice(q * n_a, (q + 1) * n_a)
            p["W" + g] = np.hstack([W_hh[rows], W_ih[rows]])
            p["b" + g] = (b_ih[rows] + b_hh[rows])[:, None]
        return p
    r, z, n = slice(0, n_a), slice(n_a, 2 * n_a), slice(2 * n_a, 3 * n_a)
    # SPEC §5: PyTorch's z is 1 - Γu, hence the sign flip
    return {"Wr": np.hstack([W_hh[r], W_ih[r]]), "br": (b_ih[r] + b_hh[r])[:, None],
            "Wu": -np.hstack([W_hh[z], W_ih[z]]), "bu": -(b_ih[z] + b_hh[z])[:, None],
            "Wcx": W_ih[n], "bcx": b_ih[n][:, None], "Wca": W_hh[n], "bca": b_hh[n][:, None]}
