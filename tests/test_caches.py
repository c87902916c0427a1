"""The structure of the caches (docs/contract.md §2) and their independence from the outputs."""
import pickle

import numpy as np
import pytest

import cyrnn
import cyrnn.reference as ref
from cyrnn import _engine
from problems import (assert_close, engine_settings, gru_parameters, lstm_parameters,
                      rnn_parameters, sequence)

N_X, N_A, N_Y, M, T = 3, 4, 2, 5, 6


def test_rnn_caches_structure_and_values():
    rng = np.random.default_rng(0)
    x, a0 = sequence(rng, N_X, N_A, M, T)
    p = rnn_parameters(rng, N_X, N_A, N_Y)
    a, y, caches = cyrnn.rnn_forward(x, a0, p)
    steps_r = ref.rnn_forward(x, a0, p)[2][0]
    assert len(caches) == 2 and caches[1] is x
    steps = caches[0]
    assert len(steps) == T
    for t in range(T):
        assert isinstance(steps[t], tuple) and len(steps[t]) == 4
        for k in range(3):
            assert_close(steps[t][k], steps_r[t][k], what=f"step {t} entry {k}")
        assert steps[t][3] is p
    assert_close(steps[-1][0], steps[T - 1][0])
    assert [s[0].tolist() for s in steps[1:3]] == [steps[1][0].tolist(), steps[2][0].tolist()]
    assert [len(s) for s in steps] == [4] * T  # iteration
    with pytest.raises(IndexError):
        steps[T]


def test_lstm_caches_structure_and_first_step_c_prev():
    rng = np.random.default_rng(1)
    x, a0 = sequence(rng, N_X, N_A, M, T)
    p = lstm_parameters(rng, N_X, N_A, N_Y)
    a, y, c, caches = cyrnn.lstm_forward(x, a0, p)
    steps_r = ref.lstm_forward(x, a0, p)[3][0]
    assert len(caches) == 2 and caches[1] is x and len(caches[0]) == T
    for t in range(T):
        step = caches[0][t]
        assert len(step) == 10 and step[9] is p
        for k in range(9):
            assert_close(step[k], steps_r[t][k], what=f"step {t} entry {k}")
    assert np.all(caches[0][0][3] == 0)  # c_prev of the first step stays zeros
    a[...] = 7.0  # the outputs are not aliased with the caches
    c[...] = 7.0
    assert np.all(caches[0][0][3] == 0)
    assert_close(caches[0][2][0], steps_r[2][0])
    assert_close(caches[0][2][1], steps_r[2][1])


def test_cache_buffers_are_read_only():
    rng = np.random.default_rng(2)
    x, a0 = sequence(rng, N_X, N_A, M, T)
    _, _, _, caches = cyrnn.lstm_forward(x, a0, lstm_parameters(rng, N_X, N_A, N_Y))
    with pytest.raises(ValueError, match="read-only"):
        caches[0][1][4][...] = 0


def test_caches_pickle_round_trip():
    rng = np.random.default_rng(3)
    x, a0 = sequence(rng, N_X, N_A, M, T)
    p = lstm_parameters(rng, N_X, N_A, N_Y)
    _, _, _, caches = cyrnn.lstm_forward(x, a0, p)
    da = rng.standard_normal((N_A, M, T))
    again = pickle.loads(pickle.dumps(caches))
    g1, g2 = cyrnn.lstm_backward(da, caches), cyrnn.lstm_backward(da, again)
    for key in g1:
        assert_close(g1[key], g2[key])


def test_reference_caches_as_plain_lists_work_both_ways():
    rng = np.random.default_rng(4)
    x, a0 = sequence(rng, N_X, N_A, M, T)
    p = rnn_parameters(rng, N_X, N_A, N_Y)
    _, _, caches = cyrnn.rnn_forward(x, a0, p)
    listed = (list(caches[0]), caches[1])  # a user's own list of cyrnn step tuples
    da = rng.standard_normal((N_A, M, 3))
    g, g_list = cyrnn.rnn_backward(da, caches), cyrnn.rnn_backward(da, listed)
    for key in g:
        assert_close(g[key], g_list[key])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "gru_reset_before"])
def test_narrow_batch_caches_copied_over_many_blocks_match(kind, dtype):
    """Narrow batches with large caches run their blocks of steps in a
    workspace and copy each block into the caches (RUN_COPIED_CACHES; the size limit
    pinned to 0 here, to infinity for the caches written in place): over
    several blocks (m = 3, T = 70: blocks of 22 steps), forward and reversed,
    both give the same bits in every output and cache entry, equal to
    cache=False's outputs, the reference's caches, and the reference's
    gradients through backward."""
    rng = np.random.default_rng(7)
    n_x, n_a, n_y, m, steps = 3, 5, 2, 3, 70
    x, a0 = sequence(rng, n_x, n_a, m, steps, dtype, scale=0.5)
    make = {"rnn": rnn_parameters, "lstm": lstm_parameters, "gru": gru_parameters,
            "gru_reset_before": lambda *a, **k: gru_parameters(*a, **k, reset_before=True)}
    p = make[kind](rng, n_x, n_a, n_y, dtype, scale=0.5)
    name = kind.split("_")[0]
    forward = getattr(cyrnn, name + "_forward")
    with engine_settings(copied_min_bytes=0):
        got = forward(x, a0, p)
        got_reversed = _engine._run_direction(name, x, a0, p, reverse=True, cache=True)
    with engine_settings(copied_min_bytes=float("inf")):
        in_place = forward(x, a0, p)
        in_place_reversed = _engine._run_direction(name, x, a0, p, reverse=True, cache=True)
    for out, same, plain in zip(got[:-1], in_place[:-1], forward(x, a0, p, cache=False)[:-1]):
        np.testing.assert_array_equal(out, same)
        np.testing.assert_array_equal(out, plain)
    for out, same in zip(got_reversed[:3], in_place_reversed[:3]):
        np.testing.assert_array_equal(out, same)
    x64, a064 = x.astype(np.float64), a0.astype(np.float64)
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    want = getattr(ref, name + "_forward")(x64, a064, p64)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    for t in (0, 21, 22, 23, 44, 69):       # the blocks' edges
        for k, (entry, same, expected) in enumerate(zip(got[-1][0][t], in_place[-1][0][t],
                                                        want[-1][0][t])):
            if isinstance(expected, np.ndarray):
                np.testing.assert_array_equal(entry, same)
                assert_close(entry, expected, what=f"step {t} entry {k}", **tol)
    da = rng.standard_normal((n_a, m, steps))
    grads = getattr(cyrnn, name + "_backward")(da.astype(dtype), got[-1])
    expected = getattr(ref, name + "_backward")(da, want[-1])
    for key in expected:
        assert_close(grads[key], expected[key], what=key, **tol)
