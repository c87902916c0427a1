"""The "Expected Output" values of the newest notebook, for all eight functions.

Inputs are re-created exactly as the notebook cells build them (np.random.seed(1)
and randn draws in the cells' order). Run against cyrnn and against
cyrnn.reference, and in float32 at the float32 tolerance.
"""
import numpy as np
import pytest

import cyrnn
import cyrnn.reference

IMPLEMENTATIONS = [pytest.param(cyrnn, id="cyrnn"),
                   pytest.param(cyrnn.reference, id="reference")]
DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]


def tol(dtype):
    # The printed values have 8-12 significant digits.
    return dict(rtol=1e-7, atol=1e-8) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)


def cast(obj, dtype):
    if isinstance(obj, dict):
        return {k: v.astype(dtype) for k, v in obj.items()}
    return obj.astype(dtype)


def rnn_forward_cell_inputs():
    np.random.seed(1)
    xt = np.random.randn(3, 10)
    a_prev = np.random.randn(5, 10)
    p = {}
    p["Waa"] = np.random.randn(5, 5)
    p["Wax"] = np.random.randn(5, 3)
    p["Wya"] = np.random.randn(2, 5)
    p["ba"] = np.random.randn(5, 1)
    p["by"] = np.random.randn(2, 1)
    return xt, a_prev, p


def lstm_cell_inputs():
    np.random.seed(1)
    xt = np.random.randn(3, 10)
    a_prev = np.random.randn(5, 10)
    c_prev = np.random.randn(5, 10)
    p = {}
    for name in ("f", "i", "o", "c"):
        p["W" + name] = np.random.randn(5, 5 + 3)
        p["b" + name] = np.random.randn(5, 1)
    p["Wy"] = np.random.randn(2, 5)
    p["by"] = np.random.randn(2, 1)
    return xt, a_prev, c_prev, p


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_rnn_cell_forward(impl, dtype):
    xt, a_prev, p = rnn_forward_cell_inputs()
    a_next, yt_pred, cache = impl.rnn_cell_forward(cast(xt, dtype), cast(a_prev, dtype),
                                                   cast(p, dtype))
    np.testing.assert_allclose(a_next[4], [0.59584544, 0.18141802, 0.61311866, 0.99808218,
                                           0.85016201, 0.99980978, -0.18887155, 0.99815551,
                                           0.6531151, 0.82872037], **tol(dtype))
    assert a_next.shape == (5, 10)
    np.testing.assert_allclose(yt_pred[1], [0.9888161, 0.01682021, 0.21140899, 0.36817467,
                                            0.98988387, 0.88945212, 0.36920224, 0.9966312,
                                            0.9982559, 0.17746526], **tol(dtype))
    assert yt_pred.shape == (2, 10)
    assert len(cache) == 4
    assert a_next.dtype == yt_pred.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_rnn_forward(impl, dtype):
    np.random.seed(1)
    x = np.random.randn(3, 10, 4)
    a0 = np.random.randn(5, 10)
    p = {}
    p["Waa"] = np.random.randn(5, 5)
    p["Wax"] = np.random.randn(5, 3)
    p["Wya"] = np.random.randn(2, 5)
    p["ba"] = np.random.randn(5, 1)
    p["by"] = np.random.randn(2, 1)
    a, y_pred, caches = impl.rnn_forward(cast(x, dtype), cast(a0, dtype), cast(p, dtype))
    np.testing.assert_allclose(a[4][1], [-0.99999375, 0.77911235, -0.99861469, -0.99833267],
                               **tol(dtype))
    assert a.shape == (5, 10, 4)
    np.testing.assert_allclose(y_pred[1][3], [0.79560373, 0.86224861, 0.11118257, 0.81515947],
                               **tol(dtype))
    assert y_pred.shape == (2, 10, 4)
    np.testing.assert_allclose(caches[1][1][3], [-1.1425182, -0.34934272, -0.20889423,
                                                 0.58662319], **tol(dtype))
    assert len(caches) == 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_rnn_cell_backward(impl, dtype):
    np.random.seed(1)
    xt = np.random.randn(3, 10)
    a_prev = np.random.randn(5, 10)
    p = {}
    p["Wax"] = np.random.randn(5, 3)
    p["Waa"] = np.random.randn(5, 5)
    p["Wya"] = np.random.randn(2, 5)
    p["ba"] = np.random.randn(5, 1)
    p["by"] = np.random.randn(2, 1)
    a_next, yt, cache = impl.rnn_cell_forward(cast(xt, dtype), cast(a_prev, dtype),
                                              cast(p, dtype))
    da_next = np.random.randn(5, 10)
    g = impl.rnn_cell_backward(cast(da_next, dtype), cache)
    np.testing.assert_allclose(g["dxt"][1][2], -1.3872130506, **tol(dtype))
    assert g["dxt"].shape == (3, 10)
    np.testing.assert_allclose(g["da_prev"][2][3], -0.152399493774, **tol(dtype))
    assert g["da_prev"].shape == (5, 10)
    np.testing.assert_allclose(g["dWax"][3][1], 0.410772824935, **tol(dtype))
    assert g["dWax"].shape == (5, 3)
    np.testing.assert_allclose(g["dWaa"][1][2], 1.15034506685, **tol(dtype))
    assert g["dWaa"].shape == (5, 5)
    np.testing.assert_allclose(g["dba"][4], [0.20023491], **tol(dtype))
    assert g["dba"].shape == (5, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_rnn_backward(impl, dtype):
    np.random.seed(1)
    x = np.random.randn(3, 10, 4)
    a0 = np.random.randn(5, 10)
    p = {}
    p["Wax"] = np.random.randn(5, 3)
    p["Waa"] = np.random.randn(5, 5)
    p["Wya"] = np.random.randn(2, 5)
    p["ba"] = np.random.randn(5, 1)
    p["by"] = np.random.randn(2, 1)
    a, y, caches = impl.rnn_forward(cast(x, dtype), cast(a0, dtype), cast(p, dtype))
    da = np.random.randn(5, 10, 4)
    g = impl.rnn_backward(cast(da, dtype), caches)
    np.testing.assert_allclose(g["dx"][1][2], [-2.07101689, -0.59255627, 0.02466855,
                                               0.01483317], **tol(dtype))
    assert g["dx"].shape == (3, 10, 4)
    np.testing.assert_allclose(g["da0"][2][3], -0.314942375127, **tol(dtype))
    assert g["da0"].shape == (5, 10)
    np.testing.assert_allclose(g["dWax"][3][1], 11.2641044965, **tol(dtype))
    assert g["dWax"].shape == (5, 3)
    np.testing.assert_allclose(g["dWaa"][1][2], 2.30333312658, **tol(dtype))
    assert g["dWaa"].shape == (5, 5)
    np.testing.assert_allclose(g["dba"][4], [-0.74747722], **tol(dtype))
    assert g["dba"].shape == (5, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_lstm_cell_forward(impl, dtype):
    xt, a_prev, c_prev, p = lstm_cell_inputs()
    a_next, c_next, yt, cache = impl.lstm_cell_forward(
        cast(xt, dtype), cast(a_prev, dtype), cast(c_prev, dtype), cast(p, dtype))
    np.testing.assert_allclose(a_next[4], [-0.66408471, 0.0036921, 0.02088357, 0.22834167,
                                           -0.85575339, 0.00138482, 0.76566531, 0.34631421,
                                           -0.00215674, 0.43827275], **tol(dtype))
    assert a_next.shape == (5, 10)
    np.testing.assert_allclose(c_next[2], [0.63267805, 1.00570849, 0.35504474, 0.20690913,
                                           -1.64566718, 0.11832942, 0.76449811, -0.0981561,
                                           -0.74348425, -0.26810932], **tol(dtype))
    assert c_next.shape == (5, 10)
    np.testing.assert_allclose(yt[1], [0.79913913, 0.15986619, 0.22412122, 0.15606108,
                                       0.97057211, 0.31146381, 0.00943007, 0.12666353,
                                       0.39380172, 0.07828381], **tol(dtype))
    assert yt.shape == (2, 10)
    np.testing.assert_allclose(cache[1][3], [-0.16263996, 1.03729328, 0.72938082, -0.54101719,
                                             0.02752074, -0.30821874, 0.07651101, -1.03752894,
                                             1.41219977, -0.37647422], **tol(dtype))
    assert len(cache) == 10


def lstm_sequence_inputs(zero_output_layer):
    np.random.seed(1)
    x = np.random.randn(3, 10, 7)
    a0 = np.random.randn(5, 10)
    p = {}
    for name in ("f", "i", "o", "c"):
        p["W" + name] = np.random.randn(5, 5 + 3)
        p["b" + name] = np.random.randn(5, 1)
    if zero_output_layer:  # the newest notebook's lstm_backward cell
        p["Wy"] = np.zeros((2, 5))
        p["by"] = np.zeros((2, 1))
    else:
        p["Wy"] = np.random.randn(2, 5)
        p["by"] = np.random.randn(2, 1)
    return x, a0, p


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_lstm_forward(impl, dtype):
    x, a0, p = lstm_sequence_inputs(zero_output_layer=False)
    a, y, c, caches = impl.lstm_forward(cast(x, dtype), cast(a0, dtype), cast(p, dtype))
    np.testing.assert_allclose(a[4][3][6], 0.172117767533, **tol(dtype))
    assert a.shape == (5, 10, 7)
    np.testing.assert_allclose(y[1][4][3], 0.95087346185, **tol(dtype))
    assert y.shape == (2, 10, 7)
    np.testing.assert_allclose(caches[1][1][1], [0.82797464, 0.23009474, 0.76201118,
                                                 -0.22232814, -0.20075807, 0.18656139,
                                                 0.41005165], **tol(dtype))
    np.testing.assert_allclose(c[1][2][1], -0.855544916718, **tol(dtype))
    assert len(caches) == 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_lstm_cell_backward(impl, dtype):
    xt, a_prev, c_prev, p = lstm_cell_inputs()
    a_next, c_next, yt, cache = impl.lstm_cell_forward(
        cast(xt, dtype), cast(a_prev, dtype), cast(c_prev, dtype), cast(p, dtype))
    da_next = np.random.randn(5, 10)
    dc_next = np.random.randn(5, 10)
    g = impl.lstm_cell_backward(cast(da_next, dtype), cast(dc_next, dtype), cache)
    expected = {("dxt", 1, 2): 3.23055911511, ("da_prev", 2, 3): -0.0639621419711,
                ("dc_prev", 2, 3): 0.797522038797, ("dWf", 3, 1): -0.147954838164,
                ("dWi", 1, 2): 1.05749805523, ("dWc", 3, 1): 2.30456216369,
                ("dWo", 1, 2): 0.331311595289}
    for (key, i, j), value in expected.items():
        np.testing.assert_allclose(g[key][i][j], value, **tol(dtype), err_msg=key)
    for key, value in {"dbf": 0.18864637, "dbi": -0.40142491, "dbc": 0.25587763,
                       "dbo": 0.13893342}.items():
        np.testing.assert_allclose(g[key][4], [value], **tol(dtype), err_msg=key)
        assert g[key].shape == (5, 1)
    assert g["dxt"].shape == (3, 10)
    assert g["da_prev"].shape == g["dc_prev"].shape == (5, 10)
    for key in ("dWf", "dWi", "dWc", "dWo"):
        assert g[key].shape == (5, 8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_lstm_backward(impl, dtype):
    # The newest notebook's values (the corrected equations); the oldest copy's
    # printed values come from its wrong "original" equations (docs/contract.md §2).
    x, a0, p = lstm_sequence_inputs(zero_output_layer=True)
    a, y, c, caches = impl.lstm_forward(cast(x, dtype), cast(a0, dtype), cast(p, dtype))
    da = np.random.randn(5, 10, 4)
    g = impl.lstm_backward(cast(da, dtype), caches)
    np.testing.assert_allclose(g["dx"][1][2], [0.00218254, 0.28205375, -0.48292508,
                                               -0.43281115], **tol(dtype))
    assert g["dx"].shape == (3, 10, 4)
    np.testing.assert_allclose(g["da0"][2][3], 0.312770310257, **tol(dtype))
    assert g["da0"].shape == (5, 10)
    expected = {("dWf", 3, 1): -0.0809802310938, ("dWi", 1, 2): 0.40512433093,
                ("dWc", 3, 1): -0.0793746735512, ("dWo", 1, 2): 0.038948775763}
    for (key, i, j), value in expected.items():
        np.testing.assert_allclose(g[key][i][j], value, **tol(dtype), err_msg=key)
        assert g[key].shape == (5, 8)
    for key, value in {"dbf": -0.15745657, "dbi": -0.50848333, "dbc": -0.42510818,
                       "dbo": -0.17958196}.items():
        np.testing.assert_allclose(g[key][4], [value], **tol(dtype), err_msg=key)
        assert g[key].shape == (5, 1)
