"""Distributed batch inference on Dask (docs/contract.md §8; extra `dask`).

    import dask.array as da
    from cyrnn import dask as cdask

    x = da.from_array(np.load("x.npy", mmap_mode="r"), chunks=(-1, 4096, -1))
    outputs, final = cdask.predict(model, x, lengths=lengths)     # lazy
    outputs.to_zarr("out.zarr")    # or .compute(), on any scheduler

Inputs are dask arrays chunked along the batch axis (axis 1 of x; the other
axes are rechunked into one chunk); each batch chunk is one task calling the
in-memory function, so results are bit-identical to calling it on each chunk
(and, cyrnn's results depending only on each column, to one call on the whole
batch). The weights (a parameter dict or a Model) are one key of the graph:
the distributed scheduler ships them to each worker once, whatever the number
of chunks. Each task runs single-threaded; give each worker thread one BLAS
thread (distributed's workers do by default; on the threaded scheduler, use
`threadpoolctl.threadpool_limits(1, "blas")`).
"""
import numpy as np

from . import _engine, _validation

__all__ = ["predict", "rnn_forward", "lstm_forward", "gru_forward"]


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError as error:
        raise ImportError('cyrnn.dask needs dask: pip install "cyrnn[dask]"') from error
    return dask, da


# ------------------------------------------------------------------ tasks
# Module-level functions: the process and distributed schedulers pickle them
# by reference.

def _forward_task(name, x, a0, c0, lengths, parameters):
    function = getattr(_engine, name)
    kwargs = {"lengths": lengths, "cache": False}
    if c0 is not None:
        kwargs["c0"] = c0
    return function(x, a0, parameters, **kwargs)


def _predict_task(model, x, lengths):
    outputs, final = model(x, lengths=lengths)
    return (outputs, *final.values())


def _take(results, index):
    return results[index]


# ------------------------------------------------------------------ graph

def _batched(da, name, value, batch_chunks, shape):
    """value as a dask array of `shape` chunked like the batch along its last
    axis (NumPy values are split; dask ones rechunked); ValueError naming it."""
    if isinstance(value, da.Array):
        if value.shape != shape:
            raise ValueError(f"{name} has shape {value.shape}; expected {shape}")
        return value.rechunk(tuple((s,) for s in shape[:-1]) + (batch_chunks,))
    value = _validation.as_array(name, value)
    if value.shape != shape:
        raise ValueError(f"{name} has shape {value.shape}; expected {shape}")
    return da.from_array(value, chunks=tuple((s,) for s in shape[:-1]) + (batch_chunks,))


def _inputs(x, name="x"):
    dask, da = _dask()
    if not isinstance(x, da.Array):
        x = da.from_array(_validation.as_array(name, x), chunks=(-1, "auto", -1))
    if x.ndim != 3:
        raise ValueError(f"{name} has shape {x.shape}; expected 3 dimensions (n_x, m, T_x), "
                         "chunked along m (axis 1)")
    if any(np.isnan(d) for d in x.shape):
        raise ValueError(f"{name} has unknown chunk sizes {x.chunks}: call "
                         f"{name}.compute_chunk_sizes() first")
    return dask, da, x.rechunk({0: -1, 2: -1})


def _lengths(da, lengths, x):
    if lengths is None:
        return None
    return _batched(da, "lengths", lengths, x.chunks[1], (x.shape[1],))


def _probe_columns(x, a0, c0, lengths):
    """One column of zeros shaped like the inputs: a probe call checks the
    weights (with the in-memory function's own errors) and gives the outputs'
    shapes and dtypes before any task runs."""
    probe = np.zeros((x.shape[0], 1, x.shape[2]), x.dtype)
    return (probe, None if a0 is None else np.zeros((a0.shape[0], 1), a0.dtype),
            None if c0 is None else np.zeros((c0.shape[0], 1), c0.dtype),
            None if lengths is None else np.full(1, x.shape[2]))


def _outputs(da, results, arrays, axes):
    """Each probe array of the tuple `arrays` becomes a dask array whose blocks
    are that element of each chunk's results (None stays None); axes[i]: the
    batch axis of arrays[i]."""
    out = []
    for index, (probe, axis) in enumerate(zip(arrays, axes)):
        if probe is None:
            out.append(None)
            continue
        letters = "ijk"[:probe.ndim]
        batch = letters[axis]
        new_axes = {letter: size for letter, size in zip(letters, probe.shape) if letter != batch}
        out.append(da.blockwise(_take, letters, results, batch, index, None,
                                new_axes=new_axes, dtype=probe.dtype,
                                meta=np.empty((0,) * probe.ndim, probe.dtype)))
    return out


def _forward(name, x, a0, parameters, c0=None, lengths=None):
    dask, da, x = _inputs(x)
    n_x, m, T = x.shape
    if not isinstance(parameters, dict):
        raise TypeError(f"parameters must be a dict of arrays; got {type(parameters).__name__}")
    a0_shape = getattr(a0, "shape", None) or np.shape(a0)
    if len(a0_shape) != 2:
        raise ValueError(f"a0 has shape {a0_shape}; expected (n_a, m) with m = {m}")
    a0 = _batched(da, "a0", a0, x.chunks[1], (a0_shape[0], m))
    if c0 is not None:
        c0 = _batched(da, "c0", c0, x.chunks[1], a0.shape)
    lengths = _lengths(da, lengths, x)
    probe = _forward_task(name, *_probe_columns(x, a0, c0, lengths), parameters)
    weights = dask.delayed(parameters, traverse=False)       # one key, whatever the chunks
    args = [name, None, x, "ijk", a0, "aj"]
    args += [c0, "aj"] if c0 is not None else [None, None]
    args += [lengths, "j"] if lengths is not None else [None, None]
    args += [weights, None]
    results = da.blockwise(_forward_task, "j", *args, dtype=object,
                           meta=np.empty((0,), object), concatenate=True)
    return tuple(_outputs(da, results, probe, [1] * len(probe)))


def rnn_forward(x, a0, parameters, *, lengths=None):
    """`cyrnn.rnn_forward(x, a0, parameters, lengths=lengths, cache=False)`
    over a dask array x (n_x, m, T_x) chunked along m: (a, y_pred, None) as
    dask arrays chunked like x. a0 (n_a, m): a dask array (rechunked to x's
    batch chunks) or a NumPy array (split to match); lengths likewise."""
    return _forward("rnn_forward", x, a0, parameters, lengths=lengths)


def lstm_forward(x, a0, parameters, *, c0=None, lengths=None):
    """`cyrnn.lstm_forward(..., cache=False)` over dask arrays, as
    `rnn_forward` here: (a, y, c, None)."""
    return _forward("lstm_forward", x, a0, parameters, c0=c0, lengths=lengths)


def gru_forward(x, a0, parameters, *, lengths=None):
    """`cyrnn.gru_forward(..., cache=False)` over dask arrays, as `rnn_forward`
    here: (a, y, None)."""
    return _forward("gru_forward", x, a0, parameters, lengths=lengths)


def predict(model, x, *, lengths=None):
    """`model(x, lengths=lengths)` of a cyrnn.models.Model over a dask array x
    (n_x, m, T) chunked along m: (outputs, final_state) with dask arrays,
    outputs chunked like x, final_state's arrays (L·D, n_a, m) chunked along m."""
    from .models import Model
    if not isinstance(model, Model):
        raise TypeError(f"model must be a cyrnn.models.Model; got {type(model).__name__}")
    dask, da, x = _inputs(x)
    lengths = _lengths(da, lengths, x)
    probe_x, _, _, probe_lengths = _probe_columns(x, None, None, lengths)
    probe = _predict_task(model, probe_x, probe_lengths)
    args = [dask.delayed(model, traverse=False), None, x, "ijk"]
    args += [lengths, "j"] if lengths is not None else [None, None]
    results = da.blockwise(_predict_task, "j", *args, dtype=object,
                           meta=np.empty((0,), object), concatenate=True)
    outputs, *states = _outputs(da, results, probe, [1] + [2] * (len(probe) - 1))
    return outputs, dict(zip(("a", "c"), states))
