"""Input checks shared by the public functions.

Every public function validates all of its inputs here, once, before any
kernel runs, and hands the kernels arrays of one dtype with the layout they
need. Errors name the argument, what it got and what it needs.
"""
import numpy as np

# SciPy's cython_blas takes 32-bit sizes; bigger problems are refused up front.
BLAS_INT_MAX = 2**31 - 1

FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)


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
    """ValueError unless arr.shape == dims, described as the symbols of SPEC."""
    if arr.shape != dims:
        raise ValueError(
            f"{name} has shape {arr.shape}; expected ({', '.join(symbols)}) = {tuple(dims)}")


def get_parameter(parameters, key, what):
    """parameters[key] as an array, with a KeyError that says what is missing."""
    try:
        value = parameters[key]
    except KeyError:
        have = ", ".join(repr(k) for k in list(parameters)[:20])
        raise KeyError(
            f"parameters is missing {key!r} ({what}); it has keys [{have}]") from None
    except TypeError:
        raise TypeError(
            f"parameters must be a dict of arrays; got {type(parameters).__name__}") from None
    return as_array(f"parameters[{key!r}]", value)


def check_mapping(parameters):
    if not hasattr(parameters, "__getitem__") or not hasattr(parameters, "keys"):
        raise TypeError(
            f"parameters must be a dict of arrays; got {type(parameters).__name__}")


def check_blas_sizes(*sizes):
    """MemoryError when a size the kernels pass to BLAS exceeds its 32-bit range."""
    for size in sizes:
        if size > BLAS_INT_MAX:
            raise MemoryError(
                f"problem too large: a matrix dimension of {size} exceeds the "
                f"32-bit BLAS index range ({BLAS_INT_MAX})")


def contiguous(arr, dtype):
    """C-contiguous `arr` in `dtype`; copies only when needed."""
    if arr.dtype is dtype or arr.dtype == dtype:
        if arr.flags.c_contiguous and arr.flags.aligned:
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
