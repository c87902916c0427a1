"""Fuzzing the public API with valid and malformed calls (hypothesis).

Every call either matches cyrnn.reference (mutations that keep the call valid)
or raises ValueError/KeyError/TypeError/MemoryError (mutations that break it);
it never crashes, hangs, returns garbage or modifies its inputs.
CI runs 2,000 examples; the documented long run is
CYRNN_FUZZ_EXAMPLES=100000 python -m pytest test_fuzz.py.
"""
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cyrnn
import cyrnn.reference as ref
from problems import fingerprint, gru_parameters, lstm_parameters, rnn_parameters

ALLOWED = (ValueError, KeyError, TypeError, MemoryError)
FUNCTIONS = ("rnn_cell_forward", "rnn_forward", "rnn_cell_backward", "rnn_backward",
             "lstm_cell_forward", "lstm_forward", "lstm_cell_backward", "lstm_backward",
             "gru_cell_forward", "gru_forward", "gru_cell_backward", "gru_backward",
             "softmax", "sigmoid")
# Mutations that keep a call valid (result must match the reference) ...
VALID = ("none", "fortran", "strided", "readonly", "nan", "inf", "int_dtype", "extra_key",
         "zero_batch", "da_shorter", "reference_cache", "list_cache", "float32")
# ... and ones that make it invalid (it must raise an allowed error).
INVALID = ("rank", "off_by_one", "missing_key", "misspelled_key", "bad_dtype", "none_arg",
           "da_longer", "cache_tuple_length", "cache_truncated", "cache_not_tuple",
           "huge_broadcast")


def build_call(draw_int, rng, name):
    """(args builder) for a valid call of `name` on a small random problem."""
    n_x, n_a, n_y, m, T = (draw_int(1, 4), draw_int(1, 5), draw_int(1, 3), draw_int(1, 5),
                           draw_int(1, 4))
    x = rng.standard_normal((n_x, m, T))
    a0 = rng.standard_normal((n_a, m))
    if name.startswith("gru"):   # either variant
        p = gru_parameters(rng, n_x, n_a, n_y, reset_before=bool(rng.integers(2)))
    else:
        p = (lstm_parameters if name.startswith("lstm") else rnn_parameters)(rng, n_x, n_a, n_y)
    da = rng.standard_normal((n_a, m, T))
    return dict(n_x=n_x, n_a=n_a, n_y=n_y, m=m, T=T, x=x, a0=a0, c0=rng.standard_normal((n_a, m)),
                p=p, da=da, xt=np.ascontiguousarray(x[:, :, 0]),
                dn=np.ascontiguousarray(da[:, :, 0]), dc=rng.standard_normal((n_a, m)))


def run(module, name, c, cache_from=None):
    """Call module.name on the problem c (caches made by cache_from, default module)."""
    maker = cache_from or module
    if name == "softmax" or name == "sigmoid":
        return getattr(module, name)(c["x"])
    if name == "rnn_cell_forward":
        return module.rnn_cell_forward(c["xt"], c["a0"], c["p"])[:2]
    if name == "rnn_forward":
        return module.rnn_forward(c["x"], c["a0"], c["p"])[:2]
    if name == "lstm_cell_forward":
        return module.lstm_cell_forward(c["xt"], c["a0"], c["c0"], c["p"])[:3]
    if name == "lstm_forward":
        return module.lstm_forward(c["x"], c["a0"], c["p"])[:3]
    if name == "rnn_cell_backward":
        cache = c.get("cache") or maker.rnn_cell_forward(c["xt"], c["a0"], c["p"])[2]
        return module.rnn_cell_backward(c["dn"], cache)
    if name == "lstm_cell_backward":
        cache = c.get("cache") or maker.lstm_cell_forward(c["xt"], c["a0"], c["c0"], c["p"])[3]
        return module.lstm_cell_backward(c["dn"], c["dc"], cache)
    if name == "rnn_backward":
        caches = c.get("caches") or maker.rnn_forward(c["x"], c["a0"], c["p"])[2]
        return module.rnn_backward(c["da"], caches)
    if name == "gru_cell_forward":
        return module.gru_cell_forward(c["xt"], c["a0"], c["p"])[:2]
    if name == "gru_forward":
        return module.gru_forward(c["x"], c["a0"], c["p"])[:2]
    if name == "gru_cell_backward":
        cache = c.get("cache") or maker.gru_cell_forward(c["xt"], c["a0"], c["p"])[2]
        return module.gru_cell_backward(c["dn"], cache)
    if name == "gru_backward":
        caches = c.get("caches") or maker.gru_forward(c["x"], c["a0"], c["p"])[2]
        return module.gru_backward(c["da"], caches)
    caches = c.get("caches") or maker.lstm_forward(c["x"], c["a0"], c["p"])[3]
    return module.lstm_backward(c["da"], caches)


USES = {  # the arrays each call reads (backward ones through the forward that makes the cache)
    "softmax": ("x",), "sigmoid": ("x",),
    "rnn_cell_forward": ("xt", "a0"), "rnn_forward": ("x", "a0"),
    "lstm_cell_forward": ("xt", "a0", "c0"), "lstm_forward": ("x", "a0"),
    "rnn_cell_backward": ("dn", "xt", "a0"), "rnn_backward": ("da", "x", "a0"),
    "lstm_cell_backward": ("dn", "dc", "xt", "a0", "c0"), "lstm_backward": ("da", "x", "a0"),
    "gru_cell_forward": ("xt", "a0"), "gru_forward": ("x", "a0"),
    "gru_cell_backward": ("dn", "xt", "a0"), "gru_backward": ("da", "x", "a0"),
}


def mutate(c, name, mutation, rng):
    arrays = USES[name]
    target = arrays[int(rng.integers(len(arrays)))]
    pkey = sorted(c["p"])[int(rng.integers(len(c["p"])))]
    on_parameter = name not in ("softmax", "sigmoid") and bool(rng.integers(2))
    if mutation == "fortran":
        c[target] = np.asfortranarray(c[target])
    elif mutation == "strided":
        big = np.zeros(tuple(2 * s for s in c[target].shape))
        big[tuple(slice(None, None, 2) for _ in c[target].shape)] = c[target]
        c[target] = big[tuple(slice(None, None, 2) for _ in c[target].shape)]
    elif mutation == "readonly":
        c[target].flags.writeable = False
        c["p"][pkey].flags.writeable = False
    elif mutation in ("nan", "inf"):
        c[target].flat[int(rng.integers(c[target].size))] = np.nan if mutation == "nan" else -np.inf
    elif mutation == "int_dtype":
        c["p"][pkey] = np.round(c["p"][pkey] * 3).astype(np.int64)
    elif mutation == "extra_key":
        c["p"]["W_extra"] = "not an array"
    elif mutation == "zero_batch":
        for k in ("x", "a0", "c0", "da", "xt", "dn", "dc"):
            c[k] = c[k][:, :0]
    elif mutation == "da_shorter":
        c["da"] = c["da"][:, :, : max(1, c["T"] - 1)]
    elif mutation == "float32":
        for k in ("x", "a0", "c0", "da", "xt", "dn", "dc"):
            c[k] = c[k].astype(np.float32)
        c["p"] = {k: v.astype(np.float32) for k, v in c["p"].items()}
    elif mutation == "rank":
        c[target] = c[target][..., None]
    elif mutation == "off_by_one":
        if not on_parameter:
            c[target] = np.concatenate([c[target], c[target][:1]], axis=0)
        else:
            w = c["p"][pkey]
            c["p"][pkey] = np.concatenate([w, w[:, :1]], axis=1)
    elif mutation == "missing_key":
        del c["p"][pkey]
    elif mutation == "misspelled_key":
        c["p"][pkey.upper() + "_"] = c["p"].pop(pkey)
    elif mutation == "bad_dtype":
        kind = [np.complex128, bool, object, "U3"][int(rng.integers(4))]
        if not on_parameter:
            c[target] = c[target].astype(kind)
        else:
            c["p"][pkey] = c["p"][pkey].astype(kind)
    elif mutation == "none_arg":
        if not on_parameter:
            c[target] = None
        else:
            c["p"][pkey] = None
    elif mutation == "da_longer":
        c["da"] = np.concatenate([c["da"], c["da"][:, :, :1]], axis=2)
    elif mutation == "huge_broadcast":
        c["x"] = np.broadcast_to(np.zeros((1, 1, 1)), (c["n_x"], 2**17, 2**15))
        c["a0"] = np.broadcast_to(np.zeros((1, 1)), (c["n_a"], 2**17))
    return c


def applies(name, mutation):
    """Whether a mutation means anything (and breaks or keeps validity) for name."""
    seq_bwd = name in ("rnn_backward", "lstm_backward", "gru_backward")
    if mutation in ("da_shorter", "da_longer", "cache_truncated", "list_cache"):
        return seq_bwd
    if mutation in ("cache_tuple_length", "cache_not_tuple", "reference_cache"):
        return name.endswith("backward")
    if mutation in ("rank", "off_by_one", "missing_key", "misspelled_key", "bad_dtype",
                    "none_arg", "extra_key", "int_dtype") and name in ("softmax", "sigmoid"):
        return mutation in ("bad_dtype", "none_arg")
    if mutation == "huge_broadcast":
        return name in ("rnn_forward", "lstm_forward", "gru_forward")
    return True


def cache_mutation(c, name, mutation, rng):
    if not name.endswith("backward") or mutation not in (
            "cache_tuple_length", "cache_truncated", "cache_not_tuple", "reference_cache",
            "list_cache"):
        return c
    cell = name.split("_")[0]
    if name.endswith("cell_backward"):
        cache = (ref.lstm_cell_forward(c["xt"], c["a0"], c["c0"], c["p"])[3] if cell == "lstm"
                 else getattr(ref, cell + "_cell_forward")(c["xt"], c["a0"], c["p"])[2])
        if mutation == "cache_tuple_length":
            c["cache"] = cache[:-1]
        elif mutation == "cache_not_tuple":
            c["cache"] = cache[0]
        elif mutation == "reference_cache":
            c["cache"] = cache
        return c
    caches = getattr(ref, cell + "_forward")(c["x"], c["a0"], c["p"])[-1]
    if mutation == "cache_tuple_length":
        c["caches"] = ([step[:-2] for step in caches[0]], caches[1])
    elif mutation == "cache_truncated":
        c["caches"] = (caches[0][:-1], caches[1])
    elif mutation == "cache_not_tuple":
        c["caches"] = caches[0]
    elif mutation == "reference_cache":
        c["caches"] = caches
    elif mutation == "list_cache":
        own = getattr(cyrnn, cell + "_forward")(c["x"], c["a0"], c["p"])[-1]
        c["caches"] = (list(own[0]), own[1])
    return c


def same(got, want, tol, nonfinite_inputs=False):
    if isinstance(want, dict):
        assert list(got) == list(want)
        for k in want:
            same(got[k], want[k], tol, nonfinite_inputs)
    elif isinstance(want, (tuple, list)):
        for u, v in zip(got, want):
            same(u, v, tol, nonfinite_inputs)
    else:
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape
        finite = np.isfinite(want)
        if not nonfinite_inputs:
            # NaN or inf where the reference is finite is a bug
            assert np.isfinite(got[finite]).all(), "non-finite values where the reference is finite"
        # Where an input holds NaN/inf, which outputs turn NaN may differ between
        # two BLAS libraries (0·inf inside a GEMM); compare where both are finite.
        both = np.isfinite(got) & finite
        np.testing.assert_allclose(got[both], want[both], rtol=tol, atol=tol)


@settings(max_examples=int(os.environ.get("CYRNN_FUZZ_EXAMPLES", 2000)),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.sampled_from(FUNCTIONS), st.sampled_from(VALID + INVALID), st.integers(0, 2**32 - 1),
       st.data())
def test_fuzz_public_api(name, mutation, seed, data):
    if not applies(name, mutation):
        return
    rng = np.random.default_rng(seed)
    c = build_call(lambda lo, hi: data.draw(st.integers(lo, hi)), rng, name)
    c = mutate(c, name, mutation, rng)
    c = cache_mutation(c, name, mutation, rng)
    before = fingerprint({k: v for k, v in c.items() if k not in ("cache", "caches")})
    try:
        got = run(cyrnn, name, c)
    except ALLOWED as exc:
        assert mutation in INVALID, f"valid call ({mutation}) raised {exc!r}"
        assert str(exc), "errors must say what is wrong"
    else:
        assert mutation in VALID, f"invalid call ({mutation}) returned a result"
        with np.errstate(all="ignore"):
            want = run(ref, name, c, cache_from=cyrnn if mutation == "list_cache" else ref)
        same(got, want, 2e-4 if mutation == "float32" else 1e-9,
             nonfinite_inputs=mutation in ("nan", "inf"))
    assert fingerprint({k: v for k, v in c.items() if k not in ("cache", "caches")}) == before
