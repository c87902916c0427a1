"""cyrnn.dinosaurus (docs/contract.md §9): the course's "Dinosaurus Island"
assignment as a drop-in, against the values its notebook prints
(Dinosaurus_Island_Character_level_language_model_final_v3b.ipynb, cited by
cell) and against the plain NumPy version, cyrnn.reference.dinosaurus."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyrnn import dinosaurus as fast
from cyrnn.reference import dinosaurus as numpy_version

CHARS = ["\n"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
CHAR_TO_IX = {c: i for i, c in enumerate(CHARS)}
IX_TO_CHAR = dict(enumerate(CHARS))


def clip_cell(module, m_value):
    """The notebook's clip test cells ("Test with a maxvalue of 10", "... of 5")."""
    np.random.seed(3)
    dWax = np.random.randn(5, 3) * 10
    dWaa = np.random.randn(5, 5) * 10
    dWya = np.random.randn(2, 5) * 10
    db = np.random.randn(5, 1) * 10
    dby = np.random.randn(2, 1) * 10
    gradients = {"dWax": dWax, "dWaa": dWaa, "dWya": dWya, "db": db, "dby": dby}
    return module.clip(gradients, m_value)


@pytest.mark.parametrize("module", [fast, numpy_version])
def test_clip_prints_the_notebooks_values(module):
    g = clip_cell(module, 10)
    assert g["dWaa"][1][2] == 10.0 and g["dWax"][3][1] == -10.0
    assert g["dWya"][1][2] == pytest.approx(0.2971381536101662, rel=1e-15)
    assert g["db"][4] == [10.0]
    np.testing.assert_allclose(g["dby"][1], [8.45833407], rtol=1e-8)
    g = clip_cell(module, 5)
    assert g["dWaa"][1][2] == 5.0 and g["dWax"][3][1] == -5.0
    assert g["dWya"][1][2] == pytest.approx(0.2971381536101662, rel=1e-15)
    assert g["db"][4] == [5.0] and g["dby"][1] == [5.0]
    assert list(g) == ["dWaa", "dWax", "dWya", "db", "dby"]


def sample_parameters(seed=2, n_a=100, vocab_size=27):
    """The notebook's sample test cell's parameters."""
    np.random.seed(seed)
    Wax, Waa, Wya = (np.random.randn(n_a, vocab_size), np.random.randn(n_a, n_a),
                     np.random.randn(vocab_size, n_a))
    b, by = np.random.randn(n_a, 1), np.random.randn(vocab_size, 1)
    return {"Wax": Wax, "Waa": Waa, "Wya": Wya, "b": b, "by": by}


# The notebook's printed output of its sample cell. Its weights are N(0, 1), so
# the 100-unit tanh recurrence amplifies the last bits of the BLAS's dot products
# over 50 steps: the notebook's own run differs from its "Expected output" from
# the 46th index on, and on this machine's NumPy/OpenBLAS from the 44th. The
# first 43, and the exact agreement with the NumPy version on the same machine,
# are what can be checked.
NOTEBOOK_SAMPLE = [12, 17, 24, 14, 13, 9, 10, 22, 24, 6, 13, 11, 12, 6, 21, 15, 21, 14, 3, 2, 1,
                   21, 18, 24, 7, 25, 6, 25, 18, 10, 16, 2, 3, 8, 15, 12, 11, 7, 1, 12, 10, 2, 7]


def test_sample_draws_the_notebooks_indices():
    parameters = sample_parameters()
    indices = fast.sample(parameters, CHAR_TO_IX, 0)
    assert indices[:43] == NOTEBOOK_SAMPLE
    after = np.random.random()
    want = numpy_version.sample(parameters, CHAR_TO_IX, 0)
    assert indices == want                           # every index, same machine
    assert [type(i) for i in indices[:-1]] == [type(i) for i in want[:-1]]
    assert np.random.random() == after               # the global state left alike
    assert len(indices) == 51 and indices[-1] == 0    # 50 draws, then the newline


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([0.01, 0.3, 1.0]),
       n_a=st.integers(1, 40), vocab=st.integers(2, 30))
def test_sample_equals_the_numpy_version(seed, scale, n_a, vocab):
    rng = np.random.default_rng(seed)
    parameters = {"Wax": scale * rng.standard_normal((n_a, vocab)),
                  "Waa": scale * rng.standard_normal((n_a, n_a)),
                  "Wya": scale * rng.standard_normal((vocab, n_a)),
                  "b": scale * rng.standard_normal((n_a, 1)),
                  "by": scale * rng.standard_normal((vocab, 1))}
    char_to_ix = {"\n": seed % vocab}
    assert fast.sample(parameters, char_to_ix, seed) == \
        numpy_version.sample(parameters, char_to_ix, seed)


def optimize_cell(module):
    """The notebook's optimize test cell."""
    np.random.seed(1)
    vocab_size, n_a = 27, 100
    a_prev = np.random.randn(n_a, 1)
    Wax, Waa, Wya = (np.random.randn(n_a, vocab_size), np.random.randn(n_a, n_a),
                     np.random.randn(vocab_size, n_a))
    b, by = np.random.randn(n_a, 1), np.random.randn(vocab_size, 1)
    parameters = {"Wax": Wax, "Waa": Waa, "Wya": Wya, "b": b, "by": by}
    X = [12, 3, 5, 11, 22, 3]
    Y = [4, 14, 11, 22, 25, 26]
    return (*module.optimize(X, Y, a_prev, parameters, learning_rate=0.01), parameters)


def test_optimize_prints_the_notebooks_values():
    loss, gradients, a_last, parameters = optimize_cell(fast)
    assert loss == pytest.approx(126.503975722, rel=1e-11)
    assert gradients["dWaa"][1][2] == pytest.approx(0.194709315347, rel=1e-11)
    assert np.argmax(gradients["dWax"]) == 93
    assert gradients["dWya"][1][2] == pytest.approx(-0.007773876032, rel=1e-10)
    np.testing.assert_allclose(gradients["db"][4], [-0.06809825], rtol=1e-7)
    np.testing.assert_allclose(gradients["dby"][1], [0.01538192], rtol=1e-6)
    assert a_last[4] == pytest.approx(-1.0, abs=1e-12)
    want_loss, want_gradients, want_a, want_parameters = optimize_cell(numpy_version)
    assert loss == pytest.approx(want_loss, rel=1e-13)
    assert list(gradients) == list(want_gradients)
    for key in want_gradients:    # |gradients| up to 5 (clipped): 1e-12 of that
        np.testing.assert_allclose(gradients[key], want_gradients[key], rtol=1e-11,
                                   atol=5e-12)
    for key in want_parameters:
        np.testing.assert_allclose(parameters[key], want_parameters[key], rtol=1e-13,
                                   atol=1e-13)
    np.testing.assert_allclose(a_last, want_a, rtol=1e-13, atol=1e-13)
    assert a_last.shape == (100, 1) and isinstance(loss, np.float64)


def random_problem(rng, n_a, vocab, T, scale):
    """Weights of the given scale; the recurrent ones divided by sqrt(n_a), so
    that scale is about Waa's spectral radius (below 1: a contracting network,
    whose rounding differences do not grow along the steps)."""
    parameters = {"Wax": scale * rng.standard_normal((n_a, vocab)),
                  "Waa": scale / np.sqrt(n_a) * rng.standard_normal((n_a, n_a)),
                  "Wya": scale * rng.standard_normal((vocab, n_a)),
                  "b": scale * rng.standard_normal((n_a, 1)),
                  "by": scale * rng.standard_normal((vocab, 1))}
    X = [None] + [int(v) for v in rng.integers(0, vocab, T - 1)]
    Y = X[1:] + [int(rng.integers(0, vocab))]
    return parameters, X, Y, scale * rng.standard_normal((n_a, 1))


def numpy_optimize(X, Y, a_prev, parameters, learning_rate, vocab):
    """The course's optimize with rnn_forward's vocab_size given (its optimize
    leaves the default, 27: the course's runs only with 27 characters)."""
    loss, cache = numpy_version.rnn_forward(X, Y, a_prev, parameters, vocab_size=vocab)
    gradients, a = numpy_version.rnn_backward(X, Y, parameters, cache)
    gradients = numpy_version.clip(gradients, 5)
    numpy_version.update_parameters(parameters, gradients, learning_rate)
    return loss, gradients, a[len(X) - 1]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n_a=st.integers(1, 64),
       vocab=st.sampled_from([1, 2, 27, 27, 40]),
       T=st.integers(1, 30), scale=st.sampled_from([0.01, 0.1, 0.5, 0.9, 3.0]),
       learning_rate=st.sampled_from([0.0, 0.01, 0.5]))
def test_optimize_equals_the_numpy_version(seed, n_a, vocab, T, scale, learning_rate):
    rng = np.random.default_rng(seed)
    if scale > 1:       # an expanding network (like the notebook's N(0, 1) weights):
        T = min(T, 8)   # rounding grows along the steps, so short sequences
    parameters, X, Y, a_prev = random_problem(rng, n_a, vocab, T, scale)
    theirs = {k: v.copy() for k, v in parameters.items()}
    loss, gradients, a_last = fast.optimize(X, Y, a_prev, parameters, learning_rate)
    if vocab == 27:
        want_loss, want_gradients, want_a = numpy_version.optimize(X, Y, a_prev, theirs,
                                                                   learning_rate)
    else:
        want_loss, want_gradients, want_a = numpy_optimize(X, Y, a_prev, theirs,
                                                           learning_rate, vocab)
    # Rounding differences (the BLAS's summation order, the kernels' tanh within
    # 2 ulp) add up over the T steps' terms of each gradient (|g| <= 5 after
    # clipping); weights of scale >= 1 saturate the tanh and amplify them.
    tol = (1e-13 if scale < 1 else 1e-10) * T
    assert loss == pytest.approx(want_loss, rel=tol, abs=tol)
    for key in want_gradients:
        np.testing.assert_allclose(gradients[key], want_gradients[key], rtol=tol,
                                   atol=5 * tol, err_msg=key)
    for key in theirs:
        np.testing.assert_allclose(parameters[key], theirs[key], rtol=1e-13,
                                   atol=learning_rate * 5 * tol + 1e-13, err_msg=key)
    np.testing.assert_allclose(a_last, want_a, rtol=tol, atol=tol)


def test_optimize_falls_back_to_the_course_behaviour():
    """What the compiled step does not take runs as the course's NumPy code."""
    rng = np.random.default_rng(5)
    parameters, X, Y, a_prev = random_problem(rng, 6, 27, 4, 0.5)
    cases = [
        ({k: v.astype(np.float32) for k, v in parameters.items()}, X, Y),     # float32
        ({k: np.asfortranarray(v) for k, v in parameters.items()}, X, Y),    # layout
        (parameters, [None, -1, 2, 3], Y),                                     # negative index
        (parameters, tuple(X), tuple(Y)),                                      # tuples
    ]
    for weights, X_given, Y_given in cases:
        mine = {k: v.copy(order="K") for k, v in weights.items()}
        theirs = {k: v.copy(order="K") for k, v in weights.items()}
        got = fast.optimize(X_given, Y_given, a_prev, mine)
        want = numpy_version.optimize(X_given, Y_given, a_prev, theirs)
        assert got[0] == want[0]
        for key in want[1]:
            np.testing.assert_array_equal(got[1][key], want[1][key])
    shared = dict(parameters, b=parameters["by"][:6])      # overlapping weights
    with pytest.raises(IndexError):                        # the course's own error
        fast.optimize(X, [0, 1, 2, 27], a_prev, dict(parameters))
    with pytest.raises(ValueError):                        # ...and its shape errors
        fast.optimize(X, Y, np.zeros((3, 1)), dict(parameters))
    with pytest.raises(ValueError, match="could not be broadcast"):
        fast.optimize(X, Y, a_prev, dict(parameters, by=parameters["by"][:5].copy()))
    mine = {k: v.copy() for k, v in shared.items()}
    theirs = {k: v.copy() for k, v in shared.items()}
    assert fast.optimize(X, Y, a_prev, mine)[0] == numpy_version.optimize(X, Y, a_prev,
                                                                         theirs)[0]


def names(rng, count=40):
    """A small corpus of made-up names (letters, 3-12 characters)."""
    syllables = ["sau", "rus", "tor", "don", "ra", "ptor", "mega", "lo", "ce", "pha", "tri"]
    return ["".join(rng.choice(syllables, rng.integers(1, 4))) for _ in range(count)]


def test_model_prints_and_returns_what_the_numpy_version_does(capsys):
    data = names(np.random.default_rng(7))
    parameters, last = fast.model(data, IX_TO_CHAR, CHAR_TO_IX, num_iterations=2001,
                                  n_a=20, dino_names=3, verbose=True)
    printed = capsys.readouterr().out
    state = np.random.random()
    want_parameters, want_last = numpy_version.model(data, IX_TO_CHAR, CHAR_TO_IX,
                                                     num_iterations=2001, n_a=20,
                                                     dino_names=3, verbose=True)
    assert capsys.readouterr().out == printed
    assert np.random.random() == state
    assert last == want_last
    for key in want_parameters:
        np.testing.assert_allclose(parameters[key], want_parameters[key], rtol=1e-9,
                                   atol=1e-11)
    assert printed.startswith("j =  0 idx =  0\nsingle_example =")
    assert "Iteration: 2000, Loss:" in printed


def test_utils():
    assert fast.get_initial_loss(27, 7) == pytest.approx(-np.log(1 / 27) * 7)
    assert fast.smooth(10.0, 20.0) == pytest.approx(10.01)
    assert fast.get_sample([1, 2, 0], IX_TO_CHAR) == "Ab\n"
    p = fast.initialize_parameters(4, 3, 2)
    assert {k: v.shape for k, v in p.items()} == {"Wax": (4, 3), "Waa": (4, 4), "Wya": (2, 4),
                                                  "b": (4, 1), "by": (2, 1)}
    np.random.seed(1)
    np.testing.assert_array_equal(p["Wax"], np.random.randn(4, 3) * 0.01)
