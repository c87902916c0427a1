"""float32: computed in single precision when every floating input is float32.

Tolerance: relative ~1e-5 against the float64 reference on well-scaled inputs
(float32 has 24 bits; errors grow mildly with n_a + n_x and the sequence length).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cyrnn
import cyrnn.reference as ref
from problems import lstm_parameters, rnn_parameters, sequence

F32_TOL = dict(rtol=1e-5, atol=1e-5)


def f64(tree):
    if isinstance(tree, dict):
        return {k: v.astype(np.float64) for k, v in tree.items()}
    return tree.astype(np.float64)


def dtypes_of(obj):
    if isinstance(obj, np.ndarray):
        return {obj.dtype}
    if isinstance(obj, dict):
        return set().union(*(dtypes_of(v) for v in obj.values()))
    if isinstance(obj, (tuple, list)):
        return set().union(set(), *(dtypes_of(v) for v in obj))
    return set()


shapes = st.tuples(st.integers(1, 8), st.integers(1, 10), st.integers(1, 5), st.integers(1, 8),
                   st.integers(1, 6), st.integers(0, 2**32 - 1))


@given(shapes)
def test_float32_matches_float64_reference(shape):
    check_against_float64_reference(*shape)


@pytest.mark.parametrize("m", [7, 13, 16, 24, 31, 32, 300])
def test_float32_row_grouping_matches_float64_reference(m):
    # float rows below 16 (32 in the LSTM forward pass) go through padded
    # buffers several rows at a time; 41 rows make several groups, the last partial
    check_against_float64_reference(3, 41, 4, m, 3, m)


@pytest.mark.parametrize("n_a, m, T", [(128, 64, 4), (256, 4, 64), (128, 256, 1)])
def test_float32_pretransposed_recurrent_weights_match_float64_reference(n_a, m, T):
    # From m·n_a·(4)n_a >= 2^20 and T·m >= 256 the float32 backward copies the
    # recurrent weights transposed once and runs plain A·B GEMMs per step
    # (transpose_weights_once in src/_blas.pxd): the LSTM in all three cases,
    # the RNN in the first and last. Weights ~1/sqrt(n_a) keep the dynamics
    # contractive: at 0.5 a 256-unit LSTM is chaotic over 64 steps, and float32
    # rounding alone then moves the states by O(1) (float64 already by 1e-6).
    check_against_float64_reference(5, n_a, 3, m, T, n_a + m, scale=1 / np.sqrt(n_a))


def test_float32_large_outputs_match_float64_reference():
    # a and dx of >= 8 MiB go through the staged, non-temporal layout change
    # (2 chunks of 445 batch columns in float32; odd row starts).
    check_against_float64_reference(64, 64, 3, 501, 69, 5, scale=1 / 8)


def check_against_float64_reference(n_x, n_a, n_y, m, T, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    x, a0 = sequence(rng, n_x, n_a, m, T, np.float32)
    pr = rnn_parameters(rng, n_x, n_a, n_y, np.float32, scale=scale)
    pl = lstm_parameters(rng, n_x, n_a, n_y, np.float32, scale=scale)
    da = rng.standard_normal((n_a, m, T)).astype(np.float32)

    a, y, caches = cyrnn.rnn_forward(x, a0, pr)
    a_r, y_r, caches_r = ref.rnn_forward(f64(x), f64(a0), f64(pr))
    np.testing.assert_allclose(a, a_r, **F32_TOL)
    np.testing.assert_allclose(y, y_r, **F32_TOL)
    g, g_r = cyrnn.rnn_backward(da, caches), ref.rnn_backward(f64(da), caches_r)
    for key in g_r:
        assert g[key].dtype == np.float32
        scale = max(1.0, np.abs(g_r[key]).max())
        np.testing.assert_allclose(g[key], g_r[key], rtol=1e-4, atol=1e-5 * scale)

    a, y, c, caches = cyrnn.lstm_forward(x, a0, pl)
    a_r, y_r, c_r, caches_r = ref.lstm_forward(f64(x), f64(a0), f64(pl))
    for u, v in ((a, a_r), (y, y_r), (c, c_r)):
        np.testing.assert_allclose(u, v, **F32_TOL)
    g, g_r = cyrnn.lstm_backward(da, caches), ref.lstm_backward(f64(da), caches_r)
    for key in g_r:
        assert g[key].dtype == np.float32
        scale = max(1.0, np.abs(g_r[key]).max())
        np.testing.assert_allclose(g[key], g_r[key], rtol=1e-4, atol=1e-5 * scale)


def test_every_output_and_cache_entry_is_float32():
    rng = np.random.default_rng(0)
    x, a0 = sequence(rng, 3, 4, 5, 6, np.float32)
    pr, pl = rnn_parameters(rng, 3, 4, 2, np.float32), lstm_parameters(rng, 3, 4, 2, np.float32)
    da = np.ones((4, 5, 6), np.float32)
    xt, dn = np.ascontiguousarray(x[:, :, 0]), np.ascontiguousarray(da[:, :, 0])
    outs = [cyrnn.rnn_forward(x, a0, pr), cyrnn.lstm_forward(x, a0, pl),
            cyrnn.lstm_forward(x, a0, pl, cache=False, n_threads=2),
            cyrnn.rnn_cell_forward(xt, a0, pr), cyrnn.lstm_cell_forward(xt, a0, a0, pl),
            cyrnn.softmax(x), cyrnn.sigmoid(x)]
    outs.append([list(step) for step in outs[0][2][0]])  # materialise every step cache
    outs.append([list(step) for step in outs[1][3][0]])
    outs += [cyrnn.rnn_backward(da, outs[0][2]), cyrnn.lstm_backward(da, outs[1][3]),
             cyrnn.rnn_cell_backward(dn, outs[3][2]), cyrnn.lstm_cell_backward(dn, dn, outs[4][3])]
    assert dtypes_of(outs) == {np.dtype(np.float32)}


@pytest.mark.parametrize("odd_one", ["x", "a0", "Waa", "ba", "by", "int_x"])
def test_any_float64_or_integer_input_makes_the_call_float64(odd_one):
    rng = np.random.default_rng(1)
    x, a0 = sequence(rng, 3, 4, 5, 6, np.float32)
    p = rnn_parameters(rng, 3, 4, 2, np.float32)
    if odd_one == "int_x":
        x = np.round(x * 4).astype(np.int16)
    elif odd_one in ("x", "a0"):
        x, a0 = (x.astype(np.float64), a0) if odd_one == "x" else (x, a0.astype(np.float64))
    else:
        p[odd_one] = p[odd_one].astype(np.float64)
    a, y, caches = cyrnn.rnn_forward(x, a0, p)
    assert a.dtype == y.dtype == caches[0][0][0].dtype == np.float64
    a_r = ref.rnn_forward(f64(x), f64(a0), f64(p))[0]
    np.testing.assert_allclose(a, a_r, rtol=1e-12, atol=1e-14)
    # float32 caches with a float64 upstream gradient: the backward runs in float64
    a32, _, caches32 = cyrnn.rnn_forward(x.astype(np.float32), a0.astype(np.float32),
                                         {k: v.astype(np.float32) for k, v in p.items()})
    g = cyrnn.rnn_backward(np.ones((4, 5, 6)), caches32)
    assert g["dWax"].dtype == np.float64


def test_float16_computes_in_float32():
    x = np.linspace(-3, 3, 12, dtype=np.float16).reshape(3, 4)
    s = cyrnn.softmax(x)
    assert s.dtype == np.float32
    np.testing.assert_allclose(s, ref.softmax(x.astype(np.float64)), rtol=1e-6)
