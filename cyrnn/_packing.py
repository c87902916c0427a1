"""Variable-length batches (docs/contract.md §6): the packed layout the engine
runs them in.

Columns are sorted by length, longest first (ties in column order), so the
columns still running at step t are a prefix of that order, `active[t]` of
them. The engine's time-major buffers then hold, step after step, only those
columns: step t at columns `offsets[t] .. offsets[t] + active[t] - 1` of
(rows, offsets[T]) buffers. Every GEMM of the sequence (the input projection,
each step's recurrent product, the weight gradients) thus has as many columns
as there are (column, step) pairs that exist, and a step's columns are a
prefix of the step before's, so its a_prev is read in place.
"""
from typing import NamedTuple

import numpy as np


class Packing(NamedTuple):
    lengths: np.ndarray     # int64 (m,), as given
    order: np.ndarray       # intp (m,): sorted position -> batch column
    position: np.ndarray    # intp (m,): batch column -> sorted position
    sorted_lengths: np.ndarray  # intp (m,): lengths[order], non-increasing
    active: np.ndarray      # intp (T,): columns running at step t
    offsets: np.ndarray     # intp (T + 1,): first packed column of step t

    @property
    def columns(self):
        """Packed columns of all steps: the sum of the lengths."""
        return int(self.offsets[-1])


def packing(lengths, T):
    """The packed layout of checked int64 lengths for T steps."""
    m = lengths.shape[0]
    order = np.argsort(-lengths, kind="stable").astype(np.intp)
    ended = np.cumsum(np.bincount(lengths, minlength=T + 1))[:T]   # lengths <= t
    active = (m - ended).astype(np.intp)
    offsets = np.zeros(T + 1, np.intp)
    np.cumsum(active, out=offsets[1:])
    position = np.empty(m, np.intp)
    position[order] = np.arange(m, dtype=np.intp)
    return Packing(lengths, order, position, lengths[order].astype(np.intp), active, offsets)


def time_major_index(p, steps, m):
    """For the packed columns of the first `steps` steps, their index in the
    (steps·m) columns of a time-major (·, steps, m) array (stacked step
    caches). The engine's own packing runs in C (src/cyrnn_elementwise_impl.h,
    pack_columns/unpack_columns)."""
    P = int(p.offsets[steps])
    step = np.repeat(np.arange(steps, dtype=np.intp), p.active[:steps])
    position = np.arange(P, dtype=np.intp) - p.offsets[step]
    return step * m + p.order[position]


def balanced_bounds(p, n_chunks):
    """Column bounds in sorted order of n_chunks chunks of about equal work
    (summed lengths), as an intp array of n_chunks + 1 (chunks may be empty)."""
    m = p.order.shape[0]
    work = np.cumsum(p.lengths[p.order])
    total = int(work[-1]) if m else 0
    targets = total * np.arange(1, n_chunks, dtype=np.float64) / max(n_chunks, 1)
    inner = np.searchsorted(work, targets, side="left") + 1 if total else np.full(
        n_chunks - 1, m)
    bounds = np.concatenate([[0], np.minimum(inner, m), [m]]).astype(np.intp)
    return np.maximum.accumulate(bounds)
