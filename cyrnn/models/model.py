"""The Model: a stack of layers, one or two directions, an optional head."""
import functools

import numpy as np

from cyrnn import _cells, _engine, _packing, _parallel, _pool, _validation
from cyrnn.models.convert import _GATES

# The notebook's keys of each cell's gate weights (the output head is the model's).
_HEAD_KEYS = {"rnn": ("Wya", "by"), "lstm": ("Wy", "by"), "gru": ("Wy", "by")}
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
    The arrays' dtype (float32 or float64) is the model's compute dtype.

    The model keeps copies of the arrays it is given, read-only: the packed
    plan packs a direction's recurrent weights once, at its first call, and
    reuses them. To change a weight, assign a new array to its key
    (`model.layers[l][d]["Wf"] = W`); the next call packs that direction again."""

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
                # the model's own copies, gate weights stacked once (read in place
                # by every call)
                p = _cells.prepare({k: np.array(p[k], self.dtype, order="C")
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
            Wy = np.array(head["Wy"], self.dtype, order="C")
            by = np.array(head["by"], self.dtype, order="C").reshape(-1, 1)
            if Wy.ndim != 2 or Wy.shape[1] != n_in or by.shape[0] != Wy.shape[0]:
                raise ValueError(f"head['Wy'] has shape {Wy.shape} and head['by'] "
                                 f"{by.shape}; expected (n_y, {n_in}) and (n_y, 1)")
            self.head = {"Wy": Wy, "by": by}
        self._freeze()

    def _freeze(self):
        """The weights read-only, and an empty packed-weights cache per direction:
        the packed plan packs each direction's recurrent weights at its first
        call and reuses them while its arrays are the same objects. To change
        a weight, assign a new array (`model.layers[l][d]["Wf"] = W`): the next
        call packs that direction again."""
        for p in [p for layer in self.layers for p in layer] + [self.head or {}]:
            for value in p.values():
                value.flags.writeable = False
        self._packed = [[_engine.PackedCache() for _ in layer] for layer in self.layers]

    def __setstate__(self, state):
        # (unpickled arrays come back writable: a copy, e.g. on a Dask worker)
        self.__dict__.update(state)
        self._freeze()

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
        packing = None
        if lengths is not None:
            # checked and packed once for every layer and direction
            lengths = _validation.check_lengths(lengths, m, T)
            if (lengths == T).all():
                lengths = None      # (every column runs every step: the plain call)
            else:
                packing = _packing.packing(lengths, T)
        states = self.num_layers * self.directions
        a0s = self._initial(initial_state, "a", states, m)
        c0s = self._initial(initial_state, "c", states, m) if self.cell == "lstm" else None
        threads = _parallel.resolve_threads(n_threads)
        final = {"a": np.empty((states, self.n_a, m), self.dtype)}
        if self.cell == "lstm":
            final["c"] = np.empty((states, self.n_a, m), self.dtype)
        columns = None if lengths is None else np.arange(m)
        n_a, D = self.n_a, self.directions
        for l, layer in enumerate(self.layers):
            runs = [None] * len(layer)
            # The directions write their rows of the layer's output in place: the
            # last layer's in the user's layout, the others' (without lengths)
            # time-major, which the next layer reads as it is (no layout change)
            # (from cyrnn's recycling pool: fresh pages would cost page faults)
            if l == self.num_layers - 1 or packing is not None:
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
                        c0=None if c0s is None else c0s[k], reverse=d == 1, cache=False,
                        n_threads=per_direction, out=outs[d], packing=packing,
                        packed_cache=self._packed[l][d])

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
        from cyrnn._activations import softmax
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

    def to_torch_state_dict(self):
        """The weights as a PyTorch nn.RNN/LSTM/GRU state dict of tensors
        (`module.load_state_dict(model.to_torch_state_dict())`); the head is
        not part of it."""
        from cyrnn.models.pytorch import to_torch_state_dict
        return to_torch_state_dict(self)

    def save(self, path, *, extra=None):
        """Write the model to a .npz file (arrays and a JSON description; read
        back by `cyrnn.models.load`, without pickle). `extra`: more arrays to
        keep in the same file under "extra/<name>" (e.g. a training run's
        state), which `load` ignores and `np.load(path)["extra/<name>"]` reads."""
        from cyrnn.models.files import save
        save(self, path, extra=extra)
