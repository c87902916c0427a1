"""Leaks, concurrency stress and numerical robustness (issue: reliability)."""
import gc
import os
import platform
import random
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cyrnn
import cyrnn.reference as ref
from problems import lstm_parameters, rnn_parameters, sequence

# calls per stress thread (8 threads): a count, not a duration, so a slow
# machine (ASan, QEMU) takes longer instead of checking less
STRESS_CALLS = int(os.environ.get("CYRNN_STRESS_CALLS", 150))


def every_call(rng):
    """One valid call of each public function, plus one failing call of each."""
    n_x, n_a, n_y, m, T = 3, 5, 2, 4, 6
    x, a0 = sequence(rng, n_x, n_a, m, T)
    pr, pl = rnn_parameters(rng, n_x, n_a, n_y), lstm_parameters(rng, n_x, n_a, n_y)
    da = rng.standard_normal((n_a, m, T))
    xt, dn = np.ascontiguousarray(x[:, :, 0]), np.ascontiguousarray(da[:, :, 0])
    rc, lc = cyrnn.rnn_forward(x, a0, pr)[2], cyrnn.lstm_forward(x, a0, pl)[3]
    rc_ref, lc_ref = ref.rnn_forward(x, a0, pr)[2], ref.lstm_forward(x, a0, pl)[3]
    rcell = cyrnn.rnn_cell_forward(xt, a0, pr)[2]
    lcell = cyrnn.lstm_cell_forward(xt, a0, a0, pl)[3]
    bad_p = dict(pl, Wf=pl["Wf"][:, :3])
    good = [
        lambda: cyrnn.rnn_cell_forward(xt, a0, pr),
        lambda: cyrnn.rnn_forward(x, a0, pr),
        lambda: cyrnn.rnn_forward(x, a0, pr, cache=False, n_threads=2),
        lambda: cyrnn.rnn_cell_backward(dn, rcell),
        lambda: cyrnn.rnn_backward(da, rc),
        lambda: cyrnn.rnn_backward(da, rc_ref),
        lambda: cyrnn.lstm_cell_forward(xt, a0, a0, pl),
        lambda: cyrnn.lstm_forward(x, a0, pl),
        lambda: cyrnn.lstm_forward(x.T.copy().T, a0, pl, c0=a0, n_threads=2),
        lambda: cyrnn.lstm_cell_backward(dn, dn, lcell),
        lambda: cyrnn.lstm_backward(da, lc),
        lambda: cyrnn.lstm_backward(da, lc_ref),
        lambda: cyrnn.softmax(x),
        lambda: cyrnn.sigmoid(x),
    ]
    bad = [
        lambda: cyrnn.lstm_forward(x, a0, bad_p),
        lambda: cyrnn.lstm_cell_forward(xt, a0, a0[:, :2], pl),
        lambda: cyrnn.rnn_forward(x.astype(complex), a0, pr),
        lambda: cyrnn.rnn_backward(da[:, :, :1].repeat(9, axis=2), rc),
        lambda: cyrnn.lstm_backward(da, (lc[0][:2], x)),
        lambda: cyrnn.rnn_cell_backward(dn, rcell[:3]),
        lambda: cyrnn.lstm_cell_backward(dn, None, lcell),
        lambda: cyrnn.rnn_forward(x, a0, {"Wax": 1}),
        lambda: cyrnn.softmax("text"),
    ]
    return good, bad


def run_all(good, bad, rounds):
    for _ in range(rounds):
        for call in good:
            call()
        for call in bad:
            try:
                call()
            except (ValueError, KeyError, TypeError, MemoryError):
                pass
            else:
                raise AssertionError("a bad call did not raise")


def rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_no_memory_growth_over_many_calls():
    good, bad = every_call(np.random.default_rng(0))
    run_all(good, bad, 200)  # warm up: caches, lazily created objects, thread pool
    gc.collect()
    tracemalloc.start()
    run_all(good, bad, 200)
    gc.collect()
    first, _ = tracemalloc.get_traced_memory()
    rss_first = rss_bytes()
    run_all(good, bad, 1500)  # 1,500 rounds x 23 calls
    gc.collect()
    second, _ = tracemalloc.get_traced_memory()
    rss_second = rss_bytes()
    tracemalloc.stop()
    # A leak of even one small array per call would add megabytes here.
    assert second - first < 200_000, f"traced memory grew by {second - first} bytes"
    if not os.environ.get("CYRNN_SANITIZED"):  # ASan's quarantine holds freed memory
        assert rss_second - rss_first < 8 * 2**20, f"RSS grew by {rss_second - rss_first} bytes"


def test_concurrency_stress():
    """Random valid and invalid calls from many threads: results equal the
    serial ones, errors are the expected ones, nothing deadlocks."""
    rng = np.random.default_rng(1)
    good, bad = every_call(rng)
    expected = [call() for call in good]
    counts = {"good": 0, "bad": 0}
    lock = threading.Lock()

    def compare(got, want):
        if isinstance(want, dict):
            for key in want:
                np.testing.assert_array_equal(got[key], want[key])
        elif isinstance(want, tuple):
            for u, v in zip(got, want):
                if isinstance(v, np.ndarray):
                    np.testing.assert_array_equal(u, v)
        else:
            np.testing.assert_array_equal(got, want)

    def worker(seed):
        r = random.Random(seed)
        for _ in range(STRESS_CALLS):
            if r.random() < 0.7:
                k = r.randrange(len(good))
                compare(good[k](), expected[k])
                kind = "good"
            else:
                with pytest.raises((ValueError, KeyError, TypeError)):
                    bad[r.randrange(len(bad))]()
                kind = "bad"
            with lock:
                counts[kind] += 1

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(worker, seed) for seed in range(8)]
        for f in futures:
            f.result(timeout=600)  # a deadlock fails here
    assert counts["good"] + counts["bad"] == 8 * STRESS_CALLS


# ---------------------------------------------------------------- numerics

def test_very_long_sequences():
    rng = np.random.default_rng(2)
    x, a0 = sequence(rng, 4, 6, 3, 10_000)
    p = lstm_parameters(rng, 4, 6, 2, scale=0.5)
    a, y, c, caches = cyrnn.lstm_forward(x, a0, p)
    a_r, y_r, c_r, caches_r = ref.lstm_forward(x, a0, p)
    np.testing.assert_allclose(a, a_r, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(y, y_r, rtol=1e-9, atol=1e-12)
    da = rng.standard_normal(a.shape)
    g, g_r = cyrnn.lstm_backward(da, caches), ref.lstm_backward(da, caches_r)
    for key in g_r:
        np.testing.assert_allclose(g[key], g_r[key], rtol=1e-8, atol=1e-9)
    pr = rnn_parameters(rng, 4, 6, 2, scale=0.3)
    a, y, caches = cyrnn.rnn_forward(x, a0, pr)
    np.testing.assert_allclose(a, ref.rnn_forward(x, a0, pr)[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("scale", [1e2, 1e6, 1e150, 1e300])
def test_extreme_preactivations_match_reference(scale):
    rng = np.random.default_rng(3)
    x, a0 = sequence(rng, 3, 4, 5, 6, scale=scale)
    for kind in ("rnn", "lstm"):
        p = (rnn_parameters if kind == "rnn" else lstm_parameters)(rng, 3, 4, 2)
        fwd = cyrnn.rnn_forward if kind == "rnn" else cyrnn.lstm_forward
        fwd_r = ref.rnn_forward if kind == "rnn" else ref.lstm_forward
        got = fwd(x, a0, p)
        with np.errstate(all="ignore"):
            want = fwd_r(x, a0, p)
        n = 2 if kind == "rnn" else 3
        for u, v in zip(got[:n], want[:n]):
            finite = np.isfinite(v)
            # where the reference's global-max softmax gives NaN, cyrnn must not
            assert np.isfinite(u).all()
            np.testing.assert_allclose(u[finite], v[finite], rtol=1e-9, atol=1e-12)


def test_denormal_inputs_and_vanishing_gradients():
    rng = np.random.default_rng(4)
    x, a0 = sequence(rng, 3, 4, 5, 40, scale=1e-310)  # denormal inputs
    p = lstm_parameters(rng, 3, 4, 2, scale=1e-3)      # gradients vanish into denormals
    a, y, c, caches = cyrnn.lstm_forward(x, a0 * 1e-310, p)
    g = cyrnn.lstm_backward(np.full(a.shape, 1e-300), caches)
    a_r, y_r, c_r, caches_r = ref.lstm_forward(x, a0 * 1e-310, p)
    g_r = ref.lstm_backward(np.full(a.shape, 1e-300), caches_r)
    # flush-to-zero may differ from the reference only below the smallest normal number
    np.testing.assert_allclose(a, a_r, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(y, y_r, rtol=1e-9, atol=1e-300)
    for key in g_r:
        assert np.isfinite(g[key]).all()
        np.testing.assert_allclose(g[key], g_r[key], rtol=1e-6, atol=1e-305)


# the platforms whose kernels flush denormals (src/cyrnn_elementwise.h)
FLUSHES_DENORMALS = platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64")


@pytest.mark.skipif(not FLUSHES_DENORMALS, reason="no flush-to-zero control on this CPU")
@pytest.mark.parametrize("dtype, tiny", [(np.float64, 1e-160), (np.float32, 1e-22)])
def test_denormal_results_flush_to_zero_on_every_platform(dtype, tiny):
    # a pre-activation of tiny**2 is denormal (1e-320 / 1e-44): README promises 0,
    # on x86 (FTZ|DAZ) and ARM (FPCR.FZ) alike, where the reference keeps it
    x, a0 = np.full((1, 3, 2), tiny, dtype), np.zeros((1, 3), dtype)
    p = {"Wax": np.full((1, 1), tiny, dtype), "Waa": np.zeros((1, 1), dtype),
         "Wya": np.ones((1, 1), dtype), "ba": np.zeros((1, 1), dtype),
         "by": np.zeros((1, 1), dtype)}
    a_ref = ref.rnn_forward(x, a0, p)[0]
    assert (a_ref != 0).all() and (np.abs(a_ref) < np.finfo(dtype).tiny).all()
    for kwargs in ({}, {"cache": False}):
        a = cyrnn.rnn_forward(x, a0, p, **kwargs)[0]
        assert (a == 0).all(), (kwargs, a)


def test_float32_overflow_behaves_like_the_reference_or_better():
    rng = np.random.default_rng(5)
    x, a0 = sequence(rng, 3, 4, 5, 6, np.float32, scale=1e30)
    p = lstm_parameters(rng, 3, 4, 2, np.float32, scale=1e8)  # pre-activations overflow to inf
    a, y, c, caches = cyrnn.lstm_forward(x, a0, p)
    with np.errstate(all="ignore"):
        a_r, y_r, c_r, _ = ref.lstm_forward(x, a0, p)
    for u, v in ((a, a_r), (c, c_r)):
        both = np.isfinite(u) & np.isfinite(v)
        np.testing.assert_allclose(u[both], v[both], rtol=1e-5, atol=1e-6)
        # NaN only where the reference has NaN too (inf - inf inside the cell)
        assert not (np.isnan(u) & ~np.isnan(v)).any()
    assert not np.isnan(y).any() or np.isnan(a).any()
    assert a.dtype == y.dtype == c.dtype == np.float32
