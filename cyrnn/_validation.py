"""The validating path: every check and conversion of the public functions.

The engine's entry points (src/_engine.pyx) first try a fast check that takes
only kernel-ready inputs (exact ndarrays of one float dtype, C-contiguous and
aligned, matching shapes, cyrnn's own caches). Everything else comes here and
leaves either converted, kernel-ready arrays or an exception that names the
argument, what it got and what it needs (docs/contract.md §3). Both sides read the same
parameter schema (cyrnn/_cells.py). Nothing here imports the engine.

Shapes follow the notebook (docs/contract.md §2): x is (n_x, m, T_x) with time last,
states are (n_a, m), predictions (n_y, m) per step.
"""
from collections.abc import Sequence

import numpy as np

from ._cells import N_A, N_A_PLUS_N_X, N_X, N_Y, ONE, SYMBOLS

# SciPy's cython_blas takes 32-bit sizes (LP64); bigger problems are refused up
# front here and in the engine's fast checks.
BLAS_INT_MAX = 2**31 - 1

FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)


# ---------------------------------------------------------------- arrays

def as_array(name, value):
    """`value` as an ndarray of a real numeric dtype, else TypeError naming it."""
    if type(value) is not np.ndarray:
        if value is None:
            raise TypeError(f"{name} is None; expected a NumPy array")
        if isinstance(value, np.ndarray):
            value = value.view(np.ndarray)  # subclasses (np.matrix, masked) lose their rules
        else:
            try:
                value = np.asarray(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name} could not be converted to an array: {exc}") from None
    kind = value.dtype.kind
    if kind not in "fiu":
        raise TypeError(
            f"{name} has dtype {value.dtype}; expected a real floating-point "
            f"(or integer) array")
    return value


def compute_dtype(arrays):
    """float32 when every input is float32 (or float16), else float64.

    This is NumPy's promotion rule restricted to the two dtypes the kernels
    run in: any float64 or integer input makes the whole call float64.
    """
    for a in arrays:
        if a is None:
            continue
        dt = a.dtype
        if dt.kind != "f" or dt.itemsize > 4:
            return FLOAT64
    return FLOAT32


def check_ndim(name, arr, symbols):
    if arr.ndim != len(symbols):
        raise ValueError(
            f"{name} has shape {arr.shape}; expected {len(symbols)} dimensions "
            f"({', '.join(symbols)})")


def check_shape(name, arr, symbols, dims):
    """ValueError unless arr.shape == dims, described by their symbols (docs/contract.md §2)."""
    if arr.shape != tuple(dims):
        raise ValueError(
            f"{name} has shape {arr.shape}; expected ({', '.join(symbols)}) = {tuple(dims)}")


def check_blas_sizes(*sizes):
    """MemoryError when a size the kernels pass to BLAS exceeds its 32-bit range."""
    for size in sizes:
        if size > BLAS_INT_MAX:
            raise MemoryError(
                f"problem too large: a matrix dimension of {size} exceeds the "
                f"32-bit BLAS index range ({BLAS_INT_MAX})")


def contiguous(arr, dtype):
    """C-contiguous `arr` in `dtype`; copies only when needed."""
    if arr.dtype == dtype and arr.flags.c_contiguous and arr.flags.aligned:
        return arr
    return np.ascontiguousarray(arr, dtype=dtype)


def strided(arr, dtype):
    """`arr` in `dtype` with element-aligned strides (any order); copies only
    when needed. The kernels read such arrays with their own strides."""
    if arr.dtype != dtype:
        return np.ascontiguousarray(arr, dtype=dtype)
    if not arr.flags.aligned or any(s % arr.itemsize for s in arr.strides):
        return np.ascontiguousarray(arr)
    return arr


def activation_input(x, min_ndim):
    """x as a C-contiguous float32/float64 array of at least min_ndim dimensions."""
    x = as_array("x", x)
    if x.ndim < min_ndim:
        raise ValueError("x has shape (); expected at least 1 dimension")
    return contiguous(x, compute_dtype((x,)))


# ---------------------------------------------------------------- flags

def check_cache_flag(cache):
    if not isinstance(cache, bool):
        raise TypeError(f"cache must be True or False; got {cache!r}")


# ---------------------------------------------------------------- parameters

def check_mapping(parameters):
    if not hasattr(parameters, "__getitem__") or not hasattr(parameters, "keys"):
        raise TypeError(
            f"parameters must be a dict of arrays; got {type(parameters).__name__}")


def _symbols(rows, cols):
    return SYMBOLS[rows], SYMBOLS[cols]


def _entries(cell, keys):
    """The schema entries of `keys` (None: all), in schema order."""
    return [e for e in cell.parameters if keys is None or e[0] in keys]


def _parameter_arrays(cell, parameters, keys=None):
    """{key: array} of the cell's schema (or of `keys`), with KeyError/TypeError
    naming a bad one."""
    check_mapping(parameters)
    p = {}
    for key, rows, cols, what in _entries(cell, keys):
        symbols = _symbols(rows, cols)
        try:
            value = parameters[key]
        except KeyError:
            have = ", ".join(repr(k) for k in list(parameters)[:20])
            raise KeyError(
                f"parameters is missing {key!r} ({what}, shape ({', '.join(symbols)})); "
                f"it has keys [{have}]") from None
        p[key] = as_array(f"parameters[{key!r}]", value)
    return p


def _mismatch(cell, p, dims):
    """The first (key, expected shape) the parameters break under dims, or None.
    Fills dims[N_Y] from the first n_y entry."""
    for key, rows, cols, _ in _entries(cell, p):
        shape = p[key].shape
        if dims[N_Y] is None and rows == N_Y:
            check_ndim(f"parameters[{key!r}]", p[key], _symbols(rows, cols))
            dims[N_Y] = shape[0]
        want = (dims[rows], dims[cols])
        if shape != want:
            return key, want
    return None


def _implied_sizes(cell, p):
    """(n_a, n_x) on which all the parameters agree, or None."""
    n_a = n_x = None
    if any(arr.ndim != 2 for arr in p.values()):
        return None
    for key, rows, cols, _ in _entries(cell, p):
        shape = p[key].shape
        if n_a is None and rows == N_A:
            n_a = shape[0]
        if n_x is None and n_a is not None and cols in (N_X, N_A_PLUS_N_X):
            n_x = shape[1] - (n_a if cols == N_A_PLUS_N_X else 0)
    if n_a is None or n_x is None or n_x < 0:
        return None
    dims = {ONE: 1, N_X: n_x, N_A: n_a, N_Y: None, N_A_PLUS_N_X: n_a + n_x}
    return None if _mismatch(cell, p, dims) else (n_a, n_x)


def check_parameters(cell, parameters, n_x, n_a, x_name="x", x_shape=None,
                     a_name="a0", a_shape=None, keys=None):
    """The cell's parameters (or those of `keys`: the backward functions need
    only the gate weights, as the reference's do) as arrays, checked against
    n_x and n_a; and n_y (None without an output-layer key).

    When the parameters agree among themselves on other sizes than those of
    the data (a transposed x, a wrong a0), the error names the data argument.
    """
    p = _parameter_arrays(cell, parameters, keys)
    dims = {ONE: 1, N_X: n_x, N_A: n_a, N_Y: None, N_A_PLUS_N_X: n_a + n_x}
    bad = _mismatch(cell, p, dims)
    if bad is not None:
        implied = _implied_sizes(cell, p)
        if implied is not None:
            implied_a, implied_x = implied
            if implied_x != n_x and x_shape is not None:
                raise ValueError(
                    f"{x_name} has shape {x_shape}; its first dimension n_x must be "
                    f"{implied_x}, the input size of the parameters")
            if implied_a != n_a and a_shape is not None:
                raise ValueError(
                    f"{a_name} has shape {a_shape}; its first dimension n_a must be "
                    f"{implied_a}, the hidden size of the parameters")
        key, want = bad
        rows, cols = next((r, c) for k, r, c, _ in _entries(cell, p) if k == key)
        check_shape(f"parameters[{key!r}]", p[key], _symbols(rows, cols), want)
    return p, dims[N_Y]


# ---------------------------------------------------------------- forward

def forward_inputs(cell, x, a_prev, c_prev, parameters, sequence):
    """Check a forward call (x (n_x, m, T) when `sequence`, else xt (n_x, m)).

    Returns (x, a_prev, c_prev, parameters) kernel-ready: one dtype, x with
    element-aligned strides (sequence) or C-contiguous (cell), the rest
    C-contiguous; parameters as {key: array}.
    """
    x_name, a_name, c_name = ("x", "a0", "c0") if sequence else ("xt", "a_prev", "c_prev")
    x, a_prev = as_array(x_name, x), as_array(a_name, a_prev)
    check_ndim(x_name, x, ("n_x", "m", "T_x") if sequence else ("n_x", "m"))
    n_x, m = x.shape[:2]
    check_ndim(a_name, a_prev, ("n_a", "m"))
    n_a = a_prev.shape[0]
    if cell.has_c and (c_prev is not None or not sequence):  # c0 is optional, c_prev not
        c_prev = as_array(c_name, c_prev)
        check_ndim(c_name, c_prev, ("n_a", "m"))
    p, n_y = check_parameters(cell, parameters, n_x, n_a, x_name, x.shape, a_name,
                              a_prev.shape)
    check_shape(a_name, a_prev, ("n_a", "m"), (n_a, m))
    if c_prev is not None:
        check_shape(c_name, c_prev, ("n_a", "m"), (n_a, m))
    T = x.shape[2] if sequence else 1
    check_blas_sizes(m * T, len(cell.blocks) * n_a + n_x, n_y)
    dtype = compute_dtype((x, a_prev, c_prev, *p.values()))
    p = {key: contiguous(arr, dtype) for key, arr in p.items()}
    x = strided(x, dtype) if sequence else contiguous(x, dtype)
    return (x, contiguous(a_prev, dtype),
            None if c_prev is None else contiguous(c_prev, dtype), p)


def check_lengths(lengths, m, T):
    """`lengths` (docs/contract.md §6) as a C-contiguous int64 array of shape (m,) with
    0 <= lengths[j] <= T, else TypeError/ValueError naming it."""
    arr = np.asarray(lengths)
    if arr.dtype == object or arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(
                arr == np.round(arr)):
            raise TypeError(f"lengths must be integers; got dtype {arr.dtype} (convert it with "
                            f".astype(int))")
        raise TypeError(f"lengths must be an array of integers of shape (m,) = ({m},); got "
                        f"{'dtype ' + str(arr.dtype) if arr.dtype != object else type(lengths).__name__}")
    if arr.shape != (m,):
        raise ValueError(f"lengths has shape {arr.shape}; expected (m,) = ({m},), one length "
                         f"per batch column")
    if arr.size:
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > T:
            bad = int(np.flatnonzero((arr < 0) | (arr > T))[0])
            raise ValueError(f"lengths[{bad}] = {int(arr[bad])} is out of range; every length "
                             f"must be in 0 .. T_x = {T}")
    # a copy: the engine freezes it and keeps it in the caches; the caller's stays as is
    return np.array(arr, dtype=np.int64)


# ---------------------------------------------------------------- caches

def _describe(value):
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__}"


def split_caches(caches, cell):
    """(steps, x, lengths) of forward caches: (steps, x), or (steps, x, lengths)
    from a call with lengths (docs/contract.md §6)."""
    if not isinstance(caches, (tuple, list)) or len(caches) not in (2, 3):
        raise ValueError(
            f"caches must be the (steps, x) pair (or (steps, x, lengths)) returned by "
            f"{cell.name}_forward; got " + _describe(caches))
    steps, x = caches[0], caches[1]
    if not isinstance(steps, Sequence):
        raise ValueError(f"caches[0] must be the sequence of step caches from "
                         f"{cell.name}_forward; got a {type(steps).__name__}")
    return steps, x, caches[2] if len(caches) == 3 else None


def _producer(cell, cache):
    """The hint ". These look like the caches of ..." naming the forward whose
    step caches have cache's length, when that is another cell's (else "")."""
    from ._cells import GRU, LSTM, RNN
    if not isinstance(cache, (tuple, list)):
        return ""
    for other in (RNN, LSTM, GRU):
        if other.name != cell.name and len(cache) == len(other.step_cache):
            return (f". These look like the caches of {other.name}_forward (its step caches "
                    f"hold {len(other.step_cache)}: {', '.join(other.step_cache)}); pass them "
                    f"to {other.name}_backward, or pass {cell.name}_backward the caches of "
                    f"{cell.name}_forward")
    return ""


def _unpack_step(cell, cache, where):
    names = cell.step_cache
    if not isinstance(cache, (tuple, list)) or len(cache) != len(names):
        raise ValueError(f"{where} must be a tuple of {len(names)} ({', '.join(names)}); "
                         f"got {_describe(cache)}{_producer(cell, cache)}")
    return cache


def step_arrays(cell, cache, where, n_a=None, m=None):
    """The entries of one step cache, arrays checked: every state-shaped entry
    (n_a, m), xt (n_x, m), parameters last."""
    names = cell.step_cache
    entries = list(_unpack_step(cell, cache, where))
    first = as_array(f"{where}[0] ({names[0]})", entries[0])
    check_ndim(f"{where}[0] ({names[0]})", first, ("n_a", "m"))
    if n_a is None:
        n_a, m = first.shape
    xt_index = names.index("xt")
    for k in range(xt_index):
        arr = as_array(f"{where}[{k}] ({names[k]})", entries[k])
        check_shape(f"{where}[{k}] ({names[k]})", arr, ("n_a", "m"), (n_a, m))
        entries[k] = arr
    xt = as_array(f"{where}[{xt_index}] (xt)", entries[xt_index])
    check_ndim(f"{where}[{xt_index}] (xt)", xt, ("n_x", "m"))
    check_shape(f"{where}[{xt_index}] (xt)", xt, ("n_x", "m"), (xt.shape[0], m))
    entries[xt_index] = xt
    return entries


def check_da(da, n_steps, n_a, m):
    check_ndim("da", da, ("n_a", "m", "T_x"))
    T_da = da.shape[2]
    check_shape("da", da, ("n_a", "m", "T_x"), (n_a, m, T_da))
    if T_da > n_steps:
        raise ValueError(
            f"da has {T_da} time steps but caches hold only {n_steps}; "
            f"da must have shape (n_a, m, T) with T <= {n_steps}")
    return T_da
