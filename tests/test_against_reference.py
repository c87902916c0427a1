"""cyrnn against cyrnn.reference on many random shapes, forward and backward."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cyrnn
import cyrnn.reference as ref
from problems import (assert_close, assert_same_gradients, lstm_parameters, rnn_parameters,
                      sequence)

dims = st.fixed_dictionaries({
    "n_x": st.integers(1, 6), "n_a": st.integers(1, 9), "n_y": st.integers(1, 5),
    "m": st.integers(0, 7), "T": st.integers(1, 6), "seed": st.integers(0, 2**32 - 1),
    "scale": st.sampled_from([0.1, 1.0, 3.0]),
})
# Tiny shapes, all combinations of 1 and 2, on top of the random ones.
GRID = [dict(n_x=n_x, n_a=n_a, n_y=n_y, m=m, T=T, seed=7, scale=1.0)
        for n_x in (1, 2) for n_a in (1, 2) for n_y in (1, 2) for m in (1, 2) for T in (1, 2)]


def rnn_case(d, dtype=np.float64):
    rng = np.random.default_rng(d["seed"])
    x, a0 = sequence(rng, d["n_x"], d["n_a"], d["m"], d["T"], dtype, d["scale"])
    return rng, x, a0, rnn_parameters(rng, d["n_x"], d["n_a"], d["n_y"], dtype, d["scale"])


def lstm_case(d, dtype=np.float64):
    rng = np.random.default_rng(d["seed"])
    x, a0 = sequence(rng, d["n_x"], d["n_a"], d["m"], d["T"], dtype, d["scale"])
    return rng, x, a0, lstm_parameters(rng, d["n_x"], d["n_a"], d["n_y"], dtype, d["scale"])


def check_rnn(d):
    rng, x, a0, p = rnn_case(d)
    a, y, caches = cyrnn.rnn_forward(x, a0, p)
    a_r, y_r, caches_r = ref.rnn_forward(x, a0, p)
    assert_close(a, a_r, what="a")
    assert_close(y, y_r, what="y_pred")
    T_da = rng.integers(0, d["T"] + 1)
    da = rng.standard_normal((d["n_a"], d["m"], T_da))
    expected = ref.rnn_backward(da, caches_r) if T_da else None
    for cache in (caches, caches_r):  # cyrnn's backward on both kinds of caches
        grads = cyrnn.rnn_backward(da, cache)
        if expected is not None:
            assert_same_gradients(grads, expected)
    if T_da:  # the reference's backward on cyrnn's caches
        assert_same_gradients(ref.rnn_backward(da, caches), expected)


def check_lstm(d, with_c0=False):
    rng, x, a0, p = lstm_case(d)
    c0 = rng.standard_normal(a0.shape) if with_c0 else None
    a, y, c, caches = cyrnn.lstm_forward(x, a0, p, c0=c0)
    if with_c0:  # the reference has no c0: run its cells from c0
        a_r, y_r, c_r = [], [], []
        a_prev, c_prev, steps = a0, c0, []
        for t in range(d["T"]):
            a_prev, c_prev, yt, cache = ref.lstm_cell_forward(x[:, :, t], a_prev, c_prev, p)
            a_r.append(a_prev), c_r.append(c_prev), y_r.append(yt), steps.append(cache)
        a_r, y_r, c_r = (np.stack(v, axis=2) for v in (a_r, y_r, c_r))
        caches_r = (steps, x)
    else:
        a_r, y_r, c_r, caches_r = ref.lstm_forward(x, a0, p)
    assert_close(a, a_r, what="a")
    assert_close(y, y_r, what="y")
    assert_close(c, c_r, what="c")
    T_da = rng.integers(0, d["T"] + 1)
    da = rng.standard_normal((d["n_a"], d["m"], T_da))
    expected = ref.lstm_backward(da, caches_r) if T_da else None
    for cache in (caches, caches_r):
        grads = cyrnn.lstm_backward(da, cache)
        if expected is not None:
            assert_same_gradients(grads, expected)
    if T_da:
        assert_same_gradients(ref.lstm_backward(da, caches), expected)


@given(dims)
def test_rnn_sequence_matches_reference(d):
    check_rnn(d)


@given(dims, st.booleans())
def test_lstm_sequence_matches_reference(d, with_c0):
    check_lstm(d, with_c0)


@pytest.mark.parametrize("d", GRID, ids=lambda d: "{n_x}{n_a}{n_y}{m}{T}".format(**d))
def test_tiny_grid(d):
    check_rnn(d)
    check_lstm(d)
    check_lstm(d, with_c0=True)


@given(dims)
def test_rnn_cells_match_reference(d):
    rng, x, a0, p = rnn_case(d)
    xt = x[:, :, 0]
    out = cyrnn.rnn_cell_forward(xt, a0, p)
    out_r = ref.rnn_cell_forward(xt, a0, p)
    assert_close(out[0], out_r[0], what="a_next")
    assert_close(out[1], out_r[1], what="yt_pred")
    assert out[2][1] is a0 and out[2][2] is xt and out[2][3] is p
    da_next = rng.standard_normal(a0.shape)
    expected = ref.rnn_cell_backward(da_next, out_r[2])
    assert_same_gradients(cyrnn.rnn_cell_backward(da_next, out[2]), expected)
    assert_same_gradients(cyrnn.rnn_cell_backward(da_next, out_r[2]), expected)
    assert_same_gradients(ref.rnn_cell_backward(da_next, out[2]), expected)


@given(dims)
def test_lstm_cells_match_reference(d):
    rng, x, a0, p = lstm_case(d)
    xt = x[:, :, 0]
    c_prev = rng.standard_normal(a0.shape)
    out = cyrnn.lstm_cell_forward(xt, a0, c_prev, p)
    out_r = ref.lstm_cell_forward(xt, a0, c_prev, p)
    for k, name in enumerate(("a_next", "c_next", "yt_pred")):
        assert_close(out[k], out_r[k], what=name)
    assert len(out[3]) == 10
    for k in range(9):
        assert_close(out[3][k], out_r[3][k], what=f"cache[{k}]")
    da_next = rng.standard_normal(a0.shape)
    dc_next = rng.standard_normal(a0.shape)
    expected = ref.lstm_cell_backward(da_next, dc_next, out_r[3])
    assert_same_gradients(cyrnn.lstm_cell_backward(da_next, dc_next, out[3]), expected)
    assert_same_gradients(cyrnn.lstm_cell_backward(da_next, dc_next, out_r[3]), expected)
    assert_same_gradients(ref.lstm_cell_backward(da_next, dc_next, out[3]), expected)


@given(st.integers(1, 6), st.integers(0, 3), st.integers(0, 2**32 - 1),
       st.sampled_from([1.0, 30.0, 800.0]))
def test_softmax_and_sigmoid_match_reference(n, ndim_extra, seed, scale):
    rng = np.random.default_rng(seed)
    shape = (n,) + tuple(rng.integers(1, 5, ndim_extra))
    x = scale * rng.standard_normal(shape)
    assert_close(cyrnn.softmax(x), ref.softmax(x), what="softmax")
    with np.errstate(over="ignore"):
        expected = ref.sigmoid(x)
    assert_close(cyrnn.sigmoid(x), expected, atol=1e-300, what="sigmoid")


@pytest.mark.parametrize("layout", ["C", "F", "strided", "list", "float16", "scalar"])
def test_softmax_and_sigmoid_of_any_input_match_reference(layout):
    # Only C-contiguous float32/float64 arrays take the compiled fast path; the
    # rest are converted first (cyrnn/_checked.py). Both must agree.
    x = np.random.default_rng(3).standard_normal((4, 6)) * 5
    given_x = {"C": x, "F": np.asfortranarray(x), "strided": x[:, ::2], "list": x.tolist(),
               "float16": x.astype(np.float16), "scalar": np.float64(2.5)}[layout]
    as_float = np.asarray(given_x, dtype=np.float64)
    rtol = 1e-6 if layout == "float16" else 1e-13
    if layout != "scalar":
        np.testing.assert_allclose(cyrnn.softmax(given_x), ref.softmax(as_float), rtol=rtol)
    np.testing.assert_allclose(cyrnn.sigmoid(given_x), ref.sigmoid(as_float), rtol=rtol)


def test_signatures_match_reference():
    # Drop-in: the same positional parameters, so calls written for the
    # notebook's functions bind the same way; cyrnn only adds keyword-only ones.
    import inspect
    for name in ref.__all__:
        ours = inspect.signature(getattr(cyrnn, name)).parameters.values()
        theirs = inspect.signature(getattr(ref, name)).parameters.values()
        assert ([p.name for p in ours if p.kind != p.KEYWORD_ONLY]
                == [p.name for p in theirs if p.kind != p.KEYWORD_ONLY])
        # the reference's keyword-only parameters (lengths) exist in cyrnn too
        assert {p.name for p in theirs if p.kind == p.KEYWORD_ONLY} <= {p.name for p in ours}
        assert getattr(cyrnn, name).__doc__


def test_larger_shapes_match_reference():
    # Sizes where BLAS takes its blocked paths and the C loops their vector paths.
    d = dict(n_x=40, n_a=70, n_y=9, m=37, T=12, seed=3, scale=0.3)
    check_rnn(d)
    check_lstm(d)
    check_lstm(d, with_c0=True)


@pytest.mark.parametrize("m", [333, 1000])
def test_large_outputs_match_reference(m):
    # Outputs of >= 8 MiB leave the time-major buffers through a staging buffer
    # and non-temporal stores (scatter_batch_major): a (48·m·69 doubles) and the
    # backward's dx take that path, with odd row starts (m·T odd) and steps not a
    # multiple of 8; the forward runs in blocks of 9 steps (8192-column input
    # projections, src/_engine.pyx block_steps), so states carry across blocks.
    n_x, n_a, n_y, T = 48, 48, 3, 69
    rng = np.random.default_rng(m)
    x, a0 = sequence(rng, n_x, n_a, m, T)
    da = rng.standard_normal((n_a, m, T))
    for forward, backward, params in (("rnn_forward", "rnn_backward", rnn_parameters),
                                      ("lstm_forward", "lstm_backward", lstm_parameters)):
        p = params(rng, n_x, n_a, n_y, scale=0.3)
        out, out_r = getattr(cyrnn, forward)(x, a0, p), getattr(ref, forward)(x, a0, p)
        assert out[0].nbytes >= 8 << 20
        for u, v in zip(out[:-1], out_r[:-1]):
            assert_close(u, v, rtol=1e-9, atol=1e-11)
        grads, grads_r = getattr(cyrnn, backward)(da, out[-1]), getattr(ref, backward)(da, out_r[-1])
        assert grads["dx"].nbytes >= 8 << 20
        for key in grads_r:  # sums over m·T terms: tolerance relative to the largest entry
            assert_close(grads[key], grads_r[key], rtol=1e-9,
                         atol=1e-11 * np.abs(grads_r[key]).max(), what=key)


def test_large_lstm_cells_match_reference():
    # Above 65536 stacked weight elements the cells run one GEMM per gate.
    rng = np.random.default_rng(11)
    n_x, n_a, n_y, m = 10, 130, 3, 6
    p = lstm_parameters(rng, n_x, n_a, n_y, scale=0.2)
    xt, a_prev, c_prev = (rng.standard_normal((n_x, m)), rng.standard_normal((n_a, m)),
                          rng.standard_normal((n_a, m)))
    out, out_r = cyrnn.lstm_cell_forward(xt, a_prev, c_prev, p), ref.lstm_cell_forward(
        xt, a_prev, c_prev, p)
    for u, v in zip(out[:3], out_r[:3]):
        assert_close(u, v)
    da, dc = rng.standard_normal((n_a, m)), rng.standard_normal((n_a, m))
    assert_same_gradients(cyrnn.lstm_cell_backward(da, dc, out[3]),
                          ref.lstm_cell_backward(da, dc, out_r[3]))


@pytest.mark.parametrize("m", [1, 7, 13, 15, 16, 17, 300])
def test_row_grouping_and_chunking_match_reference(m):
    # The elementwise passes copy rows shorter than 16 into buffers of 240
    # elements, several rows per group (n_a = 41 rows make 3-41 groups, the last
    # one partial), and process longer rows in place in chunks of 256 columns.
    d = dict(n_x=3, n_a=41, n_y=4, m=m, T=3, seed=m, scale=1.0)
    check_rnn(d)
    check_lstm(d)
    check_lstm(d, with_c0=True)
    rng, x, a0, p = lstm_case(d)
    c_prev = rng.standard_normal(a0.shape)
    out = cyrnn.lstm_cell_forward(x[:, :, 0], a0, c_prev, p)
    out_r = ref.lstm_cell_forward(x[:, :, 0], a0, c_prev, p)
    for u, v in zip(out[:3], out_r[:3]):
        assert_close(u, v)
    da, dc = rng.standard_normal(a0.shape), rng.standard_normal(a0.shape)
    assert_same_gradients(cyrnn.lstm_cell_backward(da, dc, out[3]),
                          ref.lstm_cell_backward(da, dc, out_r[3]))


@pytest.mark.parametrize("n_a, m, T", [(41, 1, 2), (41, 10, 3), (41, 31, 1), (41, 32, 2),
                                       (130, 31, 2), (512, 3, 2)])
def test_gemm_orientation_paths_match_reference(n_a, m, T):
    # The backward GEMMs pick their BLAS orientation by shape (src/_blas.pxd).
    # gemm_abt: the weight gradients dW = dZ·Xᵀ copy Xᵀ first when the inner size
    # k is below 32 and rows·cols·k ≤ 1e6 (cells: k = m; sequences: k = m for
    # step 0, (T-1)·m and T·m for the rest), so these shapes take the copy, the
    # plain path and both in one call. gemm_atb: Wᵀ·dZ is computed transposed
    # for weights of ≥ 2^18 elements in float64 (n_a = 512: the RNN's Waa, the
    # LSTM's stacked W, and the LSTM cell's per-gate accumulation).
    d = dict(n_x=3, n_a=n_a, n_y=4, m=m, T=T, seed=m, scale=1.0)
    for case, forward, backward, cell_forward, cell_backward in (
            (rnn_case, "rnn_forward", "rnn_backward", "rnn_cell_forward", "rnn_cell_backward"),
            (lstm_case, "lstm_forward", "lstm_backward", "lstm_cell_forward",
             "lstm_cell_backward")):
        rng, x, a0, p = case(d)
        da = rng.standard_normal((n_a, m, T))
        caches = getattr(ref, forward)(x, a0, p)[-1]
        assert_same_gradients(getattr(cyrnn, backward)(da, caches),
                              getattr(ref, backward)(da, caches))
        step = caches[0][0]
        upstream = (da[:, :, 0],) if case is rnn_case else (da[:, :, 0], da[:, :, -1])
        assert_same_gradients(getattr(cyrnn, cell_backward)(*upstream, step),
                              getattr(ref, cell_backward)(*upstream, step))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gradients_are_independent_writeable_arrays(dtype):
    # The LSTM gradient dicts hold views of one stacked buffer per kind (made in
    # Cython); each must behave like the reference's separate arrays.
    d = dict(n_x=3, n_a=4, n_y=2, m=5, T=3, seed=1, scale=1.0)
    rng, x, a0, p = lstm_case(d, dtype)
    a, y, c, caches = cyrnn.lstm_forward(x, a0, p)
    da = rng.standard_normal(a.shape).astype(dtype)
    step = caches[0][1]
    for grads, grads_r in ((cyrnn.lstm_backward(da, caches), ref.lstm_backward(da, caches)),
                           (cyrnn.lstm_cell_backward(da[:, :, 1], da[:, :, 0], step),
                            ref.lstm_cell_backward(da[:, :, 1], da[:, :, 0], step))):
        assert list(grads) == list(grads_r)
        for key, g in grads.items():
            assert type(g) is np.ndarray and g.dtype == dtype, key
            assert g.shape == grads_r[key].shape, key
            assert g.flags.c_contiguous and g.flags.writeable, key
        before = {k: g.copy() for k, g in grads.items()}
        for g in grads.values():  # writing one gradient leaves the others alone
            g += 1
        for key, g in grads.items():
            np.testing.assert_array_equal(g, before[key] + 1, err_msg=key)
