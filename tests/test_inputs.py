"""Layouts, dtypes, edge sizes, inputs left untouched, and every bad-input class of docs/contract.md §3."""
import re

import numpy as np
import pytest

import cyrnn
import cyrnn.reference as ref
from problems import (assert_close, assert_same_gradients, fingerprint, lstm_parameters,
                      rnn_parameters, sequence)

N_X, N_A, N_Y, M, T = 3, 5, 2, 4, 6


@pytest.fixture
def rnn():
    rng = np.random.default_rng(0)
    x, a0 = sequence(rng, N_X, N_A, M, T)
    return x, a0, rnn_parameters(rng, N_X, N_A, N_Y)


@pytest.fixture
def lstm():
    rng = np.random.default_rng(1)
    x, a0 = sequence(rng, N_X, N_A, M, T)
    return x, a0, lstm_parameters(rng, N_X, N_A, N_Y)


def layouts(arr):
    """The same values as C, Fortran, non-contiguous, negative-stride, read-only
    and unaligned arrays."""
    yield "C", np.ascontiguousarray(arr)
    yield "F", np.asfortranarray(arr)
    big = np.zeros(tuple(2 * s for s in arr.shape))
    view = big[tuple(slice(None, None, 2) for _ in arr.shape)]
    view[...] = arr
    yield "strided", view
    flipped = np.ascontiguousarray(arr[::-1])[::-1]
    yield "negative", flipped
    ro = arr.copy()
    ro.flags.writeable = False
    yield "readonly", ro
    raw = np.zeros(arr.size * 8 + 1, np.uint8)[1:].view(np.float64).reshape(arr.shape)
    raw[...] = arr
    yield "unaligned", raw


def all_rnn_calls(x, a0, p):
    a, y, caches = cyrnn.rnn_forward(x, a0, p)
    da = np.ones((N_A, M, T - 1))
    return {"a": a, "y": y, "grads": cyrnn.rnn_backward(da, caches),
            "cell": cyrnn.rnn_cell_forward(x[:, :, 0], a0, p)[:2]}


def all_lstm_calls(x, a0, p):
    a, y, c, caches = cyrnn.lstm_forward(x, a0, p)
    da = np.ones((N_A, M, T - 1))
    return {"a": a, "y": y, "c": c, "grads": cyrnn.lstm_backward(da, caches),
            "cell": cyrnn.lstm_cell_forward(x[:, :, 0], a0, a0, p)[:3]}


def compare(result, expected, layout=""):
    for key, value in expected.items():
        if isinstance(value, dict):
            for name in value:
                assert_close(result[key][name], value[name], what=f"{layout} {key} {name}")
        elif isinstance(value, tuple):
            for u, v in zip(result[key], value):
                assert_close(u, v, what=f"{layout} {key}")
        else:
            assert_close(result[key], value, what=f"{layout} {key}")


@pytest.mark.parametrize("cell, which", [("rnn", w) for w in ("x", "a0", "Waa", "Wax", "Wya",
                                                                 "ba", "by")]
                         + [("lstm", w) for w in ("x", "a0", "Wf", "Wo", "bc", "Wy")])
def test_layouts(request, cell, which):
    """Every memory layout of each input gives the results of the C-contiguous one."""
    x, a0, p = request.getfixturevalue(cell)
    all_calls = all_rnn_calls if cell == "rnn" else all_lstm_calls
    expected = all_calls(x, a0, p)
    target = {"x": x, "a0": a0}.get(which, p.get(which))
    for name, variant in layouts(target):
        args = {"x": x, "a0": a0, "p": dict(p)}
        if which in ("x", "a0"):
            args[which] = variant
        else:
            args["p"][which] = variant
        compare(all_calls(args["x"], args["a0"], args["p"]), expected, name)


@pytest.mark.parametrize("m, T", [(8, 8), (9, 17), (17, 9), (1, 20), (20, 1)])
def test_layout_changes_in_runs_of_eight(m, T):
    # x is copied to time-major buffers, and a, c, y, dx back, eight batch
    # columns or eight steps at a time (src/cyrnn_elementwise_impl.h), with
    # scalar tails; every input layout goes through the same copies.
    rng = np.random.default_rng(m * 100 + T)
    x, a0 = sequence(rng, N_X, N_A, m, T)
    p = lstm_parameters(rng, N_X, N_A, N_Y)
    da = rng.standard_normal((N_A, m, T))
    a_r, y_r, c_r, caches_r = ref.lstm_forward(x, a0, p)
    grads_r = ref.lstm_backward(da, caches_r)
    x_time_major = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    for name, variant in [*layouts(x), ("time-major", x_time_major)]:
        a, y, c, caches = cyrnn.lstm_forward(variant, a0, p)
        for got, want, what in ((a, a_r, "a"), (y, y_r, "y"), (c, c_r, "c")):
            assert_close(got, want, what=f"{name} {what}")
        for da_name, da_variant in layouts(da):
            assert_same_gradients(cyrnn.lstm_backward(da_variant, caches), grads_r)


def test_time_major_view_of_x_is_read_in_place(lstm):
    x, a0, p = lstm
    x_tm = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    a, y, c, caches = cyrnn.lstm_forward(x_tm, a0, p)
    assert np.shares_memory(caches[0].X, x_tm)
    compare({"a": a, "y": y}, {"a": ref.lstm_forward(x, a0, p)[0],
                               "y": ref.lstm_forward(x, a0, p)[1]})


def test_broadcast_inputs(rnn):
    x, a0, p = rnn
    xb = np.broadcast_to(x[:, :1, :], x.shape)  # zero stride along the batch
    a0b = np.broadcast_to(a0[:, :1], a0.shape)
    a, y, caches = cyrnn.rnn_forward(xb, a0b, p)
    a_r, y_r, _ = ref.rnn_forward(np.array(xb), np.array(a0b), p)
    assert_close(a, a_r)
    assert_close(y, y_r)


def test_da_layouts(lstm, rnn):
    x, a0, p = lstm
    _, _, _, caches = cyrnn.lstm_forward(x, a0, p)
    _, _, _, caches_r = ref.lstm_forward(x, a0, p)
    da = np.random.default_rng(5).standard_normal((N_A, M, T))
    expected = ref.lstm_backward(da, caches_r)
    for _layout, variant in layouts(da):
        assert_same_gradients(cyrnn.lstm_backward(variant, caches), expected)
    x, a0, p = rnn
    _, _, caches = cyrnn.rnn_forward(x, a0, p)
    expected = ref.rnn_backward(da, ref.rnn_forward(x, a0, p)[2])
    for _layout, variant in layouts(da):
        assert_same_gradients(cyrnn.rnn_backward(variant, caches), expected)


def test_inputs_never_modified(rnn, lstm):
    x, a0, p = rnn
    da = np.ones((N_A, M, T))
    before = fingerprint((x, a0, p, da))
    _, _, caches = cyrnn.rnn_forward(x, a0, p)
    cyrnn.rnn_backward(da, caches)
    _, _, cache = cyrnn.rnn_cell_forward(x[:, :, 0], a0, p)
    cyrnn.rnn_cell_backward(da[:, :, 0], cache)
    assert fingerprint((x, a0, p, da)) == before

    x, a0, p = lstm
    c_prev = a0 * 0.5
    before = fingerprint((x, a0, c_prev, p, da))
    _, _, _, caches = cyrnn.lstm_forward(x, a0, p, c0=c_prev)
    cyrnn.lstm_backward(da, caches)
    _, _, _, cache = cyrnn.lstm_cell_forward(x[:, :, 0], a0, c_prev, p)
    cyrnn.lstm_cell_backward(da[:, :, 0], da[:, :, 1], cache)
    cyrnn.softmax(x)
    cyrnn.sigmoid(x)
    assert fingerprint((x, a0, c_prev, p, da)) == before


def test_integer_inputs_promote_to_float64(rnn):
    x, a0, p = rnn
    xi = np.round(x * 3).astype(np.int32)
    a, y, caches = cyrnn.rnn_forward(xi, a0, p)
    a_r, y_r, _ = ref.rnn_forward(xi, a0, p)
    assert a.dtype == y.dtype == np.float64
    assert_close(a, a_r)
    assert_close(cyrnn.softmax(np.arange(6).reshape(3, 2)),
                 ref.softmax(np.arange(6).reshape(3, 2)))


def test_lists_are_accepted(rnn):
    x, a0, p = rnn
    a, _, _ = cyrnn.rnn_forward(x.tolist(), a0.tolist(), {k: v.tolist() for k, v in p.items()})
    assert_close(a, ref.rnn_forward(x, a0, p)[0])


def test_extra_parameter_keys_are_ignored(rnn, lstm):
    x, a0, p = rnn
    extra = dict(p, Wy=np.zeros(3), note="anything", lr=0.1)
    assert_close(cyrnn.rnn_forward(x, a0, extra)[0], ref.rnn_forward(x, a0, p)[0])
    x, a0, p = lstm
    extra = dict(p, Wax=None, junk="x")
    assert_close(cyrnn.lstm_forward(x, a0, extra)[0], ref.lstm_forward(x, a0, p)[0])


def test_empty_batch(rnn, lstm):
    x, a0, p = rnn
    a, y, caches = cyrnn.rnn_forward(x[:, :0], a0[:, :0], p)
    assert a.shape == (N_A, 0, T) and y.shape == (N_Y, 0, T)
    g = cyrnn.rnn_backward(np.zeros((N_A, 0, T)), caches)
    assert g["dx"].shape == (N_X, 0, T) and g["da0"].shape == (N_A, 0)
    assert np.all(g["dWax"] == 0) and g["dWaa"].shape == (N_A, N_A)
    x, a0, p = lstm
    a, y, c, caches = cyrnn.lstm_forward(x[:, :0], a0[:, :0], p)
    assert a.shape == c.shape == (N_A, 0, T)
    g = cyrnn.lstm_backward(np.zeros((N_A, 0, 2)), caches)
    assert g["dx"].shape == (N_X, 0, 2) and np.all(g["dWf"] == 0)
    out = cyrnn.lstm_cell_forward(x[:, :0, 0], a0[:, :0], a0[:, :0], p)
    assert out[0].shape == (N_A, 0)
    g = cyrnn.lstm_cell_backward(np.zeros((N_A, 0)), np.zeros((N_A, 0)), out[3])
    assert g["dxt"].shape == (N_X, 0) and np.all(g["dbo"] == 0)


def test_zero_steps(lstm):
    x, a0, p = lstm
    a, y, c, caches = cyrnn.lstm_forward(x[:, :, :0], a0, p)
    assert a.shape == (N_A, M, 0) and y.shape == (N_Y, M, 0) and len(caches[0]) == 0
    with pytest.raises(ValueError, match="da has 1 time steps but caches hold only 0"):
        cyrnn.lstm_backward(np.zeros((N_A, M, 1)), caches)
    g = cyrnn.lstm_backward(np.zeros((N_A, M, 0)), caches)
    assert g["dx"].shape == (N_X, M, 0) and np.all(g["da0"] == 0)


def test_saturated_activations_stay_finite(rnn, lstm):
    for scale in (50.0, 1e3, 1e8):
        x, a0, p = rnn
        p = {k: v * scale for k, v in p.items()}
        a, y, caches = cyrnn.rnn_forward(x, a0, p)
        g = cyrnn.rnn_backward(np.ones((N_A, M, T)), caches)
        assert np.isfinite(a).all() and np.isfinite(y).all()
        assert all(np.isfinite(v).all() for v in g.values())
        assert np.allclose(y.sum(axis=0), 1)
        x, a0, p = lstm
        p = {k: v * scale for k, v in p.items()}
        a, y, c, caches = cyrnn.lstm_forward(x, a0, p)
        g = cyrnn.lstm_backward(np.ones((N_A, M, T)), caches)
        assert np.isfinite(a).all() and np.isfinite(y).all()
        assert all(np.isfinite(v).all() for v in g.values())
        with np.errstate(all="ignore"):
            a_r, y_r, c_r, _ = ref.lstm_forward(x, a0, p)
        assert_close(a, a_r, atol=1e-12)
        assert_close(c, c_r, atol=1e-12)


def test_softmax_is_stable_per_column():
    z = np.array([[0.0, -2000.0], [1.0, -2001.0]])
    s = cyrnn.softmax(z)
    expected = np.exp([[0.0, 0.0], [1.0, -1.0]])
    expected /= expected.sum(axis=0)
    assert_close(s, expected)


def test_nan_and_inf_propagate(rnn):
    x, a0, p = rnn
    x = x.copy()
    x[0, 1, 2] = np.nan
    a, y, _ = cyrnn.rnn_forward(x, a0, p)
    with np.errstate(invalid="ignore"):
        a_r, y_r, _ = ref.rnn_forward(x, a0, p)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(a_r))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_r))
    assert np.isnan(a[:, 1, 2:]).all() and not np.isnan(a[:, 0]).any()
    assert_close(cyrnn.sigmoid(np.array([np.inf, -np.inf, np.nan])), [1.0, 0.0, np.nan])


# ------------------------------------------------------------------ errors

def call_rnn_forward(x, a0, p):
    return cyrnn.rnn_forward(x, a0, p)


BAD_RNN_FORWARD = [
    # (what to change, error class, message pattern)
    (lambda x, a0, p: (x[:, :, 0], a0, p), ValueError,
     r"x has shape \(3, 4\); expected 3 dimensions \(n_x, m, T_x\)"),
    (lambda x, a0, p: (x, a0[:, :3], p), ValueError,
     r"a0 has shape \(5, 3\); expected \(n_a, m\) = \(5, 4\)"),
    (lambda x, a0, p: (x, a0[0], p), ValueError, r"a0 has shape \(4,\); expected 2 dimensions"),
    (lambda x, a0, p: (x, a0, dict(p, Waa=p["Waa"][:, :4])), ValueError,
     r"parameters\['Waa'\] has shape \(5, 4\); expected \(n_a, n_a\) = \(5, 5\)"),
    (lambda x, a0, p: (x, a0, dict(p, Wax=p["Wax"].T)), ValueError,
     r"parameters\['Wax'\] has shape \(3, 5\); expected \(n_a, n_x\) = \(5, 3\)"),
    (lambda x, a0, p: (x, a0, dict(p, Wya=p["Wya"][:, :4])), ValueError,
     r"parameters\['Wya'\] has shape \(2, 4\); expected \(n_y, n_a\) = \(2, 5\)"),
    (lambda x, a0, p: (x, a0, dict(p, ba=p["ba"].ravel())), ValueError,
     r"parameters\['ba'\] has shape \(5,\); expected \(n_a, 1\) = \(5, 1\)"),
    (lambda x, a0, p: (x, a0, dict(p, by=np.zeros((3, 1)))), ValueError,
     r"parameters\['by'\] has shape \(3, 1\); expected \(n_y, 1\) = \(2, 1\)"),
    (lambda x, a0, p: (x, a0, {k: v for k, v in p.items() if k != "Waa"}), KeyError,
     r"parameters is missing 'Waa' \(hidden-to-hidden weights, shape \(n_a, n_a\)\)"),
    (lambda x, a0, p: (x, a0, {k.lower(): v for k, v in p.items()}), KeyError,
     r"parameters is missing 'Wax'"),
    (lambda x, a0, p: (None, a0, p), TypeError, r"x is None; expected a NumPy array"),
    (lambda x, a0, p: (x, None, p), TypeError, r"a0 is None"),
    (lambda x, a0, p: (x, a0, None), TypeError, r"parameters must be a dict of arrays; got NoneType"),
    (lambda x, a0, p: (x, a0, [1, 2]), TypeError, r"parameters must be a dict"),
    (lambda x, a0, p: (x, a0, dict(p, Waa=None)), TypeError, r"parameters\['Waa'\] is None"),
    (lambda x, a0, p: (x.astype(complex), a0, p), TypeError,
     r"x has dtype complex128; expected a real floating-point"),
    (lambda x, a0, p: (x > 0, a0, p), TypeError, r"x has dtype bool"),
    (lambda x, a0, p: (x.astype(object), a0, p), TypeError, r"x has dtype object"),
    (lambda x, a0, p: ("hello", a0, p), TypeError, r"x has dtype <U5"),
    (lambda x, a0, p: (x, a0, dict(p, ba=np.array([["a"]] * 5))), TypeError,
     r"parameters\['ba'\] has dtype <U1"),
    (lambda x, a0, p: ([[1, 2], [3]], a0, p), TypeError, r"x could not be converted"),
]


@pytest.mark.parametrize("change,error,pattern", BAD_RNN_FORWARD)
def test_rnn_forward_bad_input(rnn, change, error, pattern):
    x, a0, p = rnn
    with pytest.raises(error, match=pattern):
        cyrnn.rnn_forward(*change(x, a0, p))


BAD_LSTM = [
    (lambda x, a0, p: (x, a0, dict(p, Wf=p["Wf"][:, :7])), ValueError,
     r"parameters\['Wf'\] has shape \(5, 7\); expected \(n_a, n_a \+ n_x\) = \(5, 8\)"),
    (lambda x, a0, p: (x, a0, dict(p, bo=np.zeros((4, 1)))), ValueError,
     r"parameters\['bo'\] has shape \(4, 1\); expected \(n_a, 1\) = \(5, 1\)"),
    (lambda x, a0, p: (x, a0, dict(p, Wy=np.zeros((2, 4)))), ValueError,
     r"parameters\['Wy'\] has shape \(2, 4\); expected \(n_y, n_a\) = \(2, 5\)"),
    (lambda x, a0, p: (x, a0, {k: v for k, v in p.items() if k != "bi"}), KeyError,
     r"parameters is missing 'bi' \(update gate bias"),
    (lambda x, a0, p: (x[None], a0, p), ValueError, r"x has shape \(1, 3, 4, 6\); expected 3"),
]


@pytest.mark.parametrize("change,error,pattern", BAD_LSTM)
def test_lstm_forward_bad_input(lstm, change, error, pattern):
    x, a0, p = lstm
    with pytest.raises(error, match=pattern):
        cyrnn.lstm_forward(*change(x, a0, p))


def test_lstm_c0_and_cells_bad_input(lstm):
    x, a0, p = lstm
    with pytest.raises(ValueError, match=r"c0 has shape \(5, 3\); expected \(n_a, m\) = \(5, 4\)"):
        cyrnn.lstm_forward(x, a0, p, c0=a0[:, :3])
    with pytest.raises(ValueError, match=r"c_prev has shape \(5, 2\); expected"):
        cyrnn.lstm_cell_forward(x[:, :, 0], a0, a0[:, :2], p)
    with pytest.raises(ValueError, match=r"xt has shape \(3, 4, 6\); expected 2 dimensions"):
        cyrnn.lstm_cell_forward(x, a0, a0, p)
    with pytest.raises(TypeError, match=r"c_prev is None"):
        cyrnn.lstm_cell_forward(x[:, :, 0], a0, None, p)
    with pytest.raises(TypeError):
        cyrnn.lstm_forward(x, a0, p, a0)  # c0 is keyword-only


def test_backward_bad_input(rnn, lstm):
    x, a0, p = rnn
    _, _, caches = cyrnn.rnn_forward(x, a0, p)
    _, _, caches_r = ref.rnn_forward(x, a0, p)
    for c in (caches, caches_r):
        with pytest.raises(ValueError, match=r"da has shape \(5, 3, 2\); expected \(n_a, m, T_x\) = \(5, 4, 2\)"):
            cyrnn.rnn_backward(np.zeros((5, 3, 2)), c)
        with pytest.raises(ValueError, match=r"da has 7 time steps but caches hold only 6"):
            cyrnn.rnn_backward(np.zeros((5, 4, 7)), c)
        with pytest.raises(ValueError, match=r"da has shape \(5, 4\); expected 3 dimensions"):
            cyrnn.rnn_backward(np.zeros((5, 4)), c)
    with pytest.raises(ValueError, match=r"caches must be the \(steps, x\) pair"):
        cyrnn.rnn_backward(np.zeros((5, 4, 2)), caches[0])
    with pytest.raises(ValueError, match=r"caches must be the \(steps, x\) pair"):
        cyrnn.rnn_backward(np.zeros((5, 4, 2)), None)
    with pytest.raises(ValueError, match=r"caches\[0\]\[1\] must be a tuple of 4"):
        cyrnn.rnn_backward(np.zeros((5, 4, 2)), ([caches_r[0][0], (1, 2)], x))
    bad_step = list(caches_r[0][1])
    bad_step[2] = bad_step[2][:, :2]
    with pytest.raises(ValueError, match=r"caches\[0\]\[1\]\[2\] \(xt\) has shape \(3, 2\)"):
        cyrnn.rnn_backward(np.zeros((5, 4, 2)), ([caches_r[0][0], tuple(bad_step)], x))
    with pytest.raises(ValueError, match=r"caches\[0\] is empty"):
        cyrnn.rnn_backward(np.zeros((5, 4, 0)), ([], x))
    with pytest.raises(ValueError, match=r"da has 3 time steps but caches hold only 2"):
        cyrnn.rnn_backward(np.zeros((5, 4, 3)), (caches_r[0][:2], x))
    with pytest.raises(ValueError, match=r"cache must be a tuple of 4"):
        cyrnn.rnn_cell_backward(np.zeros((5, 4)), caches_r[0][0][:3])
    with pytest.raises(ValueError, match=r"da_next has shape \(4, 5\); expected \(n_a, m\) = \(5, 4\)"):
        cyrnn.rnn_cell_backward(np.zeros((4, 5)), caches_r[0][0])
    bad_p = dict(p, Waa=np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"parameters\['Waa'\] has shape \(5, 4\)"):
        cyrnn.rnn_cell_backward(np.zeros((5, 4)), caches_r[0][0][:3] + (bad_p,))

    x, a0, p = lstm
    _, _, _, caches = cyrnn.lstm_forward(x, a0, p)
    _, _, _, caches_r = ref.lstm_forward(x, a0, p)
    with pytest.raises(ValueError, match=r"caches\[0\]\[0\] must be a tuple of 10"):
        cyrnn.lstm_backward(np.zeros((5, 4, 2)), ([caches_r[0][0][:4]], x))
    # another cell's caches: the message names the forward that made them and the
    # backward that takes them
    rnn_x, rnn_a0, rnn_p = rnn
    rnn_out = ref.rnn_forward(rnn_x, rnn_a0, rnn_p)
    with pytest.raises(ValueError, match=r"look like the caches of rnn_forward .*pass them "
                                         r"to rnn_backward, or pass lstm_backward the caches "
                                         r"of lstm_forward"):
        cyrnn.lstm_backward(np.zeros_like(rnn_out[0]), rnn_out[2])
    with pytest.raises(ValueError, match=r"look like the caches of lstm_forward"):
        cyrnn.gru_backward(np.zeros((5, 4, 2)), caches_r)
    bad_step = list(caches_r[0][0])
    bad_step[5] = bad_step[5][:3]
    with pytest.raises(ValueError, match=r"caches\[0\]\[0\]\[5\] \(it\) has shape \(3, 4\)"):
        cyrnn.lstm_backward(np.zeros((5, 4, 1)), ([tuple(bad_step)], x))
    with pytest.raises(ValueError, match=r"dc_next has shape \(5, 3\)"):
        cyrnn.lstm_cell_backward(np.zeros((5, 4)), np.zeros((5, 3)), caches_r[0][0])
    with pytest.raises(KeyError, match=r"parameters is missing 'Wi'"):
        cyrnn.lstm_cell_backward(np.zeros((5, 4)), np.zeros((5, 4)),
                                 caches_r[0][0][:9] + ({"Wf": 1},))
    with pytest.raises(TypeError, match=r"da has dtype complex128"):
        cyrnn.lstm_backward(np.zeros((5, 4, 2), complex), caches)


def test_too_large_sizes_raise_memory_error():
    # A broadcast view pretends to be huge without using memory.
    x = np.broadcast_to(np.zeros((1, 1, 1)), (2, 2**20, 2**12))
    a0 = np.broadcast_to(np.zeros((1, 1)), (3, 2**20))
    p = rnn_parameters(np.random.default_rng(0), 2, 3, 2)
    with pytest.raises(MemoryError, match="exceeds the 32-bit BLAS index range"):
        cyrnn.rnn_forward(x, a0, p)
    # Sizes that fit BLAS but whose buffers cannot be allocated.
    x = np.broadcast_to(np.zeros((1, 1, 1)), (2, 16, 2**26))
    p = rnn_parameters(np.random.default_rng(0), 2, 1024, 2)
    with pytest.raises(MemoryError):
        cyrnn.rnn_forward(x, np.zeros((1024, 16)), p)


def test_error_messages_name_the_function_inputs():
    # One check that messages are plain sentences, not C-level noise.
    with pytest.raises(ValueError) as info:
        cyrnn.softmax(np.float64(3.0))
    assert re.match(r"x has shape \(\); expected at least 1 dimension", str(info.value))
