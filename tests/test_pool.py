"""The recycling pool for large arrays (src/cyrnn_pool.h): reuse, limit, release,
no stale data in results, huge-page advice."""
import os
import subprocess
import sys

import numpy as np
import pytest

import cyrnn
import cyrnn.reference as ref
from cyrnn import _pool
from problems import lstm_parameters, sequence

# n_a·m·T·8 bytes = 1.4 MB per state array: every large buffer comes from the pool
N_X, N_A, N_Y, M, T = 8, 32, 4, 128, 43


@pytest.fixture
def problem():
    rng = np.random.default_rng(7)
    x, a0 = sequence(rng, N_X, N_A, M, T)
    return x, a0, lstm_parameters(rng, N_X, N_A, N_Y), rng.standard_normal((N_A, M, T))


def test_freed_arrays_are_kept_and_released(problem):
    x, a0, p, _ = problem
    cyrnn.release_memory()
    result = cyrnn.lstm_forward(x, a0, p)
    del result
    held, blocks, limit = _pool.pool_info()
    assert limit > 0 and blocks >= 5 and held >= 5 * N_A * M * T * 8
    again = cyrnn.lstm_forward(x, a0, p)  # takes the kept blocks instead of new ones
    assert _pool.pool_info()[0] < held
    del again
    held_now = _pool.pool_info()[0]
    assert held_now >= held
    assert cyrnn.release_memory() == held_now
    assert _pool.pool_info()[:2] == (0, 0)


def test_recycled_memory_never_shows_in_results(problem):
    """Pooled blocks hold the previous arrays' bytes: every output must be written
    in full (or zeroed) by the kernels, never read as if it were fresh."""
    x, a0, p, da = problem
    expected_a, expected_y, expected_c, ref_caches = ref.lstm_forward(x, a0, p)
    expected_grads = ref.lstm_backward(da, ref_caches)
    for _ in range(2):
        cyrnn.release_memory()
        # fill the pool with NaN-filled blocks of every size the calls will ask for
        poisoned = [_pool.empty((k, M, T), np.float64) for k in (N_X, N_A, N_A, N_A, N_A,
                                                                  4 * N_A, 4 * N_A, N_Y)]
        for block in poisoned:
            block.fill(np.nan)
        del poisoned, block
        a, y, c, caches = cyrnn.lstm_forward(x, a0, p)
        grads = cyrnn.lstm_backward(da, caches)
        np.testing.assert_allclose(a, expected_a, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(y, expected_y, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(c, expected_c, rtol=1e-9, atol=1e-11)
        for key, want in expected_grads.items():
            # sums over m·T products: tolerance relative to the largest entry
            np.testing.assert_allclose(grads[key], want, rtol=1e-9,
                                       atol=1e-11 * np.abs(want).max(), err_msg=key)
        del a, y, c, caches, grads


def test_pool_bytes_zero_turns_recycling_off(problem):
    code = ("import numpy as np, cyrnn; from cyrnn import _pool\n"
            "x = np.ones((8, 128, 40)); a0 = np.zeros((32, 128))\n"
            "p = {'Waa': np.eye(32) * 0.1, 'Wax': np.ones((32, 8)) * 0.1, 'Wya': np.ones((4, 32)),\n"
            "     'ba': np.zeros((32, 1)), 'by': np.zeros((4, 1))}\n"
            "result = cyrnn.rnn_forward(x, a0, p); del result\n"
            "import gc; gc.collect(); print(_pool.pool_info())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "CYRNN_POOL_BYTES": "0"}, check=True).stdout
    assert out.strip() == "(0, 0, 0)"


def _thp_mode():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return None


def _huge_kb_behind(array):
    """AnonHugePages (kB) of the mapping holding the middle of `array`'s data."""
    # a page in the middle: a block's first page lies outside the advised range
    probe = array.__array_interface__["data"][0] + array.nbytes // 2
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) > 4:  # a mapping's header line
                lo, hi = (int(v, 16) for v in fields[0].split("-"))
                inside = lo <= probe < hi
            elif inside and fields[0] == "AnonHugePages:":
                return int(fields[1])
    return 0


@pytest.mark.skipif(_thp_mode() != "madvise",
                    reason="huge pages are advised only where THP is in madvise mode")
def test_large_blocks_ask_for_huge_pages():
    # NumPy advises its own large arrays the same way: where even its array gets
    # no huge pages (emulators, sandboxes, no free 2 MiB pages), there is nothing
    # to compare against.
    numpy_array = np.ones((16, 1024, 1024))
    if _huge_kb_behind(numpy_array) == 0:
        pytest.skip("this system gives NumPy's advised arrays no huge pages either")
    del numpy_array
    cyrnn.release_memory()
    block = _pool.empty((16, 1024, 1024), np.float64)  # 128 MiB
    block.fill(1.0)
    assert _huge_kb_behind(block) > 0, "no huge pages behind a 128 MiB pooled array"
