"""The cells cyrnn runs, each described once.

A description says what the engine (src/_engine.pyx) and the validating layer
(cyrnn/_validation.py) need to know about a cell, and nothing here runs code:

- ``kind``: the engine's code for the cell (its step kernels, src/_cells.pxd);
- ``gates``: rows of the gate block per hidden unit (the GEMMs fill gates·n_a
  rows per step), ``has_c``: whether it carries a cell state besides a;
- ``parameters``: the schema of the notebook's parameter dict, one entry per
  key (key, row symbol, column symbol, what it is). Both the engine's fast
  check and the validating path read it, so they cannot disagree;
- ``gate_weights``/``gate_biases``: the keys stacked, in order, into the gate
  block's weights (rows × (n_a + n_x), hidden-state columns first, as the
  notebook's concat = [a_prev; x]) and biases; ``head``: output-layer keys;
- ``gradient_keys``: the dW/db keys of the backward functions, per gate block;
- ``step_cache``: the names in each step's cache tuple, ``gate_cache`` those of
  its activated gates.

Adding a cell is one description here, its step kernels (src/_cells.pxd,
src/cyrnn_elementwise_impl.h) and its reference functions (cyrnn/reference.py).
"""
from typing import NamedTuple

# Dimension symbols of the schema, as codes the engine's fast check indexes by.
ONE, N_X, N_A, N_Y, N_A_PLUS_N_X = range(5)
SYMBOLS = ("1", "n_x", "n_a", "n_y", "n_a + n_x")

# Engine codes of the cells (src/_cells.pxd CellKind).
KIND_RNN, KIND_LSTM = 0, 1


class Cell(NamedTuple):
    name: str
    kind: int
    gates: int
    has_c: bool
    parameters: tuple       # (key, rows, cols, what)
    gate_weights: tuple     # see weights_on_concat
    weights_on_concat: bool  # gate_weights: one (n_a, n_a + n_x) matrix per gate on
                             # [a_prev; x], stacked by the engine; else (Wx, Wa) keys
    gate_biases: tuple
    head: tuple             # (Wy key, by key)
    gradient_keys: tuple    # (dW keys, db keys) per gate block
    step_cache: tuple
    gate_cache: tuple       # the step cache's activated gates, in gate-block order
                            # (none: the gate block is the hidden state)



RNN = Cell(
    name="rnn", kind=KIND_RNN, gates=1, has_c=False,
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
    gradient_keys=(("dWax", "dWaa"), ("dba",)),
    step_cache=("a_next", "a_prev", "xt", "parameters"),
    gate_cache=(),
)

_GATE_NAMES = (("f", "forget"), ("i", "update"), ("c", "candidate"), ("o", "output"))

LSTM = Cell(
    name="lstm", kind=KIND_LSTM, gates=4, has_c=True,
    parameters=tuple(
        [("W" + g, N_A, N_A_PLUS_N_X, f"{what} gate weights") for g, what in _GATE_NAMES]
        + [("b" + g, N_A, ONE, f"{what} gate bias") for g, what in _GATE_NAMES]
        + [("Wy", N_Y, N_A, "hidden-to-output weights"), ("by", N_Y, ONE, "output bias")]),
    gate_weights=tuple("W" + g for g, _ in _GATE_NAMES), weights_on_concat=True,
    gate_biases=tuple("b" + g for g, _ in _GATE_NAMES),
    head=("Wy", "by"),
    gradient_keys=(tuple("dW" + g for g, _ in _GATE_NAMES),
                   tuple("db" + g for g, _ in _GATE_NAMES)),
    step_cache=("a_next", "c_next", "a_prev", "c_prev", "ft", "it", "cct", "ot", "xt",
                "parameters"),
    gate_cache=("ft", "it", "cct", "ot"),
)
