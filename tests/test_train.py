"""cyrnn.train (docs/contract.md §9): the loss and its gradients (finite
differences, and one training step against PyTorch), clipping, SGD and Adam
(against a transcription of the course's rule), and the cyrnn-train command."""
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cyrnn
from cyrnn import models, train
from problems import (gru_parameters, lstm_parameters, numerical_gradient, require_peer,
                      rnn_parameters)


def cell_parameters(cell, n_x, n_a, rng, scale=0.5):
    """A cell's parameters without its output layer (the loss has its own)."""
    make = {"rnn": rnn_parameters, "lstm": lstm_parameters, "gru": gru_parameters}[cell]
    p = make(rng, n_x, n_a, 1, scale=scale)
    return {k: v for k, v in p.items() if k not in ("Wya", "Wy", "by")}


def hidden_only(cell, p, n_a):
    key = "Wya" if cell == "rnn" else "Wy"
    return dict(p, **{key: np.zeros((0, n_a)), "by": np.zeros((0, 1))})


def full_loss(cell, p, Wy, by, x, a0, targets, lengths, reduction="mean"):
    forward = getattr(cyrnn, f"{cell}_forward")
    a = forward(x, a0, hidden_only(cell, p, a0.shape[0]), lengths=lengths, cache=False)[0]
    return train.softmax_cross_entropy(a, Wy, by, targets, lengths=lengths,
                                       reduction=reduction)[0]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_full_gradient_matches_finite_differences(cell, reduction):
    """loss -> da -> the backward function: the gradient of every parameter,
    of the output layer and of x, against central differences (float64)."""
    rng = np.random.default_rng(3)
    n_x, n_a, n_y, m, T = 3, 4, 5, 3, 6
    p = cell_parameters(cell, n_x, n_a, rng)
    Wy, by = rng.standard_normal((n_y, n_a)), rng.standard_normal((n_y, 1))
    x, a0 = rng.standard_normal((n_x, m, T)), rng.standard_normal((n_a, m))
    targets = rng.integers(0, n_y, (m, T))
    lengths = np.array([6, 2, 4])
    forward = getattr(cyrnn, f"{cell}_forward")
    a, _, *rest = forward(x, a0, hidden_only(cell, p, n_a), lengths=lengths)
    loss, da, head = train.softmax_cross_entropy(a, Wy, by, targets, lengths=lengths,
                                                 reduction=reduction)
    assert not da[:, 1, 2:].any() and not da[:, 2, 4:].any()
    gradients = getattr(cyrnn, f"{cell}_backward")(da, rest[-1])

    def loss_now():
        return full_loss(cell, p, Wy, by, x, a0, targets, lengths, reduction)

    assert loss == pytest.approx(loss_now(), rel=1e-14)
    for key, value in p.items():
        np.testing.assert_allclose(gradients["d" + key], numerical_gradient(loss_now, value),
                                   rtol=1e-6, atol=1e-8, err_msg=key)
    np.testing.assert_allclose(head["dWy"], numerical_gradient(loss_now, Wy), rtol=1e-6,
                               atol=1e-8)
    np.testing.assert_allclose(head["dby"], numerical_gradient(loss_now, by), rtol=1e-6,
                               atol=1e-8)
    np.testing.assert_allclose(gradients["dx"], numerical_gradient(loss_now, x), rtol=1e-6,
                               atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 1000), n_a=st.integers(1, 6), n_y=st.integers(1, 6),
       m=st.integers(1, 5), T=st.integers(1, 5), float32=st.booleans())
def test_cross_entropy_equals_its_definition(seed, n_a, n_y, m, T, float32):
    rng = np.random.default_rng(seed)
    dtype = np.float32 if float32 else np.float64
    a = rng.standard_normal((n_a, m, T)).astype(dtype)
    Wy = rng.standard_normal((n_y, n_a)).astype(dtype)
    by = rng.standard_normal((n_y, 1)).astype(dtype)
    targets = rng.integers(0, n_y, (m, T))
    lengths = rng.integers(0, T + 1, m)
    loss, da, head = train.softmax_cross_entropy(a, Wy, by, targets, lengths=lengths)
    total, count = 0.0, 0
    for j in range(m):
        for t in range(lengths[j]):
            z = Wy.astype(np.float64) @ a[:, j, t].astype(np.float64) + by[:, 0]
            total += np.log(np.exp(z - z.max()).sum()) + z.max() - z[targets[j, t]]
            count += 1
    want = total / count if count else 0.0
    assert loss == pytest.approx(want, rel=1e-5 if float32 else 1e-12, abs=1e-6)
    assert da.dtype == dtype and head["dWy"].dtype == dtype


def test_cross_entropy_errors():
    a = np.zeros((3, 2, 4))
    Wy, by = np.zeros((5, 3)), np.zeros((5, 1))
    with pytest.raises(ValueError, match=r"targets\[1, 2\] is 5; classes must be in \[0, 5\)"):
        train.softmax_cross_entropy(a, Wy, by, np.array([[0, 0, 0, 0], [0, 0, 5, 0]]))
    # beyond a column's length its targets are not read
    train.softmax_cross_entropy(a, Wy, by, np.array([[0, 0, 0, 0], [0, 0, 5, 0]]),
                                lengths=[4, 2])
    with pytest.raises(ValueError, match="targets must be integers of shape"):
        train.softmax_cross_entropy(a, Wy, by, np.zeros((2, 3), int))
    with pytest.raises(ValueError, match=r"Wy has shape \(5, 2\)"):
        train.softmax_cross_entropy(a, np.zeros((5, 2)), by, np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="reduction must be"):
        train.softmax_cross_entropy(a, Wy, by, np.zeros((2, 4), int), reduction="none")


def course_adam(parameters, grads, v, s, t, learning_rate, beta1, beta2, epsilon):
    """The course's update_parameters_with_adam, transcribed for any dict."""
    for key in parameters:
        g = grads["d" + key]
        v["d" + key] = beta1 * v["d" + key] + (1 - beta1) * g
        v_corrected = v["d" + key] / (1 - beta1 ** t)
        s["d" + key] = beta2 * s["d" + key] + (1 - beta2) * np.power(g, 2)
        s_corrected = s["d" + key] / (1 - beta2 ** t)
        parameters[key] = parameters[key] - learning_rate * v_corrected / (
            np.sqrt(s_corrected) + epsilon)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_follows_the_course_rule(dtype):
    rng = np.random.default_rng(4)
    shapes = {"W1": (300, 7), "b1": (300, 1), "W2": (3, 300)}
    parameters = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    mine = {k: v.copy() for k, v in parameters.items()}
    theirs = {k: v.copy() for k, v in parameters.items()}
    optimizer = train.Adam(mine, learning_rate=0.01, beta1=0.8, beta2=0.99, epsilon=1e-7)
    v, s = train.initialize_adam(theirs)
    functional = {k: v.copy() for k, v in parameters.items()}
    fv, fs = train.initialize_adam(functional)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    for t in range(1, 6):
        grads = {"d" + k: rng.standard_normal(p.shape).astype(dtype) for k, p in shapes.items()
                 for p in [parameters[k]]}
        optimizer.step(grads)
        course_adam(theirs, grads, v, s, t, 0.01, 0.8, 0.99, 1e-7)
        train.update_parameters_with_adam(functional, grads, fv, fs, t, 0.01, 0.8, 0.99, 1e-7)
        for key in shapes:
            assert mine[key].dtype == dtype
            np.testing.assert_allclose(mine[key], theirs[key], rtol=tol, atol=tol)
            np.testing.assert_allclose(functional[key], theirs[key], rtol=tol, atol=tol)
            np.testing.assert_allclose(optimizer.v[key], v["d" + key], rtol=tol, atol=tol)
    # non-contiguous parameters take NumPy's path, with the same result
    strided = {"W": np.asfortranarray(parameters["W1"]).copy(order="F")}
    plain = {"W": parameters["W1"].copy()}
    g = {"dW": np.ones((300, 7), dtype)}
    train.Adam(strided).step(g)
    train.Adam(plain).step(g)
    np.testing.assert_allclose(strided["W"], plain["W"], rtol=tol, atol=tol)
    state = optimizer.state()
    again = train.Adam({k: v.copy() for k, v in mine.items()})
    again.load_state(state)
    assert again.t == 5
    np.testing.assert_array_equal(again.s["W2"], optimizer.s["W2"])


def test_sgd_and_clipping():
    rng = np.random.default_rng(5)
    p = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal((4, 1))}
    before = {k: v.copy() for k, v in p.items()}
    g = {"dW": rng.standard_normal((4, 3)), "db": rng.standard_normal((4, 1)),
         "dx": 100 * np.ones((2, 2))}
    train.SGD(p, learning_rate=0.1).step(g)
    # (the compiled loop may fuse the multiply-add: one rounding less)
    np.testing.assert_allclose(p["W"], before["W"] + -0.1 * g["dW"], rtol=1e-15, atol=1e-16)
    with pytest.raises(KeyError, match="no 'dW'"):
        train.SGD(p).step({"db": g["db"]})
    values = {"dW": np.array([[-7.0, 0.5, np.nan]], np.float32), "db": np.array([3.0, -2.0])}
    train.clip_by_value(values, 1.0)
    np.testing.assert_array_equal(values["dW"], np.array([[-1.0, 0.5, np.nan]], np.float32))
    np.testing.assert_array_equal(values["db"], [1.0, -1.0])
    norm_before = np.sqrt(sum(np.sum(g[k] ** 2) for k in ("dW", "db")))
    scaled = {k: v.copy() for k, v in g.items()}
    norm = train.clip_by_global_norm(scaled, 0.5)
    assert norm == pytest.approx(norm_before, rel=1e-12)
    after = np.sqrt(sum(np.sum(scaled[k] ** 2) for k in ("dW", "db")))
    assert after == pytest.approx(0.5, rel=1e-5)
    np.testing.assert_array_equal(scaled["dx"], g["dx"])        # inputs' gradient untouched
    small = {k: v.copy() for k, v in g.items()}
    train.clip_by_global_norm(small, 1e6)
    np.testing.assert_array_equal(small["dW"], g["dW"])
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        train.clip_by_global_norm(g, 0)


def test_one_training_step_equals_pytorch():
    """nn.LSTM + nn.Linear + CrossEntropyLoss (padded steps ignored) + Adam,
    float64: the loss, every gradient and the updated weights."""
    t = require_peer("torch", "one training step is checked against PyTorch")
    rng = np.random.default_rng(6)
    n_x, n_a, n_y, m, T = 5, 7, 6, 4, 8
    t.manual_seed(0)
    lstm, linear = t.nn.LSTM(n_x, n_a).double(), t.nn.Linear(n_a, n_y).double()
    model = models.from_torch(lstm)
    p = {k: v.copy() for k, v in model.layers[0][0].items() if k not in ("Wy", "by")}
    Wy = linear.weight.detach().numpy().copy()
    by = linear.bias.detach().numpy().copy()[:, None]
    x = rng.standard_normal((n_x, m, T))
    targets = rng.integers(0, n_y, (m, T))
    lengths = np.array([8, 3, 5, 1])
    # cyrnn
    a, _, _, caches = cyrnn.lstm_forward(x, np.zeros((n_a, m)), hidden_only("lstm", p, n_a),
                                         lengths=lengths)
    loss, da, head = train.softmax_cross_entropy(a, Wy, by, targets, lengths=lengths)
    gradients = cyrnn.lstm_backward(da, caches)
    gradients.update(head)
    # PyTorch
    tx = t.from_numpy(np.ascontiguousarray(x.transpose(2, 1, 0)))
    packed = t.nn.utils.rnn.pack_padded_sequence(tx, t.from_numpy(lengths), enforce_sorted=False)
    out = t.nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], total_length=T)[0]
    logits = linear(out)                                       # (T, m, n_y)
    torch_targets = t.from_numpy(np.where(np.arange(T) < lengths[:, None], targets, -100).T)
    torch_loss = t.nn.functional.cross_entropy(logits.reshape(-1, n_y),
                                               torch_targets.reshape(-1), ignore_index=-100)
    torch_loss.backward()
    assert loss == pytest.approx(torch_loss.item(), rel=1e-12)
    tol = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(head["dWy"], linear.weight.grad.numpy(), **tol)
    np.testing.assert_allclose(head["dby"][:, 0], linear.bias.grad.numpy(), **tol)
    order = "ifco"          # PyTorch's rows: i, f, g (the candidate), o
    for q, g in enumerate(order):
        rows = slice(q * n_a, (q + 1) * n_a)
        np.testing.assert_allclose(gradients["dW" + g][:, :n_a],
                                   lstm.weight_hh_l0.grad.numpy()[rows], **tol)
        np.testing.assert_allclose(gradients["dW" + g][:, n_a:],
                                   lstm.weight_ih_l0.grad.numpy()[rows], **tol)
        np.testing.assert_allclose(gradients["db" + g][:, 0],
                                   lstm.bias_ih_l0.grad.numpy()[rows], **tol)
    # one Adam step on both sides
    p_before = {k: v.copy() for k, v in p.items()}
    parameters = dict(p, Wy=Wy, by=by)
    train.Adam(parameters, learning_rate=0.01).step(gradients)
    torch_adam = t.optim.Adam(list(lstm.parameters()) + list(linear.parameters()), lr=0.01)
    torch_adam.step()
    np.testing.assert_allclose(parameters["Wy"], linear.weight.detach().numpy(), **tol)
    stepped = models.from_torch(lstm).layers[0][0]
    for key in p:
        if key.startswith("W"):
            np.testing.assert_allclose(parameters[key], stepped[key], rtol=1e-10, atol=1e-11,
                                       err_msg=key)
        else:
            # PyTorch's two biases (b_ih, b_hh) each take Adam's step of the one
            # gradient, so their sum, cyrnn's bias, moves twice as far there
            np.testing.assert_allclose(parameters[key] - p_before[key],
                                       (stepped[key] - p_before[key]) / 2, rtol=1e-9,
                                       atol=1e-12, err_msg=key)


def corpus(tmp_path, lines=400, seed=0):
    rng = np.random.default_rng(seed)
    syllables = ["sau", "rus", "tor", "don", "ra", "ptor", "mega", "lo", "ce", "pha", "tri"]
    names = ["".join(rng.choice(syllables, rng.integers(1, 5))) for _ in range(lines)]
    path = tmp_path / "names.txt"
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("cell, by_line", [("rnn", True), ("lstm", False), ("gru", True)])
def test_cyrnn_train_learns(tmp_path, cell, by_line, capsys):
    path = corpus(tmp_path)
    out = tmp_path / "out"
    args = [str(path), "--cell", cell, "--hidden", "32", "--seq-length", "24",
            "--batch-size", "16", "--steps", "250", "--sample-every", "125",
            "--checkpoint-every", "100", "--learning-rate", "0.01", "--out", str(out),
            "--no-progress"] + (["--by-line"] if by_line else [])
    assert train.main(args) == 0
    printed = capsys.readouterr().out
    uniform = np.log(len(set(path.read_text())))
    with np.load(out / "checkpoint.npz") as f:
        history = f["extra/history"]
        assert int(f["extra/step"]) == 250
    assert len(history) == 250
    # far below the uniform guess (it starts there)
    assert history[0] > 0.8 * uniform
    assert np.mean(history[-20:]) < 0.5 * uniform
    assert "--- step 250" in printed and (out / "samples.txt").exists()
    model = models.load(out / "checkpoint.npz")                 # a plain cyrnn model
    assert model.cell == cell and model.n_a == 32 and model.head["Wy"].shape[1] == 32
    try:
        import matplotlib  # noqa: F401
        assert (out / "loss.png").stat().st_size > 1000
    except ImportError:
        assert "no loss curve" in printed


def test_cyrnn_train_resumes_where_it_stopped(tmp_path, capsys):
    path = corpus(tmp_path, seed=1)
    common = [str(path), "--cell", "gru", "--hidden", "16", "--seq-length", "20",
              "--batch-size", "8", "--sample-every", "10", "--checkpoint-every", "10",
              "--no-progress", "--by-line"]
    train.main(common + ["--steps", "30", "--out", str(tmp_path / "straight")])
    train.main(common + ["--steps", "20", "--out", str(tmp_path / "resumed")])
    train.main(common + ["--steps", "30", "--out", str(tmp_path / "resumed"), "--resume"])
    capsys.readouterr()
    with np.load(tmp_path / "straight" / "checkpoint.npz") as a, \
            np.load(tmp_path / "resumed" / "checkpoint.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with pytest.raises(SystemExit):
        train.main(common + ["--steps", "40", "--out", str(tmp_path / "resumed"), "--resume",
                             "--hidden", "17"])
    assert "other settings than the checkpoint's: hidden (was 16)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main([str(tmp_path / "missing.txt")])
    assert "cannot read" in capsys.readouterr().err
    meta = json.loads(str(np.load(tmp_path / "straight" / "checkpoint.npz")["extra/settings"]))
    assert meta["cell"] == "gru"
    assert os.path.exists(tmp_path / "straight" / "samples.txt")


def test_cyrnn_train_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())     # (argparse wraps lines)
    for shown in ("(default: lstm)", "(default: 128)", "(default: 1000)", "(default: 0.002)",
                  "(default: float32)", "(default: cyrnn-train-out)"):
        assert shown in out, shown
