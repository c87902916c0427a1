"""Backward functions against central finite differences of the forward ones.

With upstream gradients da (and dc for the LSTM cell), the backward functions
return the gradients of L = sum(da * a) (+ sum(dc * c)); each is compared with
(L(θ + h) - L(θ - h)) / 2h for every entry of every input and parameter.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cyrnn
from problems import (check_gradient, lstm_parameters, numerical_gradient, rnn_parameters,
                      sequence)



small = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
                  st.integers(1, 4), st.integers(0, 2**32 - 1))


@given(small)
def test_rnn_backward_finite_differences(shape):
    n_x, n_a, n_y, m, T, seed = shape
    rng = np.random.default_rng(seed)
    x, a0 = sequence(rng, n_x, n_a, m, T)
    p = rnn_parameters(rng, n_x, n_a, n_y, scale=0.7)
    T_da = int(rng.integers(1, T + 1))
    da = rng.standard_normal((n_a, m, T_da))

    def loss():
        a = cyrnn.rnn_forward(x, a0, p)[0]
        return np.sum(da * a[:, :, :T_da])

    g = cyrnn.rnn_backward(da, cyrnn.rnn_forward(x, a0, p)[2])
    check_gradient(g["dx"], numerical_gradient(loss, x)[:, :, :T_da], "dx")
    check_gradient(g["da0"], numerical_gradient(loss, a0), "da0")
    for key in ("Wax", "Waa", "ba"):
        check_gradient(g["d" + key], numerical_gradient(loss, p[key]), "d" + key)


@given(small, st.booleans())
def test_lstm_backward_finite_differences(shape, with_c0):
    n_x, n_a, n_y, m, T, seed = shape
    rng = np.random.default_rng(seed)
    x, a0 = sequence(rng, n_x, n_a, m, T)
    p = lstm_parameters(rng, n_x, n_a, n_y, scale=0.7)
    c0 = rng.standard_normal(a0.shape) if with_c0 else None
    T_da = int(rng.integers(1, T + 1))
    da = rng.standard_normal((n_a, m, T_da))

    def loss():
        a = cyrnn.lstm_forward(x, a0, p, c0=c0)[0]
        return np.sum(da * a[:, :, :T_da])

    g = cyrnn.lstm_backward(da, cyrnn.lstm_forward(x, a0, p, c0=c0)[3])
    check_gradient(g["dx"], numerical_gradient(loss, x)[:, :, :T_da], "dx")
    check_gradient(g["da0"], numerical_gradient(loss, a0), "da0")
    for key in ("Wf", "Wi", "Wc", "Wo", "bf", "bi", "bc", "bo"):
        check_gradient(g["d" + key], numerical_gradient(loss, p[key]), "d" + key)


@pytest.mark.parametrize("seed", range(3))
def test_rnn_cell_backward_finite_differences(seed):
    rng = np.random.default_rng(seed)
    n_x, n_a, n_y, m = 3, 4, 2, 3
    xt, a_prev = rng.standard_normal((n_x, m)), rng.standard_normal((n_a, m))
    p = rnn_parameters(rng, n_x, n_a, n_y)
    da_next = rng.standard_normal((n_a, m))

    def loss():
        return np.sum(da_next * cyrnn.rnn_cell_forward(xt, a_prev, p)[0])

    g = cyrnn.rnn_cell_backward(da_next, cyrnn.rnn_cell_forward(xt, a_prev, p)[2])
    check_gradient(g["dxt"], numerical_gradient(loss, xt), "dxt")
    check_gradient(g["da_prev"], numerical_gradient(loss, a_prev), "da_prev")
    for key in ("Wax", "Waa", "ba"):
        check_gradient(g["d" + key], numerical_gradient(loss, p[key]), "d" + key)


@pytest.mark.parametrize("seed", range(3))
def test_lstm_cell_backward_finite_differences(seed):
    rng = np.random.default_rng(seed)
    n_x, n_a, n_y, m = 3, 4, 2, 3
    xt = rng.standard_normal((n_x, m))
    a_prev, c_prev = rng.standard_normal((n_a, m)), rng.standard_normal((n_a, m))
    p = lstm_parameters(rng, n_x, n_a, n_y)
    da_next, dc_next = rng.standard_normal((n_a, m)), rng.standard_normal((n_a, m))

    def loss():
        a_next, c_next, _, _ = cyrnn.lstm_cell_forward(xt, a_prev, c_prev, p)
        return np.sum(da_next * a_next) + np.sum(dc_next * c_next)

    cache = cyrnn.lstm_cell_forward(xt, a_prev, c_prev, p)[3]
    g = cyrnn.lstm_cell_backward(da_next, dc_next, cache)
    check_gradient(g["dxt"], numerical_gradient(loss, xt), "dxt")
    check_gradient(g["da_prev"], numerical_gradient(loss, a_prev), "da_prev")
    check_gradient(g["dc_prev"], numerical_gradient(loss, c_prev), "dc_prev")
    for key in ("Wf", "Wi", "Wc", "Wo", "bf", "bi", "bc", "bo"):
        check_gradient(g["d" + key], numerical_gradient(loss, p[key]), "d" + key)
