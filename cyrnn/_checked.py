"""The general path of the public functions: validation and conversion.

The public functions (in src/_rnn.pyx, src/_lstm.pyx, src/_activations.pyx)
first try a compiled fast path that takes only kernel-ready inputs: exact
ndarrays of one float dtype, C-contiguous and aligned, with matching shapes, and
cyrnn's own caches. Everything else comes here: any array-like, layout or dtype
mix, reference caches, and every error message (SPEC §3). Each function below
returns exactly what the public function of the same name returns.

Shapes follow the notebook (SPEC §2): x is (n_x, m, T_x) with time last,
states are (n_a, m), predictions (n_y, m) per step. See cyrnn/_caches.py for
the structure of the caches.
"""
from collections.abc import Sequence

import numpy as np

from . import _lstm, _pool, _rnn
from ._caches import LSTMStepCaches, RNNStepCaches
from ._parallel import (check_cache_flag, chunking, concurrent_use, resolve_threads,
                        run_chunks)
from ._validation import (as_array, check_blas_sizes, check_mapping, check_ndim,
                          check_shape, compute_dtype, contiguous, get_parameter,
                          strided)

_RNN_PARAMETERS = (
    ("Wax", "input-to-hidden weights, shape (n_a, n_x)"),
    ("Waa", "hidden-to-hidden weights, shape (n_a, n_a)"),
    ("Wya", "hidden-to-output weights, shape (n_y, n_a)"),
    ("ba", "hidden bias, shape (n_a, 1)"),
    ("by", "output bias, shape (n_y, 1)"),
)
_GATES = "fico"  # stacking order of the LSTM gates: forget, update, candidate, output
_LSTM_PARAMETERS = tuple(
    [("W" + g, f"{name} gate weights, shape (n_a, n_a + n_x)")
     for g, name in zip(_GATES, ("forget", "update", "candidate", "output"))]
    + [("b" + g, f"{name} gate bias, shape (n_a, 1)")
       for g, name in zip(_GATES, ("forget", "update", "candidate", "output"))]
    + [("Wy", "hidden-to-output weights, shape (n_y, n_a)"),
       ("by", "output bias, shape (n_y, 1)")])


# ---------------------------------------------------------------- activations

def activation_input(x, min_ndim):
    """x as a C-contiguous float32/float64 array of at least min_ndim dimensions."""
    x = as_array("x", x)
    if x.ndim < min_ndim:
        raise ValueError("x has shape (); expected at least 1 dimension")
    return contiguous(x, compute_dtype((x,)))


# ---------------------------------------------------------------- RNN

def _rnn_parameters(parameters):
    check_mapping(parameters)
    return {key: get_parameter(parameters, key, what) for key, what in _RNN_PARAMETERS}


def _check_rnn_parameters(p, n_x, n_a):
    """Check the RNN parameter shapes against n_x, n_a; return n_y."""
    check_shape("parameters['Wax']", p["Wax"], ("n_a", "n_x"), (n_a, n_x))
    check_shape("parameters['Waa']", p["Waa"], ("n_a", "n_a"), (n_a, n_a))
    check_ndim("parameters['Wya']", p["Wya"], ("n_y", "n_a"))
    n_y = p["Wya"].shape[0]
    check_shape("parameters['Wya']", p["Wya"], ("n_y", "n_a"), (n_y, n_a))
    check_shape("parameters['ba']", p["ba"], ("n_a", "1"), (n_a, 1))
    check_shape("parameters['by']", p["by"], ("n_y", "1"), (n_y, 1))
    return n_y


def _rnn_forward_inputs(a_prev_name, x, a_prev, parameters):
    """Check an RNN forward call on x (n_x, m, T) or xt (n_x, m); return the
    compute dtype and the kernel-ready parameters (Wax, Waa, Wya, ba, by)."""
    p = _rnn_parameters(parameters)
    n_x, m = x.shape[:2]
    check_ndim(a_prev_name, a_prev, ("n_a", "m"))
    n_a = a_prev.shape[0]
    check_shape(a_prev_name, a_prev, ("n_a", "m"), (n_a, m))
    n_y = _check_rnn_parameters(p, n_x, n_a)
    check_blas_sizes(m * (x.shape[2] if x.ndim == 3 else 1), n_x, n_a, n_y)
    dtype = compute_dtype((x, a_prev, *p.values()))
    return dtype, tuple(contiguous(p[k], dtype) for k in ("Wax", "Waa", "Wya", "ba", "by"))


def rnn_cell_forward(xt, a_prev, parameters):
    xt_in, a_prev_in = as_array("xt", xt), as_array("a_prev", a_prev)
    check_ndim("xt", xt_in, ("n_x", "m"))
    dtype, weights = _rnn_forward_inputs("a_prev", xt_in, a_prev_in, parameters)
    a_next, yt_pred = _rnn.cell_forward(contiguous(xt_in, dtype), contiguous(a_prev_in, dtype),
                                        *weights)
    return a_next, yt_pred, (a_next, a_prev, xt, parameters)


def rnn_forward(x, a0, parameters, *, cache=True, n_threads=1):
    if cache is not True or n_threads != 1:
        return _rnn_forward_chunked(x, a0, parameters, cache, n_threads)
    x, a0 = as_array("x", x), as_array("a0", a0)
    check_ndim("x", x, ("n_x", "m", "T_x"))
    dtype, weights = _rnn_forward_inputs("a0", x, a0, parameters)
    a0 = contiguous(a0, dtype)
    a, y, A, X = _rnn.forward(strided(x, dtype), a0, *weights)
    return a, y, (RNNStepCaches(A, a0, X, x, parameters, weights[0], weights[1]), x)


def _read_only(*buffers):
    """Freeze buffers made here that become caches (views of user arrays excepted)."""
    for b in buffers:
        if b.base is None:
            b.flags.writeable = False


def _rnn_forward_chunked(x, a0, parameters, cache, n_threads):
    """rnn_forward for cache=False or n_threads > 1: batch chunks, see _parallel."""
    check_cache_flag(cache)
    n_threads = resolve_threads(n_threads)
    x, a0 = as_array("x", x), as_array("a0", a0)
    check_ndim("x", x, ("n_x", "m", "T_x"))
    dtype, weights = _rnn_forward_inputs("a0", x, a0, parameters)
    a0 = contiguous(a0, dtype)
    xs = strided(x, dtype)
    n_x, m, T = x.shape
    n_a, n_y = a0.shape[0], weights[2].shape[0]
    a = _pool.empty((n_a, m, T), dtype)
    y = _pool.empty((n_y, m, T), dtype)
    A = _pool.empty((n_a, T, m), dtype) if cache else None
    chunk, n_chunks = chunking(m)
    with concurrent_use(n_a * m * T if n_threads == 1 else 0):
        run_chunks(lambda first, last: _rnn.forward_chunks(xs, a0, *weights, a, y, A, chunk,
                                                           first, last),
                   n_chunks, n_threads)
    if not cache:
        return a, y, None
    X = np.ascontiguousarray(xs.transpose(0, 2, 1))
    _read_only(A, X)
    return a, y, (RNNStepCaches(A, a0, X, x, parameters, weights[0], weights[1]), x)


def _unpack_step(cache, length, where, names):
    if not isinstance(cache, (tuple, list)) or len(cache) != length:
        got = f"a {type(cache).__name__} of length {len(cache)}" if isinstance(
            cache, (tuple, list)) else f"a {type(cache).__name__}"
        raise ValueError(f"{where} must be a tuple of {length} ({', '.join(names)}); got {got}")
    return cache


_RNN_CACHE_NAMES = ("a_next", "a_prev", "xt", "parameters")


def _rnn_step_arrays(cache, where, n_a=None, m=None):
    """(a_next, a_prev, xt, parameters) of one step cache, checked."""
    a_next, a_prev, xt, parameters = _unpack_step(cache, 4, where, _RNN_CACHE_NAMES)
    a_next = as_array(f"{where}[0] (a_next)", a_next)
    check_ndim(f"{where}[0] (a_next)", a_next, ("n_a", "m"))
    if n_a is None:
        n_a, m = a_next.shape
    check_shape(f"{where}[0] (a_next)", a_next, ("n_a", "m"), (n_a, m))
    a_prev = as_array(f"{where}[1] (a_prev)", a_prev)
    check_shape(f"{where}[1] (a_prev)", a_prev, ("n_a", "m"), (n_a, m))
    xt = as_array(f"{where}[2] (xt)", xt)
    check_ndim(f"{where}[2] (xt)", xt, ("n_x", "m"))
    check_shape(f"{where}[2] (xt)", xt, ("n_x", "m"), (xt.shape[0], m))
    return a_next, a_prev, xt, parameters


def _rnn_gradient_weights(parameters, n_x, n_a):
    p = _rnn_parameters(parameters)
    check_shape("parameters['Wax']", p["Wax"], ("n_a", "n_x"), (n_a, n_x))
    check_shape("parameters['Waa']", p["Waa"], ("n_a", "n_a"), (n_a, n_a))
    return p["Wax"], p["Waa"]


def rnn_cell_backward(da_next, cache):
    da_next = as_array("da_next", da_next)
    a_next, a_prev, xt, parameters = _rnn_step_arrays(cache, "cache")
    n_a, m = a_next.shape
    n_x = xt.shape[0]
    check_shape("da_next", da_next, ("n_a", "m"), (n_a, m))
    Wax, Waa = _rnn_gradient_weights(parameters, n_x, n_a)
    check_blas_sizes(m, n_x, n_a)
    dtype = compute_dtype((da_next, a_next, a_prev, xt, Wax, Waa))
    return _rnn.cell_backward(*(contiguous(v, dtype) for v in
                                (da_next, a_next, a_prev, xt, Wax, Waa)))


def _split_caches(caches, kind):
    if not isinstance(caches, (tuple, list)) or len(caches) != 2:
        raise ValueError(
            f"caches must be the (steps, x) pair returned by {kind}_forward; got "
            + (f"a {type(caches).__name__} of length {len(caches)}"
               if isinstance(caches, (tuple, list)) else f"a {type(caches).__name__}"))
    steps, x = caches
    if not isinstance(steps, Sequence):
        raise ValueError(f"caches[0] must be the sequence of step caches from "
                         f"{kind}_forward; got a {type(steps).__name__}")
    return steps, x


def _check_da(da, n_steps, n_a, m):
    check_ndim("da", da, ("n_a", "m", "T_x"))
    T_da = da.shape[2]
    check_shape("da", da, ("n_a", "m", "T_x"), (n_a, m, T_da))
    if T_da > n_steps:
        raise ValueError(
            f"da has {T_da} time steps but caches hold only {n_steps}; "
            f"da must have shape (n_a, m, T) with T <= {n_steps}")
    return T_da


def rnn_backward(da, caches):
    da = as_array("da", da)
    steps, x = _split_caches(caches, "rnn")
    if type(steps) is RNNStepCaches:
        n_a, T, m = steps.A.shape
        T_da = _check_da(da, T, n_a, m)
        A, a0, X, Wax, Waa = steps.A, steps.a0, steps.X, steps.Wax, steps.Waa
    else:
        if len(steps) == 0:
            raise ValueError("caches[0] is empty; it needs one step cache per time step")
        a1, a0, x1, parameters = _rnn_step_arrays(steps[0], "caches[0][0]")
        n_a, m = a1.shape
        n_x = x1.shape[0]
        T_da = _check_da(da, len(steps), n_a, m)
        Wax, Waa = _rnn_gradient_weights(parameters, n_x, n_a)
        step_arrays = [_rnn_step_arrays(steps[t], f"caches[0][{t}]", n_a, m)
                       for t in range(T_da)]
        A = np.stack([s[0] for s in step_arrays], axis=1) if T_da else np.zeros((n_a, 0, m))
        X = np.stack([s[2] for s in step_arrays], axis=1) if T_da else np.zeros((n_x, 0, m))
    check_blas_sizes(T_da * m, n_a, X.shape[0])
    dtype = compute_dtype((da, A, a0, X, Wax, Waa))
    return _rnn.backward(strided(da, dtype), *(contiguous(v, dtype) for v in (A, a0, X, Wax, Waa)))


# ---------------------------------------------------------------- LSTM

def _lstm_parameters(parameters):
    check_mapping(parameters)
    return {key: get_parameter(parameters, key, what) for key, what in _LSTM_PARAMETERS}


def _check_lstm_gate_parameters(p, n_x, n_a):
    for g in _GATES:
        check_shape(f"parameters['W{g}']", p["W" + g], ("n_a", "n_a + n_x"), (n_a, n_a + n_x))
        check_shape(f"parameters['b{g}']", p["b" + g], ("n_a", "1"), (n_a, 1))


def _lstm_forward_inputs(a_prev_name, x, a_prev, c_prev_name, c_prev, parameters):
    """Check an LSTM forward call on x (n_x, m, T) or xt (n_x, m); return the
    compute dtype, kernel-ready (weights, biases, Wy, by), a_prev and c_prev."""
    p = _lstm_parameters(parameters)
    n_x, m = x.shape[:2]
    check_ndim(a_prev_name, a_prev, ("n_a", "m"))
    n_a = a_prev.shape[0]
    check_shape(a_prev_name, a_prev, ("n_a", "m"), (n_a, m))
    if c_prev is not None:
        check_shape(c_prev_name, c_prev, ("n_a", "m"), (n_a, m))
    _check_lstm_gate_parameters(p, n_x, n_a)
    check_ndim("parameters['Wy']", p["Wy"], ("n_y", "n_a"))
    n_y = p["Wy"].shape[0]
    check_shape("parameters['Wy']", p["Wy"], ("n_y", "n_a"), (n_y, n_a))
    check_shape("parameters['by']", p["by"], ("n_y", "1"), (n_y, 1))
    check_blas_sizes(m * (x.shape[2] if x.ndim == 3 else 1), n_x, 4 * n_a + n_x, n_y)
    inputs = (x, a_prev, *p.values()) + (() if c_prev is None else (c_prev,))
    dtype = compute_dtype(inputs)
    weights = tuple(contiguous(p["W" + g], dtype) for g in _GATES)
    biases = tuple(contiguous(p["b" + g], dtype) for g in _GATES)
    return (dtype, (weights, biases, contiguous(p["Wy"], dtype), contiguous(p["by"], dtype)),
            contiguous(a_prev, dtype), None if c_prev is None else contiguous(c_prev, dtype))


def lstm_cell_forward(xt, a_prev, c_prev, parameters):
    xt_in, a_in, c_in = as_array("xt", xt), as_array("a_prev", a_prev), as_array("c_prev", c_prev)
    check_ndim("xt", xt_in, ("n_x", "m"))
    check_ndim("c_prev", c_in, ("n_a", "m"))
    dtype, kernel_parameters, a_in, c_in = _lstm_forward_inputs(
        "a_prev", xt_in, a_in, "c_prev", c_in, parameters)
    a_next, c_next, yt_pred, (ft, it, cct, ot) = _lstm.cell_forward(
        contiguous(xt_in, dtype), a_in, c_in, *kernel_parameters)
    return a_next, c_next, yt_pred, (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt,
                                     parameters)


def lstm_forward(x, a0, parameters, *, c0=None, cache=True, n_threads=1):
    if cache is not True or n_threads != 1:
        return _lstm_forward_chunked(x, a0, parameters, c0, cache, n_threads)
    x, xs, a0, c0, W, b, Wy, by = _lstm_sequence_inputs(x, a0, c0, parameters)
    a, y, c, A, C, G, X = _lstm.forward(xs, a0, c0, W, b, Wy, by)
    return a, y, c, (LSTMStepCaches(A, C, G, a0, c0, X, x, parameters, W), x)


def _lstm_sequence_inputs(x, a0, c0, parameters):
    """Validated lstm_forward inputs: (x, x in the compute dtype, a0, c0, W, b, Wy, by)."""
    x, a0 = as_array("x", x), as_array("a0", a0)
    check_ndim("x", x, ("n_x", "m", "T_x"))
    if c0 is not None:
        c0 = as_array("c0", c0)
        check_ndim("c0", c0, ("n_a", "m"))
    dtype, (weights, biases, Wy, by), a0, c0 = _lstm_forward_inputs(
        "a0", x, a0, "c0", c0, parameters)
    W, b = _lstm.stack_parameters(weights, biases)
    return x, strided(x, dtype), a0, c0, W, b, Wy, by


def _lstm_forward_chunked(x, a0, parameters, c0, cache, n_threads):
    """lstm_forward for cache=False or n_threads > 1: batch chunks, see _parallel."""
    check_cache_flag(cache)
    n_threads = resolve_threads(n_threads)
    x, xs, a0, c0, W, b, Wy, by = _lstm_sequence_inputs(x, a0, c0, parameters)
    dtype = xs.dtype
    n_x, m, T = x.shape
    n_a, n_y = a0.shape[0], Wy.shape[0]
    a, c = _pool.empty((n_a, m, T), dtype), _pool.empty((n_a, m, T), dtype)
    y = _pool.empty((n_y, m, T), dtype)
    G, A, C = ((_pool.empty((4 * n_a, T, m), dtype), _pool.empty((n_a, T, m), dtype),
                _pool.empty((n_a, T, m), dtype)) if cache else (None, None, None))
    chunk, n_chunks = chunking(m)
    with concurrent_use(n_a * m * T if n_threads == 1 else 0):
        run_chunks(lambda first, last: _lstm.forward_chunks(xs, a0, c0, W, b, Wy, by, a, c, y,
                                                            G, A, C, chunk, first, last),
                   n_chunks, n_threads)
    if not cache:
        return a, y, c, None
    X = np.ascontiguousarray(xs.transpose(0, 2, 1))
    _read_only(A, C, G, X)
    return a, y, c, (LSTMStepCaches(A, C, G, a0, c0, X, x, parameters, W), x)


_LSTM_CACHE_NAMES = ("a_next", "c_next", "a_prev", "c_prev", "ft", "it", "cct", "ot",
                     "xt", "parameters")


def _lstm_step_arrays(cache, where, n_a=None, m=None):
    """The 10 entries of one LSTM step cache, arrays checked."""
    entries = list(_unpack_step(cache, 10, where, _LSTM_CACHE_NAMES))
    first = as_array(f"{where}[0] (a_next)", entries[0])
    check_ndim(f"{where}[0] (a_next)", first, ("n_a", "m"))
    if n_a is None:
        n_a, m = first.shape
    for k, name in enumerate(_LSTM_CACHE_NAMES[:8]):
        arr = as_array(f"{where}[{k}] ({name})", entries[k])
        check_shape(f"{where}[{k}] ({name})", arr, ("n_a", "m"), (n_a, m))
        entries[k] = arr
    xt = as_array(f"{where}[8] (xt)", entries[8])
    check_ndim(f"{where}[8] (xt)", xt, ("n_x", "m"))
    check_shape(f"{where}[8] (xt)", xt, ("n_x", "m"), (xt.shape[0], m))
    entries[8] = xt
    return entries


def _lstm_gradient_weights(parameters, n_x, n_a):
    p = _lstm_parameters(parameters)
    _check_lstm_gate_parameters(p, n_x, n_a)
    return [p["W" + g] for g in _GATES]


def _stack_weight_list(weights, dtype):
    return np.concatenate([contiguous(w, dtype) for w in weights], axis=0)


def lstm_cell_backward(da_next, dc_next, cache):
    da_next, dc_next = as_array("da_next", da_next), as_array("dc_next", dc_next)
    (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt,
     parameters) = _lstm_step_arrays(cache, "cache")
    n_a, m = a_next.shape
    n_x = xt.shape[0]
    check_shape("da_next", da_next, ("n_a", "m"), (n_a, m))
    check_shape("dc_next", dc_next, ("n_a", "m"), (n_a, m))
    weights = _lstm_gradient_weights(parameters, n_x, n_a)
    check_blas_sizes(m, n_x, 4 * n_a + n_x)
    dtype = compute_dtype((da_next, dc_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt,
                           *weights))
    return _lstm.cell_backward(*(contiguous(v, dtype) for v in (da_next, dc_next, c_next,
                                                               a_prev, c_prev)),
                               [contiguous(g, dtype) for g in (ft, it, cct, ot)],
                               contiguous(xt, dtype), [contiguous(w, dtype) for w in weights])


def lstm_backward(da, caches):
    da = as_array("da", da)
    steps, x = _split_caches(caches, "lstm")
    if type(steps) is LSTMStepCaches:
        n_a, T, m = steps.A.shape
        T_da = _check_da(da, T, n_a, m)
        G, A, C, a0, c0, X, W = (steps.G, steps.A, steps.C, steps.a0, steps.c0,
                                 steps.X, steps.W)
    else:
        if len(steps) == 0:
            raise ValueError("caches[0] is empty; it needs one step cache per time step")
        first = _lstm_step_arrays(steps[0], "caches[0][0]")
        n_a, m = first[0].shape
        n_x = first[8].shape[0]
        T_da = _check_da(da, len(steps), n_a, m)
        weights = _lstm_gradient_weights(first[9], n_x, n_a)
        step_arrays = [first] + [_lstm_step_arrays(steps[t], f"caches[0][{t}]", n_a, m)
                                 for t in range(1, T_da)]
        a0, c0 = first[2], first[3]

        def stacked(k, rows):
            if T_da == 0:
                return np.zeros((rows, 0, m))
            return np.stack([s[k] for s in step_arrays], axis=1)

        A, C = stacked(0, n_a), stacked(1, n_a)
        G = np.concatenate([stacked(k, n_a) for k in (4, 5, 6, 7)], axis=0)
        X = stacked(8, n_x)
        dtype = compute_dtype([da, A, C, G, X, a0, c0, *weights])
        W = _stack_weight_list(weights, dtype)
    check_blas_sizes(T_da * m, 4 * n_a + X.shape[0])
    dtype = compute_dtype([a for a in (da, G, A, C, a0, c0, X, W) if a is not None])
    return _lstm.backward(strided(da, dtype), *(contiguous(v, dtype) for v in (G, A, C, a0)),
                          None if c0 is None else contiguous(c0, dtype),
                          contiguous(X, dtype), contiguous(W, dtype))
