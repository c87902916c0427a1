"""cyrnn: the notebook's RNN and LSTM functions, and a GRU in their style, compiled.

Drop-in for the NumPy functions of "Building your Recurrent Neural Network -
Step by Step": same names, arguments, shapes, returned tuples, caches and
gradient dicts. Kernels are Cython over SciPy's BLAS and run without the GIL.
A plain NumPy version of the same API is `cyrnn.reference`.

The public functions are thin shells over one sequence engine
(src/_engine.pyx); the cells are described in cyrnn/_cells.py, and inputs the
engine's fast checks do not take are checked and converted by
cyrnn/_validation.py.
"""
try:
    from ._engine import (GRUStepCaches, LSTMStepCaches, RNNStepCaches, gru_backward,
                          gru_cell_backward, gru_cell_forward, gru_forward, lstm_backward,
                          lstm_cell_backward, lstm_cell_forward, lstm_forward, rnn_backward,
                          rnn_cell_backward, rnn_cell_forward, rnn_forward)
except ImportError as exc:  # pragma: no cover - depends on how cyrnn was obtained
    import os as _os
    from importlib.machinery import EXTENSION_SUFFIXES as _SUFFIXES

    # a folder without the compiled engine (the type stub _engine.pyi does not count)
    if not any(name.startswith("_engine.") and name.endswith(tuple(_SUFFIXES))
               for name in _os.listdir(_os.path.dirname(_os.path.abspath(__file__)))):
        raise ImportError(
            f"cyrnn's compiled modules are missing from {_os.path.dirname(__file__)}: this "
            "looks like the source tree, not an installed cyrnn (Python imports the folder "
            "`cyrnn` of the current directory first). Install it (`pip install .` from the "
            "source root, which compiles the kernels) and import it from another directory, "
            "or install a wheel of cyrnn.") from exc
    raise
from ._activations import sigmoid, softmax
from ._cells import prepare
from ._pool import release_memory

__version__ = "0.2.0.dev0"

__all__ = [
    "rnn_cell_forward", "rnn_forward", "rnn_cell_backward", "rnn_backward",
    "lstm_cell_forward", "lstm_forward", "lstm_cell_backward", "lstm_backward",
    "gru_cell_forward", "gru_forward", "gru_cell_backward", "gru_backward",
    "softmax", "sigmoid", "RNNStepCaches", "LSTMStepCaches", "GRUStepCaches", "release_memory",
    "prepare",
]
