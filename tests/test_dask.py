"""cyrnn.dask (docs/contract.md §8): lazy batch inference over dask arrays,
bit-identical to the in-memory functions, on the threaded and process
schedulers and on a real distributed.LocalCluster with 2 worker processes."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cyrnn
from cyrnn import models
from problems import gru_parameters, lstm_parameters, require_peer, rnn_parameters


def dask_array():
    require_peer("dask", "cyrnn.dask runs on dask")
    import dask.array
    return dask.array


def parameters(cell, n_x, n_a, n_y, rng):
    make = {"rnn": rnn_parameters, "lstm": lstm_parameters, "gru": gru_parameters}[cell]
    return make(rng, n_x, n_a, n_y)


def per_chunk(function, x, a0, p, chunks, **kwargs):
    """The in-memory function called on each batch chunk, outputs joined."""
    bounds = np.cumsum((0,) + chunks)
    parts = []
    for j0, j1 in zip(bounds[:-1], bounds[1:]):
        sliced = {k: (v[..., j0:j1] if k in ("c0",) else v[j0:j1] if k == "lengths" else v)
                  for k, v in kwargs.items() if v is not None}
        parts.append(function(x[:, j0:j1], a0[:, j0:j1], p, cache=False, **sliced))
    return [None if parts[0][i] is None else np.concatenate([q[i] for q in parts], axis=1)
            for i in range(len(parts[0]))]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_notebook_functions_match_each_chunk(cell, dtype):
    da = dask_array()
    from cyrnn import dask as cdask
    rng = np.random.default_rng(0)
    n_x, n_a, n_y, m, T = 4, 5, 3, 23, 7
    p = {k: v.astype(dtype) for k, v in parameters(cell, n_x, n_a, n_y, rng).items()}
    x = rng.standard_normal((n_x, m, T)).astype(dtype)
    a0 = rng.standard_normal((n_a, m)).astype(dtype)
    lengths = rng.integers(0, T + 1, m)
    chunks = (5, 5, 10, 3)
    dx = da.from_array(x, chunks=(2, chunks, 3))          # other axes get rechunked
    function = getattr(cyrnn, f"{cell}_forward")
    lazy = getattr(cdask, f"{cell}_forward")
    for kwargs in ({}, {"lengths": lengths}, {"lengths": da.from_array(lengths, chunks=4)}):
        for a0_given in (a0, da.from_array(a0, chunks=(n_a, 7))):
            got = lazy(dx, a0_given, p, **kwargs)
            assert len(got) == (4 if cell == "lstm" else 3) and got[-1] is None
            assert got[0].chunks == ((n_a,), chunks, (T,))
            plain = {k: (lengths if k == "lengths" else v) for k, v in kwargs.items()}
            want = per_chunk(function, x, a0, p, chunks, **plain)
            for g, w in zip(got[:-1], want[:-1]):
                assert g.dtype == w.dtype
                np.testing.assert_array_equal(g.compute(), w)
            # cyrnn's columns do not depend on the batch around them: the same
            # as one call on the whole batch
            whole = function(x, a0, p, cache=False, **plain)
            np.testing.assert_array_equal(got[0].compute(), whole[0])
    if cell == "lstm":
        c0 = rng.standard_normal((n_a, m)).astype(dtype)
        got = cdask.lstm_forward(dx, a0, p, c0=c0)
        want = function(x, a0, p, c0=c0, cache=False)
        np.testing.assert_array_equal(got[2].compute(), want[2])


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_random_chunkings(data):
    da = dask_array()
    from cyrnn import dask as cdask
    m = data.draw(st.integers(1, 40), label="m")
    T = data.draw(st.integers(1, 6), label="T")
    cuts = sorted(data.draw(st.sets(st.integers(1, m - 1), max_size=5), label="cuts")) \
        if m > 1 else []
    chunks = tuple(np.diff([0, *cuts, m]).tolist())
    rng = np.random.default_rng(m * 7 + T)
    p = parameters("gru", 3, 4, 2, rng)
    x, a0 = rng.standard_normal((3, m, T)), rng.standard_normal((4, m))
    lengths = rng.integers(0, T + 1, m) if data.draw(st.booleans(), label="lengths") else None
    a, y, _ = cdask.gru_forward(da.from_array(x, chunks=(3, chunks, T)), a0, p, lengths=lengths)
    want = per_chunk(cyrnn.gru_forward, x, a0, p, chunks, lengths=lengths)
    np.testing.assert_array_equal(a.compute(scheduler="threads"), want[0])
    np.testing.assert_array_equal(y.compute(scheduler="synchronous"), want[1])


def bidirectional_model(rng, n_x=4, n_a=5):
    def direction(n_in):
        p = parameters("lstm", n_in, n_a, 1, rng)
        return {k: v for k, v in p.items() if k not in ("Wy", "by")}
    return models.Model("lstm", [[direction(n_x), direction(n_x)],
                                 [direction(2 * n_a), direction(2 * n_a)]],
                        head={"Wy": rng.standard_normal((3, 2 * n_a)),
                              "by": rng.standard_normal((3, 1))})


def test_predict_matches_the_model():
    da = dask_array()
    from cyrnn import dask as cdask
    rng = np.random.default_rng(1)
    model = bidirectional_model(rng)
    x = rng.standard_normal((4, 17, 6))
    lengths = rng.integers(1, 7, 17)
    dx = da.from_array(x, chunks=(4, 6, 6))
    for given_lengths in (None, lengths):
        out, final = cdask.predict(model, dx, lengths=given_lengths)
        want, want_final = model(x, lengths=given_lengths)
        assert out.chunks == ((3,), (6, 6, 5), (6,))
        assert final["a"].shape == (4, 5, 17) and final["a"].chunks[2] == (6, 6, 5)
        np.testing.assert_array_equal(out.compute(), want)
        for key in ("a", "c"):
            np.testing.assert_array_equal(final[key].compute(), want_final[key])


def task_bytes(array):
    """Pickled size of each task of the graph: what shipping it costs (a
    scheduler sends tasks one by one; the data a task depends on travels
    once per worker)."""
    import cloudpickle
    return sorted(len(cloudpickle.dumps(task)) for task in
                  dict(array.__dask_graph__()).values())


def test_weights_are_one_key_of_the_graph():
    """One task holds the weights; every chunk's task refers to it by key."""
    da = dask_array()
    from cyrnn import dask as cdask
    rng = np.random.default_rng(2)
    p = parameters("lstm", 64, 128, 10, rng)
    weights = sum(v.nbytes for v in p.values())
    a0 = da.zeros((128, 4000), chunks=(128, 1000))    # (a NumPy a0 would be data in it)
    model = bidirectional_model(rng, n_x=64, n_a=128)
    model_bytes = len(pickle.dumps(model))
    for chunk in (2000, 100):
        x = da.zeros((64, 4000, 5), chunks=(64, chunk, 5))
        for lazy, size in ((cdask.lstm_forward(x, a0, p)[0], weights),
                           (cdask.predict(model, x)[0], model_bytes)):
            sizes = task_bytes(lazy)
            assert len(sizes) > 4000 // chunk                   # a task per chunk at least
            assert sizes[-1] >= 0.9 * size                       # the weights' task
            assert sizes[-2] < size / 10                         # every other one: small


def test_inputs_stored_in_chunks_stay_out_of_the_graph(tmp_path):
    """The README's way to feed data larger than memory (a stack of .npy files
    each worker reads): the graph holds file names, not data — its size does not
    grow with the chunks' size."""
    da = dask_array()
    from cyrnn import dask as cdask
    rng = np.random.default_rng(3)
    model = bidirectional_model(rng, n_x=8, n_a=16)
    sizes = []
    for m in (2 * 64, 2 * 4096):
        folder = tmp_path / f"x{m}"
        da.to_npy_stack(str(folder), da.random.random((8, m, 20), chunks=(8, m // 2, 20)),
                        axis=1)
        x = da.from_npy_stack(str(folder))
        lengths = rng.integers(1, 21, m)
        outputs, _ = cdask.predict(model, x, lengths=lengths)
        sizes.append(sum(task_bytes(outputs)) - lengths.nbytes)   # (NumPy lengths: data)
        whole, half = x.compute(), m // 2
        np.testing.assert_array_equal(outputs.compute(scheduler="sync"), np.concatenate(
            [model(whole[:, :half], lengths=lengths[:half])[0],
             model(whole[:, half:], lengths=lengths[half:])[0]], axis=1))
    # 64 times the data, the same graph (a few hundred bytes of key names aside)
    assert sizes[1] < sizes[0] + 2000, sizes


def test_errors_are_the_in_memory_functions():
    da = dask_array()
    from cyrnn import dask as cdask
    rng = np.random.default_rng(3)
    p = parameters("rnn", 3, 4, 2, rng)
    x = da.zeros((3, 8, 5), chunks=(3, 4, 5))
    a0 = np.zeros((4, 8))
    bad = dict(p, Waa=np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"parameters\['Waa'\] has shape \(4, 3\)"):
        cdask.rnn_forward(x, a0, bad)                          # checked before any task
    with pytest.raises(ValueError, match=r"a0 has shape \(4, 7\); expected \(4, 8\)"):
        cdask.rnn_forward(x, np.zeros((4, 7)), p)
    with pytest.raises(ValueError, match="expected 3 dimensions"):
        cdask.rnn_forward(da.zeros((3, 8), chunks=4), a0, p)
    with pytest.raises(ValueError, match=r"lengths has shape \(7,\)"):
        cdask.rnn_forward(x, a0, p, lengths=np.ones(7, int))
    with pytest.raises(TypeError, match="model must be a cyrnn.models.Model"):
        cdask.predict(p, x)
    # values only known inside the tasks: the same error when computed
    lazy = cdask.rnn_forward(x, a0, p, lengths=da.from_array(np.full(8, 9), chunks=4))[0]
    with pytest.raises(ValueError, match="lengths"):
        lazy.compute()
    # NumPy inputs are wrapped (batch chunks chosen by dask)
    a, _, _ = cdask.rnn_forward(np.zeros((3, 8, 5)), a0, p)
    np.testing.assert_array_equal(a.compute(), cyrnn.rnn_forward(np.zeros((3, 8, 5)), a0, p,
                                                                 cache=False)[0])


def test_process_scheduler():
    da = dask_array()
    from cyrnn import dask as cdask
    rng = np.random.default_rng(4)
    model = bidirectional_model(rng)
    x = rng.standard_normal((4, 12, 5))
    out, final = cdask.predict(model, da.from_array(x, chunks=(4, 6, 5)))
    got, got_c = __import__("dask").compute(out, final["c"], scheduler="processes",
                                            num_workers=2)
    want, want_final = model(x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_c, want_final["c"])


@pytest.fixture(scope="module")
def cluster_client():
    require_peer("distributed", "cyrnn.dask is checked on a real distributed cluster")
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def test_distributed_cluster(cluster_client):
    da = dask_array()
    from cyrnn import dask as cdask
    client = cluster_client
    rng = np.random.default_rng(5)
    p = parameters("lstm", 6, 8, 3, rng)
    x = rng.standard_normal((6, 40, 9))
    a0 = rng.standard_normal((8, 40))
    lengths = rng.integers(0, 10, 40)
    chunks = (10, 10, 10, 10)
    a, y, c, caches = cdask.lstm_forward(da.from_array(x, chunks=(6, chunks, 9)), a0, p,
                                         lengths=lengths)
    from distributed import get_task_stream
    with get_task_stream(client) as tasks:
        got_a, got_y, got_c = client.compute([a, y, c], sync=True)
    assert len({task["worker"] for task in tasks.data}) == 2      # both workers ran chunks
    want = per_chunk(cyrnn.lstm_forward, x, a0, p, chunks, lengths=lengths)
    for g, w in zip((got_a, got_y, got_c), want):
        np.testing.assert_array_equal(g, w)
    model = bidirectional_model(rng, n_x=6)
    out, final = cdask.predict(model, da.from_array(x, chunks=(6, chunks, 9)), lengths=lengths)
    want_out, want_final = model(x, lengths=lengths)
    np.testing.assert_array_equal(client.compute(out, sync=True), want_out)
    np.testing.assert_array_equal(client.compute(final["a"], sync=True), want_final["a"])
    # an error inside a task comes back as the same exception
    bad = cdask.gru_forward(da.from_array(x, chunks=(6, chunks, 9)), a0,
                            parameters("gru", 6, 8, 3, rng),
                            lengths=da.from_array(np.full(40, 10), chunks=10))[0]
    with pytest.raises(ValueError, match="lengths"):
        client.compute(bad, sync=True)
