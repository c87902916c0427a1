"""Accuracy of the vectorised exp/tanh/sigmoid inside the kernels, over wide ranges."""
import numpy as np
import pytest

import cyrnn


def reference_sigmoid(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("scale", [1e-8, 1e-3, 0.5, 3.0, 30.0, 300.0])
def test_sigmoid_accuracy(scale):
    x = scale * np.random.default_rng(0).standard_normal(100_000)
    got, want = cyrnn.sigmoid(x), reference_sigmoid(x)
    big = want > 1e-300
    np.testing.assert_allclose(got[big], want[big], rtol=2e-15)
    x32 = x.astype(np.float32)
    got32 = cyrnn.sigmoid(x32)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, reference_sigmoid(x32.astype(np.float64)), rtol=1e-6,
                               atol=1e-37)


def rnn_tanh(z):
    """tanh through the RNN kernel: a one-step RNN with identity-like weights."""
    n = z.size
    p = {"Wax": np.ones((1, 1), z.dtype), "Waa": np.zeros((1, 1), z.dtype),
         "Wya": np.ones((1, 1), z.dtype), "ba": np.zeros((1, 1), z.dtype),
         "by": np.zeros((1, 1), z.dtype)}
    a, _, _ = cyrnn.rnn_cell_forward(z.reshape(1, n), np.zeros((1, n), z.dtype), p)
    return a.ravel()


@pytest.mark.parametrize("scale", [1e-9, 1e-4, 0.3, 0.62, 2.0, 20.0, 500.0])
def test_tanh_accuracy(scale):
    z = scale * np.random.default_rng(1).standard_normal(50_000)
    np.testing.assert_allclose(rnn_tanh(z), np.tanh(z), rtol=2e-15, atol=1e-300)
    z32 = z.astype(np.float32)
    np.testing.assert_allclose(rnn_tanh(z32), np.tanh(z32.astype(np.float64)), rtol=1e-6,
                               atol=1e-37)


def test_softmax_exp_accuracy_and_extremes():
    rng = np.random.default_rng(2)
    z = rng.uniform(-700, 0, size=(3, 20_000))
    z[0] = 0  # keep every column's max at 0 so exp is tested over [-700, 0]
    s = cyrnn.softmax(z)
    e = np.exp(z)
    want = e / e.sum(axis=0)
    ok = want > 1e-300
    np.testing.assert_allclose(s[ok], want[ok], rtol=4e-15)
    special = np.array([[np.inf, 0.0, np.nan], [0.0, -np.inf, 1.0]])
    with np.errstate(invalid="ignore"):
        out = cyrnn.softmax(special)
    assert np.isnan(out[:, 0]).all()  # inf - inf, as NumPy
    np.testing.assert_array_equal(out[:, 1], [1.0, 0.0])
    assert np.isnan(out[:, 2]).all()
