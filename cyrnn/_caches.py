"""Lazy per-step caches.

`rnn_forward`/`lstm_forward` return `caches = (steps, x)` where `steps` has one
entry per time step, each the tuple the notebook's cell functions build. Making
T tuples of views up front would dominate small calls, so `steps` keeps the
stacked time-major buffers and makes each step's tuple when it is read.
cyrnn's backward functions recognise these objects and use the buffers
directly; any other sequence of step tuples (e.g. from `cyrnn.reference`) is
accepted too and stacked on the way in.

Every step's tuple holds that step's own values: the buffers are never reused
or written after the forward pass (the forward functions make them read-only
before building these objects), and the first LSTM step's c_prev is a zeros
array of its own.
"""
import operator
from collections.abc import Sequence

import numpy as np

from cyrnn._lstm import LSTMCacheBuffers
from cyrnn._rnn import RNNCacheBuffers


class _StepCaches(Sequence):
    """Base: indexing, slicing and length over the time axis."""

    __slots__ = ()

    def __len__(self):
        return self._T

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._step(t) for t in range(*index.indices(self._T))]
        t = operator.index(index)
        if t < 0:
            t += self._T
        if not 0 <= t < self._T:
            raise IndexError(f"step {index} out of range for {self._T} steps")
        return self._step(t)

    def __repr__(self):
        return f"<{type(self).__name__}: {self._T} steps>"


class RNNStepCaches(RNNCacheBuffers, _StepCaches):
    """Step t is (a_next, a_prev, xt, parameters), as from rnn_cell_forward.

    RNNStepCaches(A, a0, X, x, parameters, Wax, Waa); the buffers are read-only
    attributes (see cyrnn._rnn.RNNCacheBuffers)."""

    __slots__ = ()

    def _step(self, t):
        a_prev = self.a0 if t == 0 else self.A[:, t - 1, :]
        return (self.A[:, t, :], a_prev, self.x[:, :, t], self.parameters)


class LSTMStepCaches(LSTMCacheBuffers, _StepCaches):
    """Step t is (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt,
    parameters), as from lstm_cell_forward.

    LSTMStepCaches(A, C, G, a0, c0, X, x, parameters, W); the buffers are
    read-only attributes (see cyrnn._lstm.LSTMCacheBuffers)."""

    __slots__ = ()

    def initial_cell_state(self):
        """c0, or (made once) a read-only zeros array when the forward started at 0."""
        if self.c0 is not None:
            return self.c0
        if self._zeros is None:
            self._zeros = np.zeros(self.a0.shape, self.a0.dtype)
            self._zeros.flags.writeable = False
        return self._zeros

    def _step(self, t):
        n_a = self.A.shape[0]
        G = self.G
        if t == 0:
            a_prev, c_prev = self.a0, self.initial_cell_state()
        else:
            a_prev, c_prev = self.A[:, t - 1, :], self.C[:, t - 1, :]
        return (self.A[:, t, :], self.C[:, t, :], a_prev, c_prev,
                G[:n_a, t, :], G[n_a:2 * n_a, t, :], G[2 * n_a:3 * n_a, t, :],
                G[3 * n_a:, t, :], self.x[:, :, t], self.parameters)
