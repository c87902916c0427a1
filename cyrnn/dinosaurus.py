"""The course's "Dinosaurus Island - character-level language model" as a
drop-in (docs/contract.md §9): the assignment's utils and exercise functions
with its signatures, parameter keys, return values and use of NumPy's global
random state, so a learner's notebook prints the same numbers after

    from cyrnn.dinosaurus import *        # instead of: from utils import *

`optimize` (and so `model`) runs forward, backward through time, clipping and
the update as one compiled call over SciPy's BLAS (src/_train.pyx); `sample`
draws exactly as the course's np.random.choice does, without its per-call
checks. The utils and `clip` are the course's NumPy code (cyrnn.reference.dinosaurus),
and any input the compiled path does not take (other dtypes, layouts,
negative indices) runs there too, with the course's behaviour.
"""
import numpy as np

from . import _train
from .reference import dinosaurus as _reference
from .reference.dinosaurus import (clip, get_initial_loss, get_sample, initialize_parameters,
                                   print_sample, rnn_backward, rnn_forward, rnn_step_backward,
                                   rnn_step_forward, smooth, softmax, update_parameters)

__all__ = [
    "softmax", "smooth", "print_sample", "get_sample", "get_initial_loss",
    "initialize_parameters", "rnn_step_forward", "rnn_step_backward", "update_parameters",
    "rnn_forward", "rnn_backward", "clip", "sample", "optimize", "model",
]

def optimize(X, Y, a_prev, parameters, learning_rate=0.01):
    """One step of SGD on the sequence X -> Y (X[0] None: the zero input):
    (loss, gradients clipped to ±5, last hidden state (n_a, 1)); the
    parameters are updated in place. The course's exercise, compiled."""
    if type(parameters) is dict and isinstance(learning_rate, (int, float, np.floating)) \
            and not isinstance(learning_rate, bool):
        result = _train.char_rnn_optimize(X, Y, a_prev, parameters, learning_rate, 5.0)
        if result is not None:
            return result
    return _reference.optimize(X, Y, a_prev, parameters, learning_rate)


def sample(parameters, char_to_ix, seed):
    """Indices of characters sampled one by one from the model (the course's
    exercise): from a zero input and state until the newline, or 50
    characters and then a newline. NumPy's global state is reseeded before
    each draw as the course does (with seed + 2k at step k) and each draw is
    np.random.choice's: one random_sample against the probabilities'
    normalised cumulative sum, so the indices are the course's."""
    Waa, Wax, Wya = parameters["Waa"], parameters["Wax"], parameters["Wya"]
    by, b = parameters["by"], parameters["b"]
    vocab_size = by.shape[0]
    choices = np.arange(vocab_size)          # np.random.choice(range(n)) returns these
    x_column = None                          # the one-hot input's index (None: zero input)
    a_prev = np.zeros((Waa.shape[1], 1))
    indices = []
    idx = -1
    counter = 0
    newline_character = char_to_ix["\n"]
    while idx != newline_character and counter != 50:
        # Wax·x for a one-hot x is a column of Wax (np.dot adds exact zeros)
        wx = Wax[:, x_column:x_column + 1] if x_column is not None else \
            np.zeros((Wax.shape[0], 1))
        a = np.tanh(wx + np.dot(Waa, a_prev) + b)
        y = softmax(np.dot(Wya, a) + by)
        np.random.seed(counter + seed)
        cdf = y.ravel().cumsum()
        cdf /= cdf[-1]
        idx = choices[cdf.searchsorted(np.random.random_sample(), side="right")]
        indices.append(idx)
        x_column = int(idx)
        a_prev = a
        seed += 1
        counter += 1
    if counter == 50:
        indices.append(char_to_ix["\n"])
    return indices


def model(data_x, ix_to_char, char_to_ix, num_iterations=35000, n_a=50, dino_names=7,
          vocab_size=27, verbose=False):
    """Trains the character-level model on the names of data_x (one per item),
    printing the smoothed loss and `dino_names` samples every 2000 iterations,
    as the course's exercise does. Returns (parameters, the last name sampled)."""
    return _reference._model(optimize, sample, data_x, ix_to_char, char_to_ix, num_iterations,
                             n_a, dino_names, vocab_size, verbose)
