"""cyrnn.models (docs/contract.md §7): stacked and bidirectional models with
PyTorch's weights, against PyTorch itself (real modules, float64 to 1e-12,
float32 to 1e-5, with and without lengths), and the model's files."""
import pickle

import numpy as np
import pytest

import cyrnn
from cyrnn import models
from problems import assert_close, require_peer


def torch():
    return require_peer("torch", "the models are checked against PyTorch's modules")


def make(t, cell, n_x, n_a, layers, bidirectional, bias=True, dtype=None):
    cls = {"rnn": t.nn.RNN, "lstm": t.nn.LSTM, "gru": t.nn.GRU}[cell]
    t.manual_seed(layers * 10 + bidirectional)
    net = cls(n_x, n_a, num_layers=layers, bidirectional=bidirectional, bias=bias)
    with t.no_grad():     # biases nonzero and distinct, so both of PyTorch's count
        for name, value in net.named_parameters():
            value.uniform_(-0.6, 0.6)
    return net.double() if dtype is None else net.to(dtype)


def run_torch(t, net, x, lengths=None):
    tx = t.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0)))
    T = x.shape[2]
    if lengths is not None:
        tx = t.nn.utils.rnn.pack_padded_sequence(tx, t.from_numpy(lengths),
                                                 enforce_sorted=False)
    with t.no_grad():
        out, final = net(tx)
    if lengths is not None:
        out = t.nn.utils.rnn.pad_packed_sequence(out, total_length=T)[0]
    h = final[0] if isinstance(final, tuple) else final
    c = final[1] if isinstance(final, tuple) else None
    to = lambda v: v.numpy()                              # noqa: E731
    return (to(out).transpose(2, 1, 0), to(h).transpose(0, 2, 1),
            None if c is None else to(c).transpose(0, 2, 1))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers, bidirectional, bias", [(1, False, True), (2, True, True),
                                                         (3, False, False), (2, True, False)])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_models_match_pytorch(cell, layers, bidirectional, bias, with_lengths):
    t = torch()
    n_x, n_a, m, T = 5, 7, 6, 9
    net = make(t, cell, n_x, n_a, layers, bidirectional, bias)
    rng = np.random.default_rng(layers)
    x = rng.standard_normal((n_x, m, T))
    lengths = np.array([9, 1, 4, 9, 2, 7]) if with_lengths else None
    for model in (models.from_torch(net), models.from_torch(net.state_dict()),
                  models.from_torch({k: v.numpy() for k, v in net.state_dict().items()})):
        out, final = model(x, lengths=lengths)
        want, h, c = run_torch(t, net, x, lengths)
        tol = dict(rtol=1e-12, atol=1e-13)
        assert_close(out, want, **tol)
        assert_close(final["a"], h, **tol)
        if cell == "lstm":
            assert_close(final["c"], c, **tol)
    assert (model.num_layers, model.bidirectional) == (layers, bidirectional)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_float32_models_match_pytorch(cell):
    t = torch()
    net = make(t, cell, 6, 8, 2, True, dtype=t.float32)
    model = models.from_torch(net)
    assert model.dtype == np.float32
    x = np.random.default_rng(0).standard_normal((6, 4, 11)).astype(np.float32)
    out, final = model(x)
    want, h, _ = run_torch(t, net, x)
    assert out.dtype == np.float32
    assert_close(out, want, rtol=1e-5, atol=1e-5)
    assert_close(final["a"], h, rtol=1e-5, atol=1e-5)


def test_round_trips_files_and_pickle(tmp_path):
    t = torch()
    net = make(t, "gru", 4, 5, 2, True)
    model = models.from_torch(net)
    x = np.random.default_rng(1).standard_normal((4, 3, 6))
    want = model(x)[0]
    again = models.from_torch(model.to_torch_state_dict())
    np.testing.assert_array_equal(again(x)[0], want)
    fresh = make(t, "gru", 4, 5, 2, True)
    fresh.load_state_dict(model.to_torch_state_dict())
    assert_close(run_torch(t, fresh, x)[0], want, rtol=1e-12, atol=1e-13)
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(models.load(tmp_path / "m.npz")(x)[0], want)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model))(x)[0], want)


def test_head_initial_state_and_errors():
    t = torch()
    net = make(t, "lstm", 3, 4, 2, False)
    head = {"Wy": np.random.default_rng(2).standard_normal((5, 4)), "by": np.zeros((5, 1))}
    model = models.from_torch(net, head=head)
    x = np.random.default_rng(3).standard_normal((3, 2, 4))
    y, _ = model(x, lengths=[4, 2])
    hidden = models.from_torch(net)(x)[0]
    assert_close(y[:, 0], cyrnn.softmax(head["Wy"] @ hidden[:, 0]), rtol=1e-12, atol=1e-13)
    assert not y[:, 1, 2:].any()
    state = {"a": np.ones((2, 4, 2)), "c": np.zeros((2, 4, 2))}
    tx = t.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0)))
    with t.no_grad():
        want = net(tx, (t.ones(2, 2, 4, dtype=t.float64), t.zeros(2, 2, 4, dtype=t.float64)))[0]
    assert_close(models.from_torch(net)(x, initial_state=state)[0],
                 want.numpy().transpose(2, 1, 0), rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="proj_size=2 is not supported"):
        models.from_torch(t.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="nonlinearity='relu' is not supported"):
        models.from_torch(t.nn.RNN(3, 4, nonlinearity="relu"))
    with pytest.raises(ValueError, match=r"x has shape \(4, 2, 4\); its first dimension n_x "
                                         r"must be 3"):
        model(np.zeros((4, 2, 4)))
    with pytest.raises(ValueError, match=r"initial_state\['a'\] has shape"):
        model(x, initial_state={"a": np.zeros((1, 4, 2))})


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_directions_in_parallel_are_bit_identical(cell, monkeypatch):
    """n_threads > 1 runs a layer's two directions at once (above a size, here
    forced to 0): the same numbers as one after the other, lengths or not."""
    monkeypatch.setattr(models.model, "_PARALLEL_DIRECTIONS_MACS", 0)
    rng = np.random.default_rng(9)
    n_x, n_a = 5, 6

    def direction(n_in):
        if cell == "lstm":
            return {f"{w}{g}": rng.standard_normal((n_a, n_a + n_in) if w == "W" else (n_a, 1))
                    for g in "fico" for w in "Wb"}
        return {"Wr": rng.standard_normal((n_a, n_a + n_in)), "br": rng.standard_normal((n_a, 1)),
                "Wu": rng.standard_normal((n_a, n_a + n_in)), "bu": rng.standard_normal((n_a, 1)),
                "Wc": rng.standard_normal((n_a, n_a + n_in)), "bc": rng.standard_normal((n_a, 1))}

    model = models.Model(cell, [[direction(n_x), direction(n_x)],
                                [direction(2 * n_a), direction(2 * n_a)]])
    x = rng.standard_normal((n_x, 7, 12))
    for lengths in (None, [12, 3, 5, 12, 1, 8, 2]):
        want, want_final = model(x, lengths=lengths)
        for threads in (2, 3, None):
            out, final = model(x, lengths=lengths, n_threads=threads)
            np.testing.assert_array_equal(out, want)
            for key in want_final:
                np.testing.assert_array_equal(final[key], want_final[key])
    with pytest.raises(ValueError, match="n_threads must be >= 1"):
        model(x, n_threads=0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_engine_writes_a_layers_rows_in_place(cell):
    """_run_direction's out: the hidden states written into a given array, in
    the user's layout or time-major (what Model hands between layers), bit for
    bit what the call returns without it."""
    rng = np.random.default_rng(11)
    n_x, n_a, m, T = 4, 5, 6, 7
    p = {"rnn": lambda: {"Wax": rng.standard_normal((n_a, n_x)),
                         "Waa": rng.standard_normal((n_a, n_a)),
                         "ba": rng.standard_normal((n_a, 1)), "Wya": np.zeros((0, n_a)),
                         "by": np.zeros((0, 1))},
         "lstm": lambda: dict({f"{w}{g}": rng.standard_normal((n_a, n_a + n_x) if w == "W"
                                                              else (n_a, 1))
                               for g in "fico" for w in "Wb"},
                              Wy=np.zeros((0, n_a)), by=np.zeros((0, 1))),
         "gru": lambda: {"Wr": rng.standard_normal((n_a, n_a + n_x)),
                         "Wu": rng.standard_normal((n_a, n_a + n_x)),
                         "br": rng.standard_normal((n_a, 1)), "bu": rng.standard_normal((n_a, 1)),
                         "Wcx": rng.standard_normal((n_a, n_x)),
                         "Wca": rng.standard_normal((n_a, n_a)),
                         "bcx": rng.standard_normal((n_a, 1)),
                         "bca": rng.standard_normal((n_a, 1)), "Wy": np.zeros((0, n_a)),
                         "by": np.zeros((0, 1))}}[cell]()
    x, a0 = rng.standard_normal((n_x, m, T)), rng.standard_normal((n_a, m))
    run = cyrnn._engine._run_direction
    for reverse in (False, True):
        for lengths in (None, np.array([7, 1, 3, 7, 0, 5])):
            a, _, c, _ = run(cell, x, a0, p, lengths=lengths, reverse=reverse)
            rows = np.full((3 * n_a, m, T), np.nan)
            got = run(cell, x, a0, p, lengths=lengths, reverse=reverse,
                      out=rows[n_a:2 * n_a])
            assert got[0].base is rows or got[0].base is rows.base
            np.testing.assert_array_equal(rows[n_a:2 * n_a], a)
            assert np.isnan(rows[:n_a]).all() and np.isnan(rows[2 * n_a:]).all()
            if lengths is not None:
                continue
            time_major = np.full((2 * n_a, T, m), np.nan)
            view = time_major[n_a:].transpose(0, 2, 1)
            got_a, _, got_c, _ = run(cell, x, a0, p, reverse=reverse, out=view)
            np.testing.assert_array_equal(time_major[n_a:].transpose(0, 2, 1), a)
            np.testing.assert_array_equal(got_a, a)
            assert np.isnan(time_major[:n_a]).all()
            if c is not None:
                np.testing.assert_array_equal(got_c, c)
    with pytest.raises(ValueError, match=r"out must be a writable float64 array of shape"):
        run(cell, x, a0, p, out=np.zeros((n_a, m, T + 1)))
    with pytest.raises(ValueError, match="out must be C-contiguous, or"):
        run(cell, x, a0, p, lengths=[1, 2, 3, 4, 5, 6],
            out=np.zeros((n_a, T, m)).transpose(0, 2, 1))
    with pytest.raises(ValueError, match="out must be C-contiguous, or"):
        run(cell, x, a0, p, out=np.zeros((n_a, m, 2 * T))[:, :, ::2])
    head = dict(p, **{("Wya" if cell == "rnn" else "Wy"): np.ones((2, n_a)),
                      "by": np.zeros((2, 1))})
    with pytest.raises(ValueError, match="output layer must have 0 rows"):
        run(cell, x, a0, head, out=np.zeros((n_a, T, m)).transpose(0, 2, 1))
