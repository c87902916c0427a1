"""cyrnn: the notebook's RNN and LSTM functions, compiled.

Drop-in for the NumPy functions of "Building your Recurrent Neural Network -
Step by Step": same names, arguments, shapes, returned tuples, caches and
gradient dicts. Kernels are Cython over SciPy's BLAS and run without the GIL.
A plain NumPy version of the same API is `cyrnn.reference`.

The public functions are compiled (src/_rnn.pyx, src/_lstm.pyx,
src/_activations.pyx); inputs their fast paths do not take go through the
validating layer, cyrnn/_checked.py.
"""
from ._activations import sigmoid, softmax
from ._lstm import lstm_backward, lstm_cell_backward, lstm_cell_forward, lstm_forward
from ._rnn import rnn_backward, rnn_cell_backward, rnn_cell_forward, rnn_forward
from ._caches import LSTMStepCaches, RNNStepCaches
from ._pool import release_memory

__version__ = "0.1.0"

__all__ = [
    "rnn_cell_forward", "rnn_forward", "rnn_cell_backward", "rnn_backward",
    "lstm_cell_forward", "lstm_forward", "lstm_cell_backward", "lstm_backward",
    "softmax", "sigmoid", "RNNStepCaches", "LSTMStepCaches", "release_memory",
]
