"""Models: stacks of RNN/LSTM/GRU layers, one or two directions, an optional
output head, and their weights from PyTorch, Keras and ONNX (../shared/SPEC.md §7).

    model = cyrnn.models.from_torch(torch_lstm)       # or its state dict,
                                                      # from_keras, from_onnx
    outputs, final_state = model(x, lengths=lengths)  # x: (n_x, m, T)

Every direction of every layer runs in the one engine (src/_engine.pyx); a
reverse direction runs natively (no reversed copy of x), each column over its
own steps backwards when lengths are given (PyTorch's packed semantics).
The weights are the notebook's parameter dicts (cyrnn/_cells.py), one per
layer and direction.
"""
import functools
import json

import numpy as np

from . import _cells, _engine, _parallel, _pool, _validation

__all__ = ["Model", "from_torch", "from_keras", "from_onnx", "load"]

# The notebook's keys of each cell's gate weights (the output head is the model's).
_HEAD_KEYS = {"rnn": ("Wya", "by"), "lstm": ("Wy", "by"), "gru": ("Wy", "by")}
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}     # gate row blocks in the frameworks' stacks
# Each framework's order of the gate blocks in its stacked weights (see _direction).
_TORCH_ORDER = {"rnn": "", "lstm": "ifco", "gru": "rzn"}
_KERAS_ORDER = {"rnn": "", "lstm": "ifco", "gru": "zrn"}
_ONNX_ORDER = {"rnn": "", "lstm": "iofc", "gru": "zrn"}
_FORMAT = "cyrnn.models/1"
# Below this much work per direction (multiply-adds), handing one direction to a
# second thread costs more than it saves (thread hand-off ~30-50 us).
_PARALLEL_DIRECTIONS_MACS = 2_000_000


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
        if cell not in _GATES:
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
                # gate weights stacked once (read in place by every call)
                p = _cells.prepare({k: np.ascontiguousarray(p[k], self.dtype)
                                    for k in keys if k in p})
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
        threads = _parallel.resolve_threads(n_threads)
        final = {"a": np.empty((states, self.n_a, m), self.dtype)}
        if self.cell == "lstm":
            final["c"] = np.empty((states, self.n_a, m), self.dtype)
        columns = np.arange(m)
        n_a, D = self.n_a, self.directions
        for l, layer in enumerate(self.layers):
            runs = [None] * len(layer)
            # The directions write their rows of the layer's output in place: the
            # last layer's in the user's layout, the others' (without lengths)
            # time-major, which the next layer reads as it is (no layout change)
            # (from cyrnn's recycling pool: fresh pages would cost page faults)
            if l == self.num_layers - 1 or lengths is not None:
                output = _pool.empty((D * n_a, m, T), self.dtype)
                outs = [output[d * n_a:(d + 1) * n_a] for d in range(D)]
            else:
                time_major = _pool.empty((D * n_a, T, m), self.dtype)
                output = time_major.transpose(0, 2, 1)
                outs = [time_major[d * n_a:(d + 1) * n_a].transpose(0, 2, 1)
                        for d in range(D)]

            def run(first, last, layer_input=x, l=l, per_direction=threads):
                for d in range(first, last):
                    k = l * self.directions + d
                    runs[d] = _engine._run_direction(
                        self.cell, layer_input, a0s[k], layer[d],
                        c0=None if c0s is None else c0s[k], lengths=lengths, reverse=d == 1,
                        cache=False, n_threads=per_direction, out=outs[d])

            if len(layer) == 2 and threads > 1 and \
                    self._macs(l) * m * T >= _PARALLEL_DIRECTIONS_MACS:
                # the two directions at once, each on half the threads (what each
                # computes does not depend on its threads: results are the same)
                run_both = functools.partial(run, per_direction=max(1, threads // 2))
                _parallel.run_chunks(run_both, 2, 2)
            else:
                run(0, len(layer))
            for d, (a, _, c, _) in enumerate(runs):
                k = l * self.directions + d
                self._final(final["a"][k], a, a0s[k], lengths, d, columns)
                if c is not None:
                    self._final(final["c"][k], c, c0s[k], lengths, d, columns)
            x = output
        if self.head is None:
            return x, final
        from ._activations import softmax
        z = self.head["Wy"] @ x.reshape(D * n_a, m * T) + self.head["by"]
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

    def _macs(self, l):
        """Multiply-adds per column and step of one direction of layer l."""
        n_in = self.n_x if l == 0 else self.directions * self.n_a
        return _GATES[self.cell] * self.n_a * (self.n_a + n_in)

    @staticmethod
    def _final(out, a, a0, lengths, d, columns):
        """out = the states (n_a, m) a direction ends with: at its last step
        (forward) or step 0 (reverse), a column's own with lengths (a0 where
        it has none)."""
        T = a.shape[2]
        if T == 0:
            out[...] = a0
        elif lengths is None:
            out[...] = a[:, :, 0 if d == 1 else T - 1]
        else:
            step = np.zeros_like(lengths) if d == 1 else np.maximum(lengths - 1, 0)
            out[...] = a[:, columns, step]
            out[:, lengths == 0] = a0[:, lengths == 0]

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

    def save(self, path, *, extra=None):
        """Write the model to a .npz file (arrays and a JSON description; read
        back by `load`, without pickle). `extra`: more arrays to keep in the
        same file under "extra/<name>" (e.g. a training run's state), which
        `load` ignores and `np.load(path)["extra/<name>"]` reads."""
        arrays = {f"extra/{name}": np.asarray(value) for name, value in (extra or {}).items()}
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
            layer.append(_direction(cell, n_a, W_ih, W_hh, b_ih, b_hh,
                                   _TORCH_ORDER[cell]))
        layers.append(layer)
    return Model(cell, layers, head)


def _direction(cell, n_a, W_ih, W_hh, b_ih, b_hh, order, reset_after=True):
    """One direction's parameter dict from a framework's stacked weights.

    W_ih: (gates·n_a, n_in), W_hh: (gates·n_a, n_a), b_ih/b_hh: (gates·n_a,),
    gate blocks in `order`: LSTM letters i, f, c (candidate), o; GRU r (reset),
    z (update, the frameworks' h = z·h_prev + (1 - z)·candidate) and n (candidate)."""
    if cell == "rnn":
        return {"Wax": W_ih, "Waa": W_hh, "ba": (b_ih + b_hh)[:, None]}
    rows = {g: slice(q * n_a, (q + 1) * n_a) for q, g in enumerate(order)}
    if cell == "lstm":
        p = {}
        for g in "ifco":
            p["W" + g] = np.hstack([W_hh[rows[g]], W_ih[rows[g]]])
            p["b" + g] = (b_ih[rows[g]] + b_hh[rows[g]])[:, None]
        return p
    r, z, n = rows["r"], rows["z"], rows["n"]
    # SPEC §5: the frameworks' z is 1 - Γu, hence the sign flip
    p = {"Wr": np.hstack([W_hh[r], W_ih[r]]), "br": (b_ih[r] + b_hh[r])[:, None],
         "Wu": -np.hstack([W_hh[z], W_ih[z]]), "bu": -(b_ih[z] + b_hh[z])[:, None]}
    if reset_after:
        p.update({"Wcx": W_ih[n], "bcx": b_ih[n][:, None],
                  "Wca": W_hh[n], "bca": b_hh[n][:, None]})
    else:     # the candidate's two biases both sit outside the reset gate
        p.update({"Wc": np.hstack([W_hh[n], W_ih[n]]), "bc": (b_ih[n] + b_hh[n])[:, None]})
    return p


# ------------------------------------------------------------------- Keras

_KERAS_CELLS = {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}


def _keras_class(layer):
    """The Keras class a layer is (or derives from) among those read here."""
    for cls in type(layer).__mro__:
        if cls.__name__ in (*_KERAS_CELLS, "Bidirectional", "Dense", "TimeDistributed",
                            "InputLayer"):
            return cls.__name__
    return type(layer).__name__


def from_keras(layer_or_model, *, head=None):
    """A Model with the weights of Keras 3 layers (any backend): a SimpleRNN,
    LSTM or GRU (reset_after True or False), a Bidirectional of one (merge_mode
    'concat'), or a Sequential/functional model (or a list of layers) that
    stacks such layers of one kind, optionally ending in a Dense (or
    TimeDistributed Dense) with a softmax, which becomes the head. Inputs are
    always (n_x, m, T) (Keras's are (m, T, n_x)); a Keras mask is `lengths`
    here. Unsupported, each a ValueError naming it: activations other than
    tanh/sigmoid, go_backwards outside a Bidirectional, other merge modes,
    other layers in a model."""
    obj = layer_or_model
    kind = _keras_class(obj)
    if kind in (*_KERAS_CELLS, "Bidirectional"):
        stack = [obj]
    elif isinstance(obj, (list, tuple)) or hasattr(obj, "layers"):
        stack = [layer for layer in (obj if isinstance(obj, (list, tuple)) else obj.layers)
                 if _keras_class(layer) != "InputLayer"]
    else:
        raise TypeError(f"from_keras needs a Keras SimpleRNN/LSTM/GRU/Bidirectional layer "
                        f"or a model of them; got {type(obj).__name__}")
    if stack and _keras_class(stack[-1]) in ("Dense", "TimeDistributed"):
        if head is not None:
            raise ValueError("the Keras model ends in a Dense layer and head= was given too")
        head = _keras_head(stack.pop())
    layers, cells = [], set()
    for layer in stack:
        kind = _keras_class(layer)
        if kind == "Bidirectional":
            merge = layer.get_config().get("merge_mode")
            if merge != "concat":
                raise ValueError(f"Bidirectional {layer.name!r} has merge_mode={merge!r}; only "
                                 "'concat' is supported (the outputs stack both directions)")
            directions = [(layer.forward_layer, False), (layer.backward_layer, True)]
        elif kind in _KERAS_CELLS:
            directions = [(layer, False)]
        else:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) is not supported "
                             "in a Keras model: only SimpleRNN/LSTM/GRU, Bidirectional of "
                             "them, and a final softmax Dense")
        converted = []
        for sub, backwards in directions:
            cell, p = _keras_direction(sub, backwards)
            cells.add(cell)
            converted.append(p)
        layers.append(converted)
    if len(cells) != 1:
        raise ValueError(f"the Keras layers mix cells {sorted(cells)}; a Model has one kind")
    return Model(cells.pop(), layers, head)


def _keras_direction(layer, backwards):
    kind = _keras_class(layer)
    if kind not in _KERAS_CELLS:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) is not a "
                         "SimpleRNN, LSTM or GRU")
    cell = _KERAS_CELLS[kind]
    config = layer.get_config()
    wanted = {"activation": "tanh"}
    if cell != "rnn":
        wanted["recurrent_activation"] = "sigmoid"
    for key, value in wanted.items():
        if config.get(key) != value:
            raise ValueError(f"{kind} {layer.name!r} has {key}={config.get(key)!r}; only "
                             f"{value!r} is supported")
    if bool(config.get("go_backwards")) != backwards:
        raise ValueError(f"{kind} {layer.name!r} has go_backwards={config.get('go_backwards')}; "
                         "a reversed layer is supported only inside a Bidirectional")
    if not layer.built:
        raise ValueError(f"{kind} {layer.name!r} is not built (it has no weights yet): call "
                         "it on an input or build it first")
    weights = [np.asarray(w) for w in layer.get_weights()]
    kernel, recurrent = weights[0], weights[1]
    n_a = recurrent.shape[0]
    zeros = np.zeros(recurrent.shape[1], recurrent.dtype)
    b_ih, b_hh = zeros, zeros
    if len(weights) > 2:     # a reset-after GRU has two bias rows (input, recurrent)
        bias = weights[2]
        b_ih, b_hh = (bias[0], bias[1]) if bias.ndim == 2 else (bias, zeros)
    return cell, _direction(cell, n_a, kernel.T, recurrent.T, b_ih, b_hh, _KERAS_ORDER[cell],
                            reset_after=bool(config.get("reset_after", True)))


def _keras_head(layer):
    dense = layer.layer if _keras_class(layer) == "TimeDistributed" else layer
    config = dense.get_config()
    if _keras_class(dense) != "Dense" or config.get("activation") != "softmax":
        raise ValueError(f"the final layer {layer.name!r} must be a Dense with "
                         f"activation='softmax' to be the head; got {type(dense).__name__} "
                         f"with activation={config.get('activation')!r}")
    weights = [np.asarray(w) for w in dense.get_weights()]
    kernel = weights[0]
    bias = weights[1] if len(weights) > 1 else np.zeros(kernel.shape[1], kernel.dtype)
    return {"Wy": kernel.T, "by": bias[:, None]}


# -------------------------------------------------------------------- ONNX

_ONNX_CELLS = {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
_ONNX_ACTIVATIONS = {"rnn": ["Tanh"], "lstm": ["Sigmoid", "Tanh", "Tanh"],
                     "gru": ["Sigmoid", "Tanh"]}
# What exporters put between stacked recurrent nodes: shapes, layouts, the
# initial states' zeros. Any other node would compute something the Model does not.
_ONNX_LAYOUT_OPS = {"Constant", "ConstantOfShape", "Shape", "Gather", "Unsqueeze", "Squeeze",
                    "Concat", "Expand", "Transpose", "Reshape", "Identity", "Cast", "Slice"}


def from_onnx(model_or_path, *, head=None):
    """A Model with the weights of an ONNX graph's RNN/LSTM/GRU nodes (an
    onnx.ModelProto, a path or the file's bytes; needs the `onnx` package:
    `pip install "cyrnn[onnx]"`). The recurrent nodes, in graph order, are the
    stack's layers, each 'forward' or 'bidirectional'; the other nodes may only
    move data (what exporters such as torch.onnx put between layers). GRU nodes
    with linear_before_reset=1 are the reset-after variant, 0 reset-before.
    Inputs are always (n_x, m, T), whatever the node's layout; initial states
    and sequence_lens are call arguments (`initial_state`, `lengths`).
    Unsupported, each a ValueError naming it: peepholes, clip, input_forget,
    activations other than the defaults, direction='reverse' alone, weights
    that are not constants of the graph."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as error:
        raise ImportError('from_onnx needs the onnx package: pip install "cyrnn[onnx]"') \
            from error
    obj = model_or_path
    if isinstance(obj, (bytes, bytearray)):
        obj = onnx.load_from_string(bytes(obj))
    elif not hasattr(obj, "graph"):
        obj = onnx.load(obj)
    graph = obj.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attribute.t)
    layers, cells = [], set()
    for node in graph.node:
        if node.op_type in _ONNX_CELLS:
            cell = _ONNX_CELLS[node.op_type]
            cells.add(cell)
            layers.append(_onnx_layer(cell, node, constants, onnx.helper))
        elif node.op_type not in _ONNX_LAYOUT_OPS:
            raise ValueError(f"ONNX node {node.name!r} ({node.op_type}) is not supported: "
                             f"from_onnx reads RNN/LSTM/GRU nodes and the data moves "
                             f"between them ({', '.join(sorted(_ONNX_LAYOUT_OPS))})")
    if not layers:
        raise ValueError("the ONNX graph has no RNN, LSTM or GRU node")
    if len(cells) != 1:
        raise ValueError(f"the ONNX graph mixes cells {sorted(cells)}; a Model has one kind")
    return Model(cells.pop(), layers, head)


def _onnx_layer(cell, node, constants, helper):
    what = f"ONNX {node.op_type} node {node.name!r}"
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "bidirectional"):
        raise ValueError(f"{what} has direction={direction!r}; only 'forward' and "
                         "'bidirectional' are supported (a Model's reverse direction "
                         "comes with a forward one)")
    directions = 2 if direction == "bidirectional" else 1
    activations = [a.decode() if isinstance(a, bytes) else a
                   for a in attrs.get("activations", [])]
    if activations and activations != _ONNX_ACTIVATIONS[cell] * directions:
        raise ValueError(f"{what} has activations={activations}; only the defaults "
                         f"{_ONNX_ACTIVATIONS[cell] * directions} are supported")
    if "clip" in attrs:
        raise ValueError(f"{what} has clip={attrs['clip']}; cell clipping is not supported")
    if attrs.get("input_forget", 0):
        raise ValueError(f"{what} has input_forget=1 (coupled gates); not supported")

    def constant(index, name):
        if len(node.input) <= index or not node.input[index]:
            return None
        if node.input[index] not in constants:
            raise ValueError(f"{what}: its input {name} ({node.input[index]!r}) is not a "
                             "constant of the graph (an initializer or Constant node)")
        return constants[node.input[index]]

    if cell == "lstm" and len(node.input) > 7 and node.input[7]:
        raise ValueError(f"{what} has peepholes (input P); not supported")
    W, R, B = constant(1, "W"), constant(2, "R"), constant(3, "B")
    if W is None or R is None:
        raise ValueError(f"{what} has no weights W and R")
    n_a = attrs.get("hidden_size", R.shape[-1])
    rows = _GATES[cell] * n_a
    if B is None:
        B = np.zeros((directions, 2 * rows), R.dtype)
    for name, array, shape in (("W", W, (directions, rows, W.shape[-1])),
                               ("R", R, (directions, rows, n_a)),
                               ("B", B, (directions, 2 * rows))):
        if array.shape != shape:
            raise ValueError(f"{what}: {name} has shape {array.shape}; expected {shape} "
                             f"(direction={direction!r}, hidden_size={n_a})")
    reset_after = bool(attrs.get("linear_before_reset", 0))
    return [_direction(cell, n_a, W[d], R[d], B[d, :rows], B[d, rows:], _ONNX_ORDER[cell],
                       reset_after=reset_after) for d in range(directions)]
