"""Thread safety and GIL release of the kernels."""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import cyrnn
from problems import engine_settings, lstm_parameters, rnn_parameters, sequence


def ran_holding_the_gil(call):
    """Whether the engine's driver ran holding the GIL during call() (the
    engine's probe asks the interpreter, PyGILState_Check, from inside the
    driver): structural, not a rate, so it cannot flake on a loaded machine."""
    from cyrnn import _engine

    _engine._gil_probe(True)
    try:
        call()
    finally:
        held = _engine._gil_probe(False)
    assert held is not None, "the driver did not run"
    return held


def test_sequence_kernels_release_the_gil():
    rng = np.random.default_rng(0)
    x, a0 = sequence(rng, 8, 16, 2100, 5)
    p = lstm_parameters(rng, 8, 16, 4, scale=0.1)
    pr = rnn_parameters(rng, 8, 16, 4, scale=0.1)
    caches = cyrnn.lstm_forward(x, a0, p)[3]
    da = np.ones((16, 2100, 5))
    for call in (lambda: cyrnn.lstm_forward(x, a0, p),
                 lambda: cyrnn.lstm_backward(da, caches),
                 lambda: cyrnn.lstm_forward(x, a0, p, cache=False, n_threads=2),
                 lambda: cyrnn.rnn_forward(x[:, :4], a0[:, :4], pr),   # notebook-sized
                 lambda: cyrnn.rnn_backward(da[:, :4], cyrnn.rnn_forward(x[:, :4], a0[:, :4],
                                                                         pr)[2])):
        assert not ran_holding_the_gil(call)


@pytest.mark.parametrize("name", ["rnn_cell_forward", "rnn_cell_backward",
                                  "lstm_cell_forward", "lstm_cell_backward"])
def test_large_cell_calls_release_the_gil_small_ones_keep_it(name):
    # Cell calls under ~16k multiply-adds keep the GIL (releasing it costs more
    # than their work, see holds_gil_worth_releasing); large ones release it.
    rng = np.random.default_rng(1)
    for (n_x, n_a, m), holds in (((128, 96, 64), False), ((3, 5, 10), True)):
        xt, a0 = rng.standard_normal((n_x, m)), rng.standard_normal((n_a, m))
        if name.startswith("rnn"):
            p = rnn_parameters(rng, n_x, n_a, 4, scale=0.1)
            cache = cyrnn.rnn_cell_forward(xt, a0, p)[2]
            run = {"rnn_cell_forward": lambda: cyrnn.rnn_cell_forward(xt, a0, p),
                   "rnn_cell_backward": lambda: cyrnn.rnn_cell_backward(a0, cache)}[name]
        else:
            p = lstm_parameters(rng, n_x, n_a, 4, scale=0.1)
            cache = cyrnn.lstm_cell_forward(xt, a0, a0, p)[3]
            run = {"lstm_cell_forward": lambda: cyrnn.lstm_cell_forward(xt, a0, a0, p),
                   "lstm_cell_backward": lambda: cyrnn.lstm_cell_backward(a0, a0, cache)}[name]
        assert ran_holding_the_gil(run) == holds


def test_concurrent_calls_match_serial_calls():
    rng = np.random.default_rng(1)
    problems = []
    for k in range(8):
        n_x, n_a, m, T = 3 + k, 5 + k, 4 + k, 6 + k
        x, a0 = sequence(rng, n_x, n_a, m, T)
        problems.append(("rnn", x, a0, rnn_parameters(rng, n_x, n_a, 3)))
        problems.append(("lstm", x, a0, lstm_parameters(rng, n_x, n_a, 3)))

    def run(problem):
        kind, x, a0, p = problem
        if kind == "rnn":
            a, y, caches = cyrnn.rnn_forward(x, a0, p)
            return a, y, cyrnn.rnn_backward(a, caches)
        a, y, c, caches = cyrnn.lstm_forward(x, a0, p)
        return a, y, c, cyrnn.lstm_backward(a, caches)

    serial = [run(pr) for pr in problems]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            for got, want in zip(pool.map(run, problems * 1), serial):
                for u, v in zip(got, want):
                    if isinstance(v, dict):
                        for key in v:
                            np.testing.assert_array_equal(u[key], v[key])
                    else:
                        np.testing.assert_array_equal(u, v)


# ------------------------------------------------------------ n_threads and cache=False

# Blocks of steps (src/_engine.pyx, block_steps): (3, 5, 2, 10, 60) runs in
# blocks of 8 steps, (2, 3, 2, 40, 20) too, so states carry across blocks;
# (3, 4, 2, 2100, 3) runs as two column chunks.
THREAD_SHAPES = [(3, 5, 2, 10, 7), (4, 6, 3, 130, 4), (2, 3, 2, 1, 3), (5, 4, 3, 2, 2),
                 (3, 4, 2, 0, 3), (3, 4, 2, 257, 2), (3, 5, 2, 10, 60), (2, 3, 2, 40, 20),
                 (3, 4, 2, 2100, 3)]


def reference_outputs(kind, x, a0, p):
    import cyrnn.reference as ref
    return ref.rnn_forward(x, a0, p)[:2] if kind == "rnn" else ref.lstm_forward(x, a0, p)[:3]


@pytest.mark.parametrize("shape", THREAD_SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_n_threads_results_are_identical(kind, shape, dtype):
    n_x, n_a, n_y, m, T = shape
    rng = np.random.default_rng(m)
    x, a0 = sequence(rng, n_x, n_a, m, T, dtype)
    make = rnn_parameters if kind == "rnn" else lstm_parameters
    p = make(rng, n_x, n_a, n_y, dtype)
    forward = cyrnn.rnn_forward if kind == "rnn" else cyrnn.lstm_forward
    n_out = 2 if kind == "rnn" else 3
    expected = reference_outputs(kind, x.astype(np.float64), a0.astype(np.float64),
                                 {k: v.astype(np.float64) for k, v in p.items()})
    tol = 1e-12 if dtype == np.float64 else 2e-5
    chunked = forward(x, a0, p, cache=False, n_threads=1)
    for cache in (False, True):
        runs = [forward(x, a0, p, cache=cache, n_threads=k) for k in (1, 2, 3, None)]
        for k, run in zip((1, 2, 3, None), runs):
            assert (run[-1] is None) == (not cache)
            # one plan for m: every run bit-identical, with or without caches
            for got, want, base in zip(run[:n_out], expected, chunked[:n_out]):
                assert got.dtype == dtype
                np.testing.assert_array_equal(got, base)
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        if cache and m and T:
            da = rng.standard_normal((n_a, m, T)).astype(dtype)
            backward = cyrnn.rnn_backward if kind == "rnn" else cyrnn.lstm_backward
            g1, g2 = backward(da, runs[1][-1]), backward(da, forward(x, a0, p)[-1])
            for key in g1:
                tol = 1e-10 if dtype == np.float64 else 1e-3
                np.testing.assert_allclose(g1[key], g2[key], rtol=tol, atol=tol)


@pytest.mark.parametrize("m, T", [(40, 20), (5, 60)])
def test_inference_mode_carries_both_states_across_blocks(m, T):
    rng = np.random.default_rng(T)
    x, a0 = sequence(rng, 3, 4, m, T)
    c0 = rng.standard_normal(a0.shape)
    p = lstm_parameters(rng, 3, 4, 2)
    cached = cyrnn.lstm_forward(x, a0, p, c0=c0)
    inferred = cyrnn.lstm_forward(x, a0, p, c0=c0, cache=False)
    for got, want in zip(inferred[:3], cached[:3]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_inference_mode_returns_no_caches_and_checks_arguments():
    rng = np.random.default_rng(0)
    x, a0 = sequence(rng, 3, 4, 5, 6)
    p = lstm_parameters(rng, 3, 4, 2)
    a, y, c, caches = cyrnn.lstm_forward(x, a0, p, cache=False, c0=a0)
    assert caches is None and a.shape == c.shape == (4, 5, 6)
    with pytest.raises(ValueError, match="n_threads must be >= 1"):
        cyrnn.lstm_forward(x, a0, p, n_threads=0)
    with pytest.raises(TypeError, match="n_threads must be a positive int or None"):
        cyrnn.rnn_forward(x, a0, rnn_parameters(rng, 3, 4, 2), n_threads=2.0)
    with pytest.raises(TypeError, match="cache must be True or False"):
        cyrnn.rnn_forward(x, a0, rnn_parameters(rng, 3, 4, 2), cache="no")


def test_failing_call_in_threads_does_not_deadlock():
    rng = np.random.default_rng(2)
    x, a0 = sequence(rng, 3, 4, 300, 5)
    p = lstm_parameters(rng, 3, 4, 2)
    bad = dict(p, Wf=p["Wf"][:, :3])
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(cyrnn.lstm_forward, x, a0, bad if k % 2 else p,
                               cache=bool(k % 3), n_threads=3) for k in range(24)]
        for k, f in enumerate(futures):
            if k % 2:
                with pytest.raises(ValueError, match="parameters\\['Wf'\\]"):
                    f.result(timeout=60)
            else:
                assert f.result(timeout=60)[0].shape == (4, 300, 5)
    # a kernel-level failure inside the worker threads reaches the caller
    from cyrnn import _parallel

    def work(first, last):
        if first > 0:
            raise MemoryError("worker failed")

    with pytest.raises(MemoryError, match="worker failed"):
        _parallel.run_chunks(work, 8, 4)
    assert _parallel._regions == 0


def finishes(call, seconds=120):
    """call() in a watchdog thread: whether it returned within `seconds` (a
    deadlock fails the test instead of hanging the suite)."""
    done = threading.Event()
    errors = []

    def run():
        try:
            call()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            done.set()
    threading.Thread(target=run, daemon=True).start()
    finished = done.wait(seconds)
    if errors:
        raise errors[0]
    return finished


def test_threaded_calls_never_wait_for_a_busy_or_nested_pool():
    """The thread pool is shared: its threads may all be busy with other work,
    or be the caller itself — a bidirectional Model on n_threads=4 runs its two
    directions on the pool, each on 2 threads (this hung at m = 2100, two
    chunks). A threaded call then runs the parts the pool has not started
    itself: chunked calls, split runs (narrow batches under a row-block plan),
    and nested calls all finish, with the results of 1 thread."""
    from cyrnn import _parallel

    rng = np.random.default_rng(5)
    x, a0 = sequence(rng, 3, 8, 2100, 4)
    p = lstm_parameters(rng, 3, 8, 0, scale=0.5)
    xn, an = sequence(rng, 5, 128, 6, 20)
    pn = lstm_parameters(rng, 5, 128, 0, scale=0.1)
    with engine_settings(plan="rows64"):
        want = cyrnn.lstm_forward(x, a0, p, cache=False)[0]
        want_split = cyrnn.lstm_forward(xn, an, pn, cache=False)[0]
        calls = {"chunks": lambda: cyrnn.lstm_forward(x, a0, p, cache=False, n_threads=2),
                 "split": lambda: cyrnn.lstm_forward(xn, an, pn, cache=False, n_threads=2)}
        # every pool thread busy until released
        pool = _parallel._pool(1)
        release = threading.Event()
        blockers = [pool.submit(release.wait) for _ in range(_parallel._executor_workers)]
        try:
            for name, call in calls.items():
                got = []
                assert finishes(lambda: got.append(call())), name
                np.testing.assert_array_equal(got[0][0], want if name == "chunks"
                                              else want_split)
        finally:
            release.set()
            for b in blockers:
                b.result(timeout=60)
        # nested: both directions' calls from the pool's threads and the caller
        got = [None, None]

        def both(first, last):
            for k in range(first, last):
                got[k] = calls["chunks" if k == 0 else "split"]()[0]
        assert finishes(lambda: _parallel.run_chunks(both, 2, 2))
        np.testing.assert_array_equal(got[0], want)
        np.testing.assert_array_equal(got[1], want_split)
    assert _parallel._regions == 0


def test_all_public_functions_concurrently_on_shared_inputs():
    rng = np.random.default_rng(3)
    x, a0 = sequence(rng, 4, 6, 9, 8)
    p_r, p_l = rnn_parameters(rng, 4, 6, 3), lstm_parameters(rng, 4, 6, 3)
    da = rng.standard_normal((6, 9, 8))
    xt, dn = np.ascontiguousarray(x[:, :, 0]), np.ascontiguousarray(da[:, :, 0])
    rc, lc = cyrnn.rnn_forward(x, a0, p_r)[2], cyrnn.lstm_forward(x, a0, p_l)[3]
    rcc = cyrnn.rnn_cell_forward(xt, a0, p_r)[2]
    lcc = cyrnn.lstm_cell_forward(xt, a0, a0, p_l)[3]
    calls = [
        lambda: cyrnn.rnn_forward(x, a0, p_r)[:2],
        lambda: cyrnn.lstm_forward(x, a0, p_l)[:3],
        lambda: cyrnn.lstm_forward(x, a0, p_l, cache=False, n_threads=2)[:3],
        lambda: cyrnn.rnn_backward(da, rc),
        lambda: cyrnn.lstm_backward(da, lc),
        lambda: cyrnn.rnn_cell_forward(xt, a0, p_r)[:2],
        lambda: cyrnn.lstm_cell_forward(xt, a0, a0, p_l)[:3],
        lambda: cyrnn.rnn_cell_backward(dn, rcc),
        lambda: cyrnn.lstm_cell_backward(dn, dn, lcc),
        lambda: cyrnn.softmax(x),
        lambda: cyrnn.sigmoid(x),
    ]
    serial = [call() for call in calls]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda k: (k % len(calls), calls[k % len(calls)]()),
                                range(20 * len(calls))))
    for k, got in results:
        want = serial[k]
        if isinstance(want, dict):
            for key in want:
                np.testing.assert_array_equal(got[key], want[key])
        elif isinstance(want, tuple):
            for u, v in zip(got, want):
                np.testing.assert_array_equal(u, v)
        else:
            np.testing.assert_array_equal(got, want)


def test_overlapping_user_calls_warn_once_when_blas_is_threaded():
    """The BLAS thread policy: warn (once, with the fix) rather than change a
    global setting when user threads overlap large calls and BLAS is threaded."""
    import warnings

    from threadpoolctl import threadpool_info

    from cyrnn import _parallel

    barrier = threading.Barrier(2)
    caught = []

    def overlapping_call():
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with _parallel.concurrent_use(10**7):
                barrier.wait(timeout=30)  # both calls are now inside at once
                barrier.wait(timeout=30)
        caught.extend(seen)

    _parallel._warned = False
    try:
        with threadpool_limits(2, user_api="blas"):
            blas_threads = max(info["num_threads"] for info in threadpool_info()
                               if info["user_api"] == "blas")
            threads = [threading.Thread(target=overlapping_call) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        # with BLAS on one thread there is nothing to warn about
        _parallel._warned = False
        caught.clear()
        with threadpool_limits(1, user_api="blas"):
            threads = [threading.Thread(target=overlapping_call) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
        assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
        assert _parallel._active_calls == 0
        if blas_threads < 2:
            pytest.skip("SciPy's BLAS cannot run 2 threads here: the warning is untestable")
        assert len(messages) == 1, messages
        assert "threadpool_limits(1, 'blas')" in messages[0]
    finally:
        _parallel._warned = False
