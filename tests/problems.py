"""Random problems and helpers shared by the tests."""
import contextlib
import functools

import numpy as np

GATES = "fico"


def rnn_parameters(rng, n_x, n_a, n_y, dtype=np.float64, scale=1.0):
    def draw(*shape):
        return (scale * rng.standard_normal(shape)).astype(dtype)
    return {"Wax": draw(n_a, n_x), "Waa": draw(n_a, n_a), "Wya": draw(n_y, n_a),
            "ba": draw(n_a, 1), "by": draw(n_y, 1)}


def lstm_parameters(rng, n_x, n_a, n_y, dtype=np.float64, scale=1.0):
    def draw(*shape):
        return (scale * rng.standard_normal(shape)).astype(dtype)
    p = {}
    for g in GATES:
        p["W" + g] = draw(n_a, n_a + n_x)
        p["b" + g] = draw(n_a, 1)
    p["Wy"] = draw(n_y, n_a)
    p["by"] = draw(n_y, 1)
    return p


def gru_parameters(rng, n_x, n_a, n_y, dtype=np.float64, scale=1.0, reset_before=False):
    """A GRU's parameters (docs/contract.md §5): reset-after keys by default, "Wc"/"bc"
    for the reset-before variant."""
    def draw(*shape):
        return (scale * rng.standard_normal(shape)).astype(dtype)
    p = {"Wr": draw(n_a, n_a + n_x), "br": draw(n_a, 1),
         "Wu": draw(n_a, n_a + n_x), "bu": draw(n_a, 1)}
    if reset_before:
        p.update(Wc=draw(n_a, n_a + n_x), bc=draw(n_a, 1))
    else:
        p.update(Wcx=draw(n_a, n_x), Wca=draw(n_a, n_a), bcx=draw(n_a, 1), bca=draw(n_a, 1))
    p["Wy"] = draw(n_y, n_a)
    p["by"] = draw(n_y, 1)
    return p


def sequence(rng, n_x, n_a, m, T, dtype=np.float64, scale=1.0):
    x = (scale * rng.standard_normal((n_x, m, T))).astype(dtype)
    a0 = rng.standard_normal((n_a, m)).astype(dtype)
    return x, a0


# every cell kind the engine runs: the reset-before GRU is the GRU with "Wc"/"bc"
PARAMETERS = {"rnn": rnn_parameters, "lstm": lstm_parameters, "gru": gru_parameters,
              "gru_reset_before": functools.partial(gru_parameters, reset_before=True)}


def problem(kind, n_x, n_a, n_y, m, T, seed=0, dtype=np.float64):
    """(x, a0, parameters, rng) of a random problem for a cell kind (PARAMETERS)."""
    rng = np.random.default_rng(seed)
    x, a0 = sequence(rng, n_x, n_a, m, T, dtype)
    return x, a0, PARAMETERS[kind](rng, n_x, n_a, n_y, dtype, scale=0.5), rng


def assert_close(actual, expected, rtol=1e-10, atol=1e-12, what=""):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def assert_same_gradients(actual, expected, **tol):
    assert list(actual) == list(expected)
    for key in expected:
        assert_close(actual[key], expected[key], what=key, **tol)


def fingerprint(obj):
    """Bytes, dtype, shape, strides and flags of every array in obj (nested)."""
    if isinstance(obj, np.ndarray):
        data = obj.tobytes() if obj.size < 10**6 else obj.__array_interface__["data"]
        return (data, obj.dtype.str, obj.shape, obj.strides, obj.flags.writeable)
    if isinstance(obj, dict):
        return tuple((k, fingerprint(v)) for k, v in obj.items())
    if isinstance(obj, (tuple, list)):
        return tuple(fingerprint(v) for v in obj)
    return obj


def run_python(code, **kwargs):
    """sys.executable -c code in a subprocess; skips the test where this
    interpreter cannot be started as a program (an emulated one without binfmt,
    as in CI's aarch64 stage under QEMU)."""
    import subprocess
    import sys

    import pytest

    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              **kwargs)
    except OSError as exc:
        pytest.skip(f"cannot start {sys.executable} as a subprocess here: {exc}")


def require_peer(module, why):
    """Import a peer framework the tests compare against (test-only), or skip
    the test saying what is missing. With CYRNN_REQUIRE_PEERS=1 (CI) a
    missing peer fails the test instead: CI must never skip these silently."""
    import importlib
    import os

    import pytest

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} is not installed ({exc}): {why}; `pip install .[peers]`"
        if os.environ.get("CYRNN_REQUIRE_PEERS") == "1":
            pytest.fail(message + " (CYRNN_REQUIRE_PEERS=1)")
        pytest.skip(message)


def numerical_gradient(loss, array, h=1e-6):
    """Central finite differences of loss() with respect to every entry of
    array (changed in place and restored)."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        old = array[index]
        array[index] = old + h
        up = loss()
        array[index] = old - h
        down = loss()
        array[index] = old
        grad[index] = (up - down) / (2 * h)
    return grad


@contextlib.contextmanager
def engine_settings(plan=None, inference_mode=None, **limits):
    """Within the block, the engine's settings: the forward plan pinned (a name
    of cyrnn._engine.FORWARD_PLANS, or "auto"), the wide inference mode pinned
    ("states", "scratch" or "auto") and the memory modes' size limits
    (scratch_bytes, cached_output_bytes, copied_min_bytes: 0 or inf force a
    mode); restored after it."""
    from cyrnn import _engine
    old_plan = _engine.set_forward_plan(plan) if plan is not None else None
    old_mode = (_engine.set_inference_mode(inference_mode) if inference_mode is not None
                else None)
    old_limits = _engine._set_limits(**limits)
    try:
        yield
    finally:
        _engine._set_limits(**old_limits)
        if old_plan is not None:
            _engine.set_forward_plan(old_plan)
        if old_mode is not None:
            _engine.set_inference_mode(old_mode)


def path_count(name):
    """How many calls so far took an engine path: "split_runs",
    "state_buffer_runs", "stacking_copies" or "weight_packings"."""
    from cyrnn import _engine
    return _engine._path_counts()[name]


def check_gradient(analytic, numeric, what):
    """An analytic gradient against its finite-difference estimate."""
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7, err_msg=what)


def assert_environment_setting(variable, setter, good, bad, message):
    """An engine setting read from the environment at import: a bad value stops
    the import with `message`; a good one is what the engine's `setter`
    reports as the mode it replaces."""
    import os

    out = run_python("import cyrnn", env={**os.environ, variable: bad})
    assert out.returncode != 0 and message in out.stderr, out.stderr
    out = run_python(f"from cyrnn import _engine; print(_engine.{setter}('auto'))",
                     env={**os.environ, variable: good})
    assert out.stdout.strip() == good, out.stderr
