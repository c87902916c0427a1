"""The cells cyrnn runs, each described once.

A description says what the engine (src/_engine.pyx, src/engine/) and the
validating layer (cyrnn/_validation.py) need to know about a cell (the
descriptions are data; `gru_variant` and `prepare` below read parameter dicts
with them):

- ``kind``: the engine's code for the cell (its step kernels, src/_cells.pxd);
- ``gates``: row blocks of n_a rows in the stacked gate weights (the GEMMs
  fill gates·n_a rows per step), ``has_c``: whether it carries a cell state;
- ``blocks``: the names of the row blocks of the engine's per-step gate
  buffer G (what the caches keep; a GRU keeps one more block than it has
  gates: the product its backward needs besides the gates);
- ``parameters``: the schema of the notebook's parameter dict, one entry per
  key (key, row symbol, column symbol, what it is). Both the engine's fast
  check and the validating path read it, so they cannot disagree;
- ``gate_weights``: the row blocks stacked, in order, into the gate weights
  (rows × (n_a + n_x), hidden-state columns first, as the notebook's
  concat = [a_prev; x]): a key of an (n_a, n_a + n_x) matrix, or a pair
  (hidden-state key, input key) of matrices joined side by side;
  ``gate_biases``: the keys stacked into the bias the step kernels read, in
  the order of G's blocks; ``head``: output-layer keys;
- ``backward_keys``: the parameters the backward functions read;
- ``gradient_keys``: the dW/db keys of the backward functions, shaped like
  gate_weights and gate_biases;
- ``step_cache``: the names in each step's cache tuple, ``gate_cache`` those of
  its activated gates.

Adding a cell is one description here, its step (src/_cells.pxd: its spec,
passes and kernels; src/cyrnn_elementwise_impl.h), its step-caches class
(src/engine/caches.pxi) and its reference functions (cyrnn/reference/); no
driver changes (src/README.md, "Adding a cell").
"""
from typing import NamedTuple

# Dimension symbols of the schema, as codes the engine's fast check indexes by.
ONE, N_X, N_A, N_Y, N_A_PLUS_N_X = range(5)
SYMBOLS = ("1", "n_x", "n_a", "n_y", "n_a + n_x")

# Engine codes of the cells (src/_cells.pxd CellKind).
KIND_RNN, KIND_LSTM, KIND_GRU, KIND_GRU_RESET_BEFORE = 0, 1, 2, 3


class Cell(NamedTuple):
    name: str
    kind: int
    gates: int
    blocks: tuple           # names of G's row blocks
    has_c: bool
    parameters: tuple       # (key, rows, cols, what)
    gate_weights: tuple     # see weights_on_concat
    weights_on_concat: bool  # gate_weights: one (n_a, n_a + n_x) matrix per gate on
                             # [a_prev; x], stacked by the engine; else (Wx, Wa) keys
    gate_biases: tuple
    head: tuple             # (Wy key, by key)
    backward_keys: tuple
    gradient_keys: tuple    # (dW keys, db keys) per gate block
    step_cache: tuple
    gate_cache: tuple       # the step cache's activated gates (names in blocks;
                            # none: the gate block is the hidden state)



RNN = Cell(
    name="rnn", kind=KIND_RNN, gates=1, blocks=("a",), has_c=False,
    parameters=(
        ("Wax", N_A, N_X, "input-to-hidden weights"),
        ("Waa", N_A, N_A, "hidden-to-hidden weights"),
        ("Wya", N_Y, N_A, "hidden-to-output weights"),
        ("ba", N_A, ONE, "hidden bias"),
        ("by", N_Y, ONE, "output bias"),
    ),
    # the RNN keeps input and recurrent weights apart: (Wx, Wa) keys, no stacking
    gate_weights=("Wax", "Waa"), weights_on_concat=False,
    gate_biases=("ba",),
    head=("Wya", "by"),
    backward_keys=("Wax", "Waa"),
    gradient_keys=(("dWax", "dWaa"), ("dba",)),
    step_cache=("a_next", "a_prev", "xt", "parameters"),
    gate_cache=(),
)

_GATE_NAMES = (("f", "forget"), ("i", "update"), ("c", "candidate"), ("o", "output"))

LSTM = Cell(
    name="lstm", kind=KIND_LSTM, gates=4, blocks=("ft", "it", "cct", "ot"), has_c=True,
    parameters=tuple(
        [("W" + g, N_A, N_A_PLUS_N_X, f"{what} gate weights") for g, what in _GATE_NAMES]
        + [("b" + g, N_A, ONE, f"{what} gate bias") for g, what in _GATE_NAMES]
        + [("Wy", N_Y, N_A, "hidden-to-output weights"), ("by", N_Y, ONE, "output bias")]),
    gate_weights=tuple("W" + g for g, _ in _GATE_NAMES), weights_on_concat=True,
    gate_biases=tuple("b" + g for g, _ in _GATE_NAMES),
    head=("Wy", "by"),
    backward_keys=tuple("W" + g for g, _ in _GATE_NAMES),
    gradient_keys=(tuple("dW" + g for g, _ in _GATE_NAMES),
                   tuple("db" + g for g, _ in _GATE_NAMES)),
    step_cache=("a_next", "c_next", "a_prev", "c_prev", "ft", "it", "cct", "ot", "xt",
                "parameters"),
    gate_cache=("ft", "it", "cct", "ot"),
)

# The GRU (docs/contract.md §5), in the course's notation: Γr (reset), Γu
# (update: it weights the candidate), c~ (candidate);
#     a = Γu·c~ + (1 − Γu)·a_prev.
# Two variants, told apart by their keys. G's blocks are the gates plus the
# one product the backward pass needs besides them.
_GRU_GATES = (("r", "reset"), ("u", "update"))
_GRU_STEP_CACHE = ("a_next", "a_prev", "rt", "ut", "cct", "xt", "parameters")
_HEAD = [("Wy", N_Y, N_A, "hidden-to-output weights"), ("by", N_Y, ONE, "output bias")]

# Reset after the recurrent product (PyTorch, Keras reset_after=True, ONNX
# linear_before_reset=1): c~ = tanh(Wcx·x + bcx + Γr·(Wca·a_prev + bca)).
# G: Γr, Γu, hc = Wca·a_prev + bca, c~.
GRU = Cell(
    name="gru", kind=KIND_GRU, gates=3, blocks=("rt", "ut", "hct", "cct"), has_c=False,
    parameters=tuple(
        [("W" + g, N_A, N_A_PLUS_N_X, f"{what} gate weights") for g, what in _GRU_GATES]
        + [("Wcx", N_A, N_X, "candidate input weights"),
           ("Wca", N_A, N_A, "candidate hidden-state weights")]
        + [("b" + g, N_A, ONE, f"{what} gate bias") for g, what in _GRU_GATES]
        + [("bcx", N_A, ONE, "candidate input bias"),
           ("bca", N_A, ONE, "candidate hidden-state bias")] + _HEAD),
    gate_weights=("Wr", "Wu", ("Wca", "Wcx")), weights_on_concat=True,
    gate_biases=("br", "bu", "bca", "bcx"),
    head=("Wy", "by"),
    backward_keys=("Wr", "Wu", "Wca", "Wcx", "bca"),
    gradient_keys=(("dWr", "dWu", ("dWca", "dWcx")), ("dbr", "dbu", "dbca", "dbcx")),
    step_cache=_GRU_STEP_CACHE,
    gate_cache=("rt", "ut", "cct"),
)

# Reset before the recurrent product (the course's lecture, Keras
# reset_after=False, ONNX's default): c~ = tanh(Wc·[Γr·a_prev; x] + bc).
# G: Γr, Γu, c~, ra = Γr·a_prev.
GRU_RESET_BEFORE = Cell(
    name="gru", kind=KIND_GRU_RESET_BEFORE, gates=3, blocks=("rt", "ut", "cct", "rat"),
    has_c=False,
    parameters=tuple(
        [("W" + g, N_A, N_A_PLUS_N_X, f"{what} gate weights")
         for g, what in _GRU_GATES + (("c", "candidate"),)]
        + [("b" + g, N_A, ONE, f"{what} gate bias")
           for g, what in _GRU_GATES + (("c", "candidate"),)] + _HEAD),
    gate_weights=("Wr", "Wu", "Wc"), weights_on_concat=True,
    gate_biases=("br", "bu", "bc"),
    head=("Wy", "by"),
    backward_keys=("Wr", "Wu", "Wc"),
    gradient_keys=(("dWr", "dWu", "dWc"), ("dbr", "dbu", "dbc")),
    step_cache=_GRU_STEP_CACHE,
    gate_cache=("rt", "ut", "cct"),
)

RESET_AFTER_KEYS = ("Wcx", "Wca", "bcx", "bca")
RESET_BEFORE_KEYS = ("Wc", "bc")


def gru_variant(parameters):
    """The GRU description the keys of `parameters` choose (docs/contract.md §5): "Wc"
    means reset-before, else reset-after. Both sets: ValueError. Anything but
    a mapping is left to the validation of the reset-after schema."""
    if not hasattr(parameters, "keys"):
        return GRU
    after = [k for k in RESET_AFTER_KEYS if k in parameters]
    if "Wc" in parameters:
        if after:
            raise ValueError(
                "parameters has both 'Wc' (reset-before GRU) and "
                f"{', '.join(repr(k) for k in after)} (reset-after GRU); give one variant's keys")
        return GRU_RESET_BEFORE
    if not after and "bc" not in parameters:
        raise KeyError(
            "parameters has neither 'Wc', 'bc' (reset-before GRU) nor 'Wcx', 'Wca', 'bcx', "
            f"'bca' (reset-after GRU); it has keys [{', '.join(repr(k) for k in list(parameters)[:20])}]")
    return GRU_RESET_BEFORE if not after else GRU


def prepare(parameters):
    """A copy of `parameters` whose gate weights are consecutive row blocks of
    one stacked matrix (the LSTM's Wf, Wi, Wc, Wo; the reset-before GRU's Wr,
    Wu, Wc), so the sequence functions read them in place instead of stacking
    them on every call (the engine checks the blocks are consecutive). The
    arrays are views of that matrix: changing them in place changes what the
    next call computes, as with any parameter dict. Other keys, and cells with
    nothing to stack (the RNN; the reset-after GRU, whose candidate has separate
    input and recurrent weights), are returned as they are."""
    import numpy as np

    if not hasattr(parameters, "keys"):
        raise TypeError(f"parameters must be a dict; got {type(parameters).__name__}")
    if "Wf" in parameters:
        cell = LSTM
    elif "Wr" in parameters:
        cell = gru_variant(parameters)
    else:
        cell = RNN
    out = dict(parameters)
    keys = cell.gate_weights
    if not cell.weights_on_concat or not all(isinstance(k, str) for k in keys):
        return out
    blocks = [np.asarray(parameters[k]) for k in keys]
    shape = blocks[0].shape
    if any(b.ndim != 2 or b.shape != shape for b in blocks):
        return out      # left to the functions' own checks and messages
    dtype = np.result_type(*blocks)
    stacked = np.empty((len(keys) * shape[0], shape[1]),
                       dtype if dtype in (np.float32, np.float64) else np.float64)
    for q, (key, block) in enumerate(zip(keys, blocks)):
        view = stacked[q * shape[0]:(q + 1) * shape[0]]
        view[...] = block
        out[key] = view
    return out
