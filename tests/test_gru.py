"""The GRU (docs/contract.md §5), both reset variants: against cyrnn.reference
on random shapes, against central finite differences, against PyTorch's
nn.GRU, and the conventions the notebook's other functions keep (caches,
errors, threads, inference without caches)."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cyrnn
import cyrnn.reference as ref
from cyrnn import _engine
from problems import (assert_close, assert_same_gradients, check_gradient, engine_settings,
                      fingerprint, gru_parameters, numerical_gradient, require_peer, sequence)

VARIANTS = {"reset_after": False, "reset_before": True}


def problem(n_x, n_a, n_y, m, T, seed=0, reset_before=False, dtype=np.float64, scale=0.5):
    rng = np.random.default_rng(seed)
    x, a0 = sequence(rng, n_x, n_a, m, T, dtype)
    p = gru_parameters(rng, n_x, n_a, n_y, dtype, scale=scale, reset_before=reset_before)
    return x, a0, p, rng


dims = st.fixed_dictionaries({
    "n_x": st.integers(1, 6), "n_a": st.integers(1, 7), "n_y": st.integers(1, 4),
    "m": st.integers(0, 40), "T": st.integers(1, 9), "seed": st.integers(0, 2**32 - 1),
    "scale": st.sampled_from([0.1, 0.5, 1.0, 3.0]), "reset_before": st.booleans()})


# ---------------------------------------------------------------- against the reference

@given(dims, st.integers(0, 9))
def test_gru_sequence_matches_reference(d, cut):
    x, a0, p, rng = problem(d["n_x"], d["n_a"], d["n_y"], d["m"], d["T"], d["seed"],
                            d["reset_before"], scale=d["scale"])
    a, y, caches = cyrnn.gru_forward(x, a0, p)
    ea, ey, ecaches = ref.gru_forward(x, a0, p)
    assert_close(a, ea)
    assert_close(y, ey)
    assert len(caches) == 2 and caches[1] is x and len(caches[0]) == d["T"]
    for t in range(d["T"]):
        got, want = caches[0][t], ecaches[0][t]
        assert len(got) == 7 and got[6] is p
        for u, v in zip(got[:6], want[:6]):
            assert_close(u, v)
    T_da = max(0, d["T"] - cut % (d["T"] + 1))       # T_da < T_x included, and 0
    da = rng.standard_normal((d["n_a"], d["m"], T_da))
    want = ref.gru_backward(da, ecaches) if T_da else None
    grads = cyrnn.gru_backward(da, caches)
    if want is not None:
        assert_same_gradients(grads, want)
        # caches are interchangeable both ways
        assert_same_gradients(cyrnn.gru_backward(da, ecaches), want)
        assert_same_gradients(ref.gru_backward(da, (list(caches[0]), caches[1])), want)
    else:
        assert grads["dx"].shape == (d["n_x"], d["m"], 0)
        assert all(not g.any() for g in grads.values())


@given(dims)
def test_gru_cells_match_reference(d):
    x, a0, p, rng = problem(d["n_x"], d["n_a"], d["n_y"], d["m"], 1, d["seed"],
                            d["reset_before"], scale=d["scale"])
    xt = x[:, :, 0]
    a_next, yt, cache = cyrnn.gru_cell_forward(xt, a0, p)
    ea, ey, ecache = ref.gru_cell_forward(xt, a0, p)
    assert_close(a_next, ea)
    assert_close(yt, ey)
    assert len(cache) == 7 and cache[1] is a0 and cache[5] is xt and cache[6] is p
    for u, v in zip(cache[:5], ecache[:5]):
        assert_close(u, v)
    da = rng.standard_normal(a0.shape)
    want = ref.gru_cell_backward(da, ecache)
    assert_same_gradients(cyrnn.gru_cell_backward(da, cache), want)
    assert_same_gradients(cyrnn.gru_cell_backward(da, ecache), want)
    assert_same_gradients(ref.gru_cell_backward(da, cache), want)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", [(16, 32, 5, 300, 12), (40, 33, 3, 17, 9), (9, 70, 4, 1, 30)])
def test_larger_gru_shapes_match_reference(variant, shape):
    """Past the kernels' row grouping and into several blocks of steps; m = 1
    (matrix-vector steps)."""
    x, a0, p, rng = problem(*shape, reset_before=VARIANTS[variant])
    a, y, caches = cyrnn.gru_forward(x, a0, p)
    ea, ey, ecaches = ref.gru_forward(x, a0, p)
    assert_close(a, ea, rtol=1e-9, atol=1e-11)
    assert_close(y, ey, rtol=1e-9, atol=1e-11)
    da = rng.standard_normal(a.shape)
    assert_same_gradients(cyrnn.gru_backward(da, caches), ref.gru_backward(da, ecaches),
                          rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_gru_follows_the_float64_result(variant):
    x, a0, p, rng = problem(12, 20, 4, 30, 15, reset_before=VARIANTS[variant])
    a, y, caches = cyrnn.gru_forward(x.astype(np.float32), a0.astype(np.float32),
                                     {k: v.astype(np.float32) for k, v in p.items()})
    ea, ey, ecaches = ref.gru_forward(x, a0, p)
    assert a.dtype == y.dtype == np.float32
    assert_close(a, ea, rtol=2e-4, atol=2e-5)
    da = rng.standard_normal(a.shape)
    grads = cyrnn.gru_backward(da.astype(np.float32), caches)
    want = ref.gru_backward(da, ecaches)
    for key in want:
        assert grads[key].dtype == np.float32
        scale = np.max(np.abs(want[key])) + 1e-30
        assert np.max(np.abs(grads[key] - want[key])) <= 2e-4 * scale, key


# ---------------------------------------------------------------- finite differences

small = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
                  st.integers(1, 4), st.integers(0, 2**32 - 1), st.booleans())


@settings(max_examples=25)
@given(small)
def test_gru_backward_finite_differences(shape):
    n_x, n_a, n_y, m, T, seed, reset_before = shape
    x, a0, p, rng = problem(n_x, n_a, n_y, m, T, seed, reset_before, scale=0.7)
    T_da = int(rng.integers(1, T + 1))
    da = rng.standard_normal((n_a, m, T_da))

    def loss():
        return np.sum(da * cyrnn.gru_forward(x, a0, p)[0][:, :, :T_da])

    g = cyrnn.gru_backward(da, cyrnn.gru_forward(x, a0, p)[2])
    check_gradient(g["dx"], numerical_gradient(loss, x)[:, :, :T_da], "dx")
    check_gradient(g["da0"], numerical_gradient(loss, a0), "da0")
    keys = [k for k in p if k not in ("Wy", "by")]
    assert sorted(g) == sorted(["dx", "da0"] + ["d" + k for k in keys])
    for key in keys:
        check_gradient(g["d" + key], numerical_gradient(loss, p[key]), "d" + key)


@settings(max_examples=25)
@given(small)
def test_gru_cell_backward_finite_differences(shape):
    n_x, n_a, n_y, m, _, seed, reset_before = shape
    x, a0, p, rng = problem(n_x, n_a, n_y, m, 1, seed, reset_before, scale=0.7)
    xt = np.ascontiguousarray(x[:, :, 0])
    da = rng.standard_normal((n_a, m))

    def loss():
        return np.sum(da * cyrnn.gru_cell_forward(xt, a0, p)[0])

    g = cyrnn.gru_cell_backward(da, cyrnn.gru_cell_forward(xt, a0, p)[2])
    check_gradient(g["dxt"], numerical_gradient(loss, xt), "dxt")
    check_gradient(g["da_prev"], numerical_gradient(loss, a0), "da_prev")
    for key in p:
        if key not in ("Wy", "by"):
            check_gradient(g["d" + key], numerical_gradient(loss, p[key]), "d" + key)


# ---------------------------------------------------------------- against PyTorch

def _torch():
    return require_peer("torch", "the comparison with PyTorch's nn.GRU needs it")


def to_torch_gru(torch, p, n_x, n_a):
    """An nn.GRU (float64) with cyrnn's reset-after weights, by docs/contract.md §5's
    mapping read backwards: PyTorch's z is 1 - Γu, so its z rows are -Wu and
    -bu (split between its two biases as any sum allows)."""
    gru = torch.nn.GRU(n_x, n_a).double()
    Wr, Wu = p["Wr"], p["Wu"]
    with torch.no_grad():
        gru.weight_ih_l0.copy_(torch.from_numpy(np.concatenate(
            [Wr[:, n_a:], -Wu[:, n_a:], p["Wcx"]])))
        gru.weight_hh_l0.copy_(torch.from_numpy(np.concatenate(
            [Wr[:, :n_a], -Wu[:, :n_a], p["Wca"]])))
        gru.bias_ih_l0.copy_(torch.from_numpy(np.concatenate(
            [p["br"], -p["bu"], p["bcx"]]).ravel()))
        gru.bias_hh_l0.copy_(torch.from_numpy(np.concatenate(
            [np.zeros_like(p["br"]), np.zeros_like(p["bu"]), p["bca"]]).ravel()))
    return gru


@pytest.mark.parametrize("shape", [(3, 5, 10, 7), (8, 16, 1, 12), (16, 12, 33, 20)])
def test_gru_matches_pytorch_forward_and_gradients(shape):
    torch = _torch()
    n_x, n_a, m, T = shape
    x, a0, p, rng = problem(n_x, n_a, 2, m, T, seed=sum(shape))
    gru = to_torch_gru(torch, p, n_x, n_a)
    tx = torch.from_numpy(x.transpose(2, 1, 0).copy()).requires_grad_()
    th0 = torch.from_numpy(a0.T[None].copy()).requires_grad_()
    out, h_n = gru(tx, th0)
    a, _, caches = cyrnn.gru_forward(x, a0, p)
    assert_close(a, out.detach().numpy().transpose(2, 1, 0), rtol=1e-12, atol=1e-13)
    assert_close(a[:, :, -1], h_n.detach().numpy()[0].T, rtol=1e-12, atol=1e-13)

    da = rng.standard_normal(a.shape)
    out.backward(torch.from_numpy(da.transpose(2, 1, 0).copy()))
    g = cyrnn.gru_backward(da, caches)
    tol = dict(rtol=1e-10, atol=1e-12)
    assert_close(g["dx"], tx.grad.numpy().transpose(2, 1, 0), **tol)
    assert_close(g["da0"], th0.grad.numpy()[0].T, **tol)
    gi = gru.weight_ih_l0.grad.numpy()
    gh = gru.weight_hh_l0.grad.numpy()
    bi, bh = gru.bias_ih_l0.grad.numpy(), gru.bias_hh_l0.grad.numpy()
    r, z, n = slice(0, n_a), slice(n_a, 2 * n_a), slice(2 * n_a, 3 * n_a)
    assert_close(g["dWr"], np.hstack([gh[r], gi[r]]), **tol)
    assert_close(g["dWu"], -np.hstack([gh[z], gi[z]]), **tol)
    assert_close(g["dWcx"], gi[n], **tol)
    assert_close(g["dWca"], gh[n], **tol)
    # each gate's two PyTorch biases get the same gradient, the sum's
    assert_close(g["dbr"][:, 0], bi[r], **tol)
    assert_close(g["dbr"][:, 0], bh[r], **tol)
    assert_close(g["dbu"][:, 0], -bi[z], **tol)
    assert_close(g["dbcx"][:, 0], bi[n], **tol)
    assert_close(g["dbca"][:, 0], bh[n], **tol)


def test_pytorch_weights_map_with_spec_sign_flip():
    """docs/contract.md §5's mapping from a PyTorch GRU with random weights (both biases
    nonzero) to cyrnn's keys gives the same outputs."""
    torch = _torch()
    n_x, n_a, m, T = 4, 6, 5, 8
    torch.manual_seed(0)
    gru = torch.nn.GRU(n_x, n_a).double()
    Wi, Wh = gru.weight_ih_l0.detach().numpy(), gru.weight_hh_l0.detach().numpy()
    bi, bh = gru.bias_ih_l0.detach().numpy()[:, None], gru.bias_hh_l0.detach().numpy()[:, None]
    r, z, n = slice(0, n_a), slice(n_a, 2 * n_a), slice(2 * n_a, 3 * n_a)
    p = {"Wr": np.hstack([Wh[r], Wi[r]]), "br": bi[r] + bh[r],
         "Wu": -np.hstack([Wh[z], Wi[z]]), "bu": -(bi[z] + bh[z]),
         "Wcx": Wi[n], "bcx": bi[n], "Wca": Wh[n], "bca": bh[n],
         "Wy": np.zeros((1, n_a)), "by": np.zeros((1, 1))}
    rng = np.random.default_rng(1)
    x, a0 = sequence(rng, n_x, n_a, m, T)
    out, _ = gru(torch.from_numpy(x.transpose(2, 1, 0).copy()),
                 torch.from_numpy(a0.T[None].copy()))
    a = cyrnn.gru_forward(x, a0, p, cache=False)[0]
    assert_close(a, out.detach().numpy().transpose(2, 1, 0), rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------- conventions

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threads_caches_and_blocks_give_identical_bits(variant, dtype):
    """m = 2100 runs as two chunks; T = 19 in blocks of steps: every way of
    running it computes the same GEMMs and passes."""
    x, a0, p, _ = problem(3, 5, 2, 2100, 19, reset_before=VARIANTS[variant], dtype=dtype)
    base = cyrnn.gru_forward(x, a0, p)
    runs = [cyrnn.gru_forward(x, a0, p, cache=False), cyrnn.gru_forward(x, a0, p, n_threads=2),
            cyrnn.gru_forward(x, a0, p, cache=False, n_threads=3)]
    with engine_settings(scratch_bytes=0):
        runs.append(cyrnn.gru_forward(x, a0, p, cache=False, n_threads=2))
    for run in runs:
        np.testing.assert_array_equal(run[0], base[0])
        np.testing.assert_array_equal(run[1], base[1])


def test_variant_is_chosen_by_the_keys_and_both_sets_are_refused():
    x, a0, p, _ = problem(3, 4, 2, 5, 6)
    both = dict(p, Wc=np.zeros((4, 7)), bc=np.zeros((4, 1)))
    for call in (lambda q: cyrnn.gru_forward(x, a0, q),
                 lambda q: cyrnn.gru_cell_forward(x[:, :, 0], a0, q),
                 lambda q: ref.gru_forward(x, a0, q)):
        with pytest.raises(ValueError, match="both 'Wc'"):
            call(both)
    neither = {k: v for k, v in p.items() if k not in ("Wcx", "Wca", "bcx", "bca")}
    with pytest.raises(KeyError, match="neither 'Wc'.*reset-after"):
        cyrnn.gru_forward(x, a0, neither)
    # one key of a variant missing: named, with its shape
    with pytest.raises(KeyError, match=r"missing 'bca' \(candidate hidden-state bias, "
                                       r"shape \(n_a, 1\)\)"):
        cyrnn.gru_forward(x, a0, {k: v for k, v in p.items() if k != "bca"})
    before = problem(3, 4, 2, 5, 6, reset_before=True)[2]
    with pytest.raises(KeyError, match=r"missing 'bc'"):
        cyrnn.gru_forward(x, a0, {k: v for k, v in before.items() if k != "bc"})
    bad = dict(p, Wca=np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"parameters\['Wca'\] has shape \(4, 5\); expected "
                                         r"\(n_a, n_a\) = \(4, 4\)"):
        cyrnn.gru_forward(x, a0, bad)
    with pytest.raises(TypeError, match="parameters must be a dict"):
        cyrnn.gru_forward(x, a0, [1, 2])


@pytest.mark.parametrize("variant", VARIANTS)
def test_inputs_are_never_modified(variant):
    x, a0, p, rng = problem(3, 4, 2, 5, 6, reset_before=VARIANTS[variant])
    before = fingerprint((x, a0, p))
    a, y, caches = cyrnn.gru_forward(x, a0, p)
    da = rng.standard_normal(a.shape)
    da_before = fingerprint(da)
    cyrnn.gru_backward(da, caches)
    cyrnn.gru_cell_backward(da[:, :, 0], cyrnn.gru_cell_forward(x[:, :, 0], a0, p)[2])
    assert fingerprint((x, a0, p)) == before and fingerprint(da) == da_before


@pytest.mark.parametrize("variant", VARIANTS)
def test_gru_caches_pickle_are_checked_and_read_only(variant):
    x, a0, p, rng = problem(3, 4, 2, 5, 6, reset_before=VARIANTS[variant])
    a, y, caches = cyrnn.gru_forward(x, a0, p)
    steps = caches[0]
    assert isinstance(steps, cyrnn.GRUStepCaches) and len(steps) == 6
    assert not steps.G.flags.writeable and steps.G.shape == (16, 6, 5)
    again = pickle.loads(pickle.dumps(caches))
    da = rng.standard_normal(a.shape)
    assert_same_gradients(cyrnn.gru_backward(da, again), cyrnn.gru_backward(da, caches))
    with pytest.raises(ValueError, match=r"GRUStepCaches.G has shape \(12, 6, 5\); expected "
                                         r"\(4·n_a, T, m\) = \(16, 6, 5\)"):
        cyrnn.GRUStepCaches(steps.A, steps.G[:12], steps.a0, steps.X, steps.x, p)
    # a dict changed to the other variant's keys after the forward pass
    other = problem(3, 4, 2, 5, 6, reset_before=not VARIANTS[variant])[2]
    with pytest.raises(ValueError, match="both 'Wc'"):
        cyrnn.gru_backward(da, (cyrnn.GRUStepCaches(steps.A, steps.G, steps.a0, steps.X,
                                                    steps.x, dict(p, **other)), x))


def test_reset_after_caches_keep_the_forward_candidate_product():
    """Weights changed in place between forward and backward are read when
    backward runs (the notebook's rule), while activations are the forward's:
    the gates, and the reset-after GRU's hc = Wca·a_prev + bca, which cyrnn
    caches and the reference recomputes. With Wca and bca unchanged the two
    agree; hc stays the forward's whatever changes."""
    x, a0, p, rng = problem(3, 4, 2, 5, 6)
    caches = cyrnn.gru_forward(x, a0, p)[2]
    ref_caches = ref.gru_forward(x, a0, p)[2]
    hc = np.array(caches[0].G[8:12])
    for key in ("Wr", "Wu", "Wcx", "br", "bu", "bcx"):
        p[key] *= 1.5
    da = rng.standard_normal((4, 5, 6))
    want = ref.gru_backward(da, ref_caches)
    assert_same_gradients(cyrnn.gru_backward(da, caches), want)
    p["Wca"] *= 1.5
    cyrnn.gru_backward(da, caches)
    np.testing.assert_array_equal(caches[0].G[8:12], hc)
    # one step: the new Wca acts where it multiplies a gradient (da_prev), not
    # on the cached hc, so dWr (from dc~·hc) is unchanged
    x, a0, p, rng = problem(3, 4, 2, 5, 1)
    caches = cyrnn.gru_forward(x, a0, p)[2]
    da = rng.standard_normal((4, 5, 1))
    before = cyrnn.gru_backward(da, caches)
    p["Wca"] *= 1.5
    after = cyrnn.gru_backward(da, caches)
    np.testing.assert_array_equal(after["dWr"], before["dWr"])
    assert not np.allclose(after["da0"], before["da0"])


def test_empty_batch_and_gil_released():
    x, a0, p, _ = problem(3, 4, 2, 0, 6)
    a, y, caches = cyrnn.gru_forward(x, a0, p)
    assert a.shape == (4, 0, 6) and y.shape == (2, 0, 6)
    grads = cyrnn.gru_backward(np.zeros((4, 0, 6)), caches)
    assert grads["dx"].shape == (3, 0, 6) and not grads["dWr"].any()
    x, a0, p, rng = problem(16, 32, 2, 64, 10)
    _engine._gil_probe(True)
    try:
        a, y, caches = cyrnn.gru_forward(x, a0, p)
        assert _engine._gil_probe(True) is False
        cyrnn.gru_backward(rng.standard_normal(a.shape), caches)
        assert _engine._gil_probe(True) is False
    finally:
        _engine._gil_probe(False)
