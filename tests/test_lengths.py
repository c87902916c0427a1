"""Variable-length batches (docs/contract.md §6): `lengths=` on rnn_forward,
lstm_forward and gru_forward (both GRU variants) and their backward through the
caches, against cyrnn.reference and against each column run alone on its own
steps, against finite differences and PyTorch's packed sequences."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cyrnn
import cyrnn.reference as ref
from cyrnn import _engine
from problems import (assert_close, assert_same_gradients, engine_settings,
                      fingerprint, numerical_gradient, problem, require_peer)

KINDS = ("rnn", "lstm", "gru", "gru_reset_before")


def cell(kind):
    return kind.split("_")[0]


def forward(module, kind, x, a0, p, **kw):
    """(a, y, caches) (and c for the LSTM, as out[2]) of module's forward."""
    return getattr(module, cell(kind) + "_forward")(x, a0, p, **kw)


def backward(module, kind, da, caches):
    return getattr(module, cell(kind) + "_backward")(da, caches)


cases = st.fixed_dictionaries({
    "kind": st.sampled_from(KINDS), "n_x": st.integers(1, 5), "n_a": st.integers(1, 6),
    "n_y": st.integers(1, 3), "m": st.integers(1, 12), "T": st.integers(1, 8),
    "seed": st.integers(0, 2**32 - 1)})


@given(cases, st.data())
def test_lengths_match_reference_and_each_column_alone(d, data):
    kind, m, T = d["kind"], d["m"], d["T"]
    x, a0, p, rng = problem(kind, d["n_x"], d["n_a"], d["n_y"], m, T, d["seed"])
    # any lengths in 0..T: unsorted, duplicates, 0 and T included
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=m, max_size=m)))
    x[:, lengths[:, None] <= np.arange(T)] = np.nan       # padding is never read
    out = forward(cyrnn, kind, x, a0, p, lengths=lengths)
    want = forward(ref, kind, np.nan_to_num(x), a0, p, lengths=lengths)
    for got, expected in zip(out[:-1], want[:-1]):
        assert_close(got, expected)
    caches = out[-1]
    assert len(caches) == 3 and caches[1] is x and list(caches[2]) == list(lengths)
    T_da = int(rng.integers(0, T + 1))
    da = rng.standard_normal((d["n_a"], m, T_da))
    grads = backward(cyrnn, kind, da, caches)
    if T_da:
        assert_same_gradients(grads, backward(ref, kind, da, want[-1]), rtol=1e-9, atol=1e-11)
        assert_same_gradients(backward(cyrnn, kind, da, want[-1]), grads, rtol=1e-9,
                              atol=1e-11)
    # every column alone on its own steps (docs/contract.md §6), gradients summed over columns
    total = {k: np.zeros_like(v) for k, v in grads.items() if k not in ("dx", "da0")}
    for j in range(m):
        L = int(lengths[j])
        if L == 0:
            assert not out[0][:, j].any() and not grads["da0"][:, j].any()
            continue
        alone = forward(cyrnn, kind, np.ascontiguousarray(x[:, j:j + 1, :L]), a0[:, j:j + 1], p)
        assert_close(out[0][:, j:j + 1, :L], alone[0])
        assert not out[0][:, j, L:].any() and not out[1][:, j, L:].any()
        if cell(kind) == "lstm":
            assert_close(out[2][:, j:j + 1, :L], alone[2])
        steps = min(L, T_da)
        if steps:
            g = backward(cyrnn, kind, np.ascontiguousarray(da[:, j:j + 1, :steps]), alone[-1])
            assert_close(grads["dx"][:, j:j + 1, :steps], g["dx"], rtol=1e-9, atol=1e-11)
            assert_close(grads["da0"][:, j:j + 1], g["da0"], rtol=1e-9, atol=1e-11)
            for k in total:
                total[k] += g[k]
        assert not grads["dx"][:, j, steps:].any()
    for k in total:
        assert_close(grads[k], total[k], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("plan", ["transposed", "direct"])
@pytest.mark.parametrize("kind", ["lstm", "gru_reset_before"])
def test_unbalanced_chunks_stay_inside_their_workspace(kind, plan):
    """Chunks balanced by work can be far wider than an even split (195 long
    columns, then 1905 of one step): each chunk's workspace, plan scratch
    included, holds the widest (the debug and sanitizer builds check it). Any
    n_threads and cache give the same bits, close to the reference."""
    x, a0, p, rng = problem(kind, 3, 6, 2, 2100, 20, seed=3)
    lengths = np.r_[np.full(300, 20), np.ones(1800, int)]
    with engine_settings(plan=plan):
        base = forward(cyrnn, kind, x, a0, p, lengths=lengths)
        runs = [forward(cyrnn, kind, x, a0, p, lengths=lengths, cache=False, n_threads=t)
                for t in (1, 2)]
    for run in runs:
        for got, want in zip(run[:-1], base[:-1]):
            np.testing.assert_array_equal(got, want)
    for got, expected in zip(base[:-1], forward(ref, kind, x, a0, p, lengths=lengths)[:-1]):
        assert_close(got, expected, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threads_caches_and_chunks_give_identical_bits(kind, dtype):
    """m = 2100 runs as two chunks balanced by work: any n_threads, with or
    without caches, computes the same bits; the reference agrees."""
    x, a0, p, rng = problem(kind, 3, 5, 2, 2100, 9, dtype=dtype)
    lengths = rng.integers(0, 10, 2100)
    base = forward(cyrnn, kind, x, a0, p, lengths=lengths)
    for kw in (dict(cache=False), dict(n_threads=2), dict(cache=False, n_threads=3)):
        run = forward(cyrnn, kind, x, a0, p, lengths=lengths, **kw)
        for got, want in zip(run[:-1], base[:-1]):
            np.testing.assert_array_equal(got, want)
    if dtype == np.float64:
        want = forward(ref, kind, x, a0, p, lengths=lengths)
        for got, expected in zip(base[:-1], want[:-1]):
            assert_close(got, expected, rtol=1e-9, atol=1e-11)
        da = rng.standard_normal(base[0].shape)
        assert_same_gradients(backward(cyrnn, kind, da, base[-1]),
                              backward(ref, kind, da, want[-1]), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_all_full_lengths_take_the_path_without_lengths(kind):
    x, a0, p, rng = problem(kind, 3, 4, 2, 6, 5)
    plain = forward(cyrnn, kind, x, a0, p)
    full = forward(cyrnn, kind, x, a0, p, lengths=np.full(6, 5))
    for u, v in zip(full[:-1], plain[:-1]):
        np.testing.assert_array_equal(u, v)
    assert len(full[-1]) == 3 and full[-1][0].lengths is not None
    da = rng.standard_normal(plain[0].shape)
    g, h = backward(cyrnn, kind, da, full[-1]), backward(cyrnn, kind, da, plain[-1])
    for k in h:
        np.testing.assert_array_equal(g[k], h[k])
    again = pickle.loads(pickle.dumps(full[-1]))
    assert_same_gradients(backward(cyrnn, kind, da, again), h)


@settings(max_examples=20)
@given(st.sampled_from(KINDS), st.integers(0, 2**32 - 1))
def test_backward_with_lengths_finite_differences(kind, seed):
    x, a0, p, rng = problem(kind, 2, 3, 2, 3, 4, seed)
    lengths = rng.integers(0, 5, 3)
    da = rng.standard_normal((3, 3, 4))

    def loss():
        return np.sum(da * forward(cyrnn, kind, x, a0, p, lengths=lengths)[0])

    g = backward(cyrnn, kind, da, forward(cyrnn, kind, x, a0, p, lengths=lengths)[-1])
    for name, array in [("dx", x), ("da0", a0)] + [("d" + k, p[k]) for k in p
                                                   if k not in ("Wy", "Wya", "by")]:
        np.testing.assert_allclose(g[name], numerical_gradient(loss, array), rtol=1e-5,
                                   atol=1e-7, err_msg=name)


def test_bad_lengths_are_refused_with_their_reason():
    x, a0, p, _ = problem("lstm", 3, 4, 2, 5, 6)
    cases = [([1, 2, 3], ValueError, r"lengths has shape \(3,\); expected \(m,\) = \(5,\)"),
             ([1, 2, 3, 4, 7], ValueError, r"lengths\[4\] = 7 is out of range; every length "
                                           r"must be in 0 \.\. T_x = 6"),
             ([1, -1, 3, 4, 5], ValueError, r"lengths\[1\] = -1 is out of range"),
             (np.array([1., 2, 3, 4, 5]), TypeError, "lengths must be integers; got dtype "
                                                     "float64"),
             (np.ones((5, 1), int), ValueError, r"lengths has shape \(5, 1\)"),
             ("abcde", TypeError, "lengths must be an array of integers"),
             ([True] * 5, TypeError, "lengths must be an array of integers")]
    for lengths, error, message in cases:
        for kind in ("rnn", "lstm", "gru"):
            x, a0, p, _ = problem(kind, 3, 4, 2, 5, 6)
            with pytest.raises(error, match=message):
                forward(cyrnn, kind, x, a0, p, lengths=lengths)


@pytest.mark.parametrize("kind", KINDS)
def test_caches_with_lengths_are_checked_and_kept_consistent(kind):
    x, a0, p, rng = problem(kind, 3, 4, 2, 5, 6)
    lengths = np.array([6, 0, 3, 1, 4])
    out = forward(cyrnn, kind, x, a0, p, lengths=lengths)
    steps, _, kept = out[-1]
    before = fingerprint((x, a0, p))
    assert steps.A.shape == (4, int(lengths.sum())) and not steps.A.flags.writeable
    assert not kept.flags.writeable
    # step tuples: the notebook's, zeros for the columns that do not run
    for t in range(6):
        tup = steps[t]
        assert not tup[0][:, lengths <= t].any()
        assert_close(tup[0][:, lengths > t], out[0][:, lengths > t, t])
    da = rng.standard_normal(out[0].shape)
    want = backward(cyrnn, kind, da, out[-1])
    assert_same_gradients(backward(cyrnn, kind, da, pickle.loads(pickle.dumps(out[-1]))), want)
    with pytest.raises(ValueError, match=r"caches\[2\] \(lengths\) differs"):
        backward(cyrnn, kind, da, (steps, x, lengths[::-1].copy()))
    cls, args = steps.__reduce__()
    with pytest.raises(ValueError, match=r"\.A has shape"):
        cls(*([args[0][:, :-1]] + list(args[1:])))
    with pytest.raises(ValueError, match="lengths"):
        cls(*(list(args[:-1]) + [lengths[:4]]))
    assert fingerprint((x, a0, p)) == before


def test_lstm_c0_and_gil_with_lengths():
    x, a0, p, rng = problem("lstm", 8, 16, 2, 40, 12)
    c0 = rng.standard_normal(a0.shape)
    lengths = rng.integers(0, 13, 40)
    _engine._gil_probe(True)
    try:
        a, y, c, caches = cyrnn.lstm_forward(x, a0, p, c0=c0, lengths=lengths)
        assert _engine._gil_probe(True) is False
        cyrnn.lstm_backward(rng.standard_normal(a.shape), caches)
        assert _engine._gil_probe(True) is False
    finally:
        _engine._gil_probe(False)
    for j in range(40):
        L = int(lengths[j])
        if L:
            alone = cyrnn.lstm_forward(np.ascontiguousarray(x[:, j:j + 1, :L]), a0[:, j:j + 1],
                                       p, c0=c0[:, j:j + 1])
            assert_close(c[:, j:j + 1, :L], alone[2])


# ---------------------------------------------------------------- PyTorch packed sequences

def torch_module(torch, kind, p, n_x, n_a):
    """nn.RNN/LSTM/GRU (float64) with cyrnn's weights."""
    if kind == "rnn":
        net = torch.nn.RNN(n_x, n_a).double()
        W_ih, W_hh, b_ih = p["Wax"], p["Waa"], p["ba"][:, 0]
        b_hh = np.zeros(n_a)
    elif kind == "lstm":
        net = torch.nn.LSTM(n_x, n_a).double()
        W = np.concatenate([p["W" + g] for g in "ifco"])     # PyTorch's i, f, g, o
        W_ih, W_hh = W[:, n_a:], W[:, :n_a]
        b_ih, b_hh = np.concatenate([p["b" + g] for g in "ifco"])[:, 0], np.zeros(4 * n_a)
    else:
        net = torch.nn.GRU(n_x, n_a).double()
        W_ih = np.concatenate([p["Wr"][:, n_a:], -p["Wu"][:, n_a:], p["Wcx"]])
        W_hh = np.concatenate([p["Wr"][:, :n_a], -p["Wu"][:, :n_a], p["Wca"]])
        b_ih = np.concatenate([p["br"], -p["bu"], p["bcx"]])[:, 0]
        b_hh = np.concatenate([0 * p["br"], 0 * p["bu"], p["bca"]])[:, 0]
    with torch.no_grad():
        for name, value in (("weight_ih_l0", W_ih), ("weight_hh_l0", W_hh),
                            ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)):
            getattr(net, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return net


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_lengths_match_pytorch_packed_sequences(kind):
    torch = require_peer("torch", "the comparison with PyTorch's packed sequences needs it")
    n_x, n_a, m, T = 4, 6, 7, 9
    x, a0, p, rng = problem(kind, n_x, n_a, 2, m, T, seed=3)
    lengths = np.array([9, 1, 4, 9, 2, 7, 5])      # PyTorch needs lengths >= 1
    net = torch_module(torch, kind, p, n_x, n_a)
    tx = torch.from_numpy(x.transpose(2, 1, 0).copy()).requires_grad_()
    th0 = torch.from_numpy(a0.T[None].copy()).requires_grad_()
    packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.from_numpy(lengths),
                                                     enforce_sorted=False)
    state = (th0, torch.zeros_like(th0)) if kind == "lstm" else th0
    out, final = net(packed, state)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    h_n = final[0] if kind == "lstm" else final
    result = forward(cyrnn, kind, x, a0, p, lengths=lengths)
    a = result[0]
    tol = dict(rtol=1e-12, atol=1e-13)
    assert_close(a, out.detach().numpy().transpose(2, 1, 0), **tol)
    last = a[:, np.arange(m), lengths - 1]                 # each column's final state
    assert_close(last, h_n.detach().numpy()[0].T, **tol)
    if kind == "lstm":
        assert_close(result[2][:, np.arange(m), lengths - 1], final[1].detach().numpy()[0].T,
                     **tol)
    da = rng.standard_normal(a.shape)
    out.backward(torch.from_numpy(da.transpose(2, 1, 0).copy()))
    g = backward(cyrnn, kind, da, result[-1])
    tol = dict(rtol=1e-10, atol=1e-12)
    assert_close(g["dx"], tx.grad.numpy().transpose(2, 1, 0), **tol)
    assert_close(g["da0"], th0.grad.numpy()[0].T, **tol)
    gi, gh = net.weight_ih_l0.grad.numpy(), net.weight_hh_l0.grad.numpy()
    bi = net.bias_ih_l0.grad.numpy()
    if kind == "rnn":
        assert_close(g["dWax"], gi, **tol)
        assert_close(g["dWaa"], gh, **tol)
        assert_close(g["dba"][:, 0], bi, **tol)
    elif kind == "lstm":
        for q, gate in enumerate("ifco"):
            rows = slice(q * n_a, (q + 1) * n_a)
            assert_close(g["dW" + gate], np.hstack([gh[rows], gi[rows]]), **tol)
            assert_close(g["db" + gate][:, 0], bi[rows], **tol)
    else:
        r, z, n = slice(0, n_a), slice(n_a, 2 * n_a), slice(2 * n_a, 3 * n_a)
        assert_close(g["dWr"], np.hstack([gh[r], gi[r]]), **tol)
        assert_close(g["dWu"], -np.hstack([gh[z], gi[z]]), **tol)
        assert_close(g["dWcx"], gi[n], **tol)
        assert_close(g["dWca"], gh[n], **tol)
        assert_close(g["dbca"][:, 0], net.bias_hh_l0.grad.numpy()[n], **tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_outputs_match_reference_with_lengths(dtype):
    """Outputs past 8 MB leave the packed buffers through the staging path
    (unpack_columns); the reference checks every element, padding included."""
    x, a0, p, rng = problem("lstm", 8, 64, 3, 2100, 20, dtype=dtype)
    lengths = rng.integers(0, 21, 2100)
    a, y, c, caches = cyrnn.lstm_forward(x, a0, p, lengths=lengths)
    assert a.nbytes >= 8 << 20
    want = ref.lstm_forward(*(v.astype(np.float64) for v in (x, a0)),
                            {k: v.astype(np.float64) for k, v in p.items()}, lengths=lengths)
    tol = 1e-10 if dtype == np.float64 else 2e-5
    for got, expected in zip((a, y, c), want[:3]):
        assert_close(got, expected, rtol=tol, atol=tol)
    da = rng.standard_normal(a.shape).astype(dtype)
    grads = cyrnn.lstm_backward(da, caches)
    expected = ref.lstm_backward(da.astype(np.float64), want[-1])
    assert_close(grads["dx"], expected["dx"], rtol=tol * 10, atol=tol * 10)


def reversed_within(a, lengths):
    """a (·, m, T) with each column's first lengths[j] steps in reverse order,
    zeros after them."""
    out = np.zeros_like(a)
    for j, L in enumerate(lengths):
        out[:, j, :L] = a[:, j, :L][:, ::-1]
    return out


@settings(max_examples=30)
@given(cases, st.data())
def test_reverse_direction_with_lengths_runs_each_column_from_its_end(d, data):
    """Reversed with lengths (bidirectional models, PyTorch's packed reverse
    direction), column j runs its steps lengths[j]-1 .. 0 from a0: the forward
    pass over x reversed within each column's length, outputs reversed back;
    gradients likewise. Natively: no reversed copy of x."""
    kind, m, T = d["kind"], d["m"], d["T"]
    x, a0, p, rng = problem(kind, d["n_x"], d["n_a"], d["n_y"], m, T, d["seed"])
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=m, max_size=m)))
    c0 = rng.standard_normal(a0.shape) if cell(kind) == "lstm" else None
    a, y, c, caches = _engine._run_direction(cell(kind), x, a0, p, c0=c0, lengths=lengths,
                                             reverse=True, cache=True)
    flipped = reversed_within(x, lengths)
    want = _engine._run_direction(cell(kind), flipped, a0, p, c0=c0, lengths=lengths,
                                  cache=True)
    if c0 is None:      # (the forward direction against the reference, which has no c0)
        assert_close(want[0], forward(ref, kind, flipped, a0, p, lengths=lengths)[0])
    assert_close(a, reversed_within(want[0], lengths))
    assert_close(y, reversed_within(want[1], lengths))
    if c is not None:
        assert_close(c, reversed_within(want[2], lengths))
    again = _engine._run_direction(cell(kind), x, a0, p, c0=c0, lengths=lengths, reverse=True,
                                   n_threads=2)
    np.testing.assert_array_equal(again[0], a)
    da = rng.standard_normal(a.shape)
    grads = _engine._backward_direction(cell(kind), da, caches, reverse=True)
    expected = backward(cyrnn, kind, reversed_within(da, lengths), want[-1])
    assert list(grads) == list(expected)
    for key in expected:
        got = reversed_within(grads[key], lengths) if key == "dx" else grads[key]
        assert_close(got, expected[key], rtol=1e-9, atol=1e-11)


def test_the_callers_lengths_array_is_left_alone():
    x, a0, p, _ = problem("lstm", 3, 4, 2, 5, 6)
    lengths = np.array([6, 0, 3, 1, 4])
    caches = cyrnn.lstm_forward(x, a0, p, lengths=lengths)[-1]
    assert lengths.flags.writeable and caches[2] is not lengths
    lengths[0] = 2          # the caches keep their own copy
    assert caches[2][0] == 6 and not caches[2].flags.writeable


@pytest.mark.parametrize("kind", KINDS)
def test_reversed_wide_batches_carry_states_from_a0_where_no_column_started(kind):
    """Reversed, with lengths, in chunks (m >= 2048) run in the workspace: a
    chunk of short columns has started none of them in the late blocks, so the
    states it carries to the next block are still a0 (rows m apart) and c0 (None:
    zeros). They used to be read with the workspace's row stride: a crash
    (found through a bidirectional Model at m = 4096). Each column equals itself
    run alone, and cache=False the cached call's bits."""
    m, T = 4096, 20
    x, a0, p, rng = problem(kind, 3, 4, 2, m, T, 1)
    lengths = rng.integers(1, T + 1, m)
    c0 = rng.standard_normal(a0.shape) if kind == "lstm" else None
    got = _engine._run_direction(cell(kind), x, a0, p, c0=c0, lengths=lengths, reverse=True,
                                 cache=False)[0]
    cached = _engine._run_direction(cell(kind), x, a0, p, c0=c0, lengths=lengths, reverse=True,
                                    cache=True)[0]
    np.testing.assert_array_equal(got, cached)
    for j in rng.choice(m, 12, replace=False):
        alone = _engine._run_direction(cell(kind), x[:, j:j + 1], a0[:, j:j + 1], p,
                                       c0=None if c0 is None else c0[:, j:j + 1],
                                       lengths=lengths[j:j + 1], reverse=True, cache=False)[0]
        assert_close(got[:, j:j + 1], alone, rtol=1e-12, atol=1e-12, what=f"column {j}")
    if kind == "lstm":      # and c0 None (zeros)
        got = _engine._run_direction("lstm", x, a0, p, lengths=lengths, reverse=True,
                                     cache=False)[0]
        np.testing.assert_array_equal(got, _engine._run_direction(
            "lstm", x, a0, p, lengths=lengths, reverse=True, cache=True)[0])
