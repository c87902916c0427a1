"""Thread safety and GIL release of the sequence kernels."""
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cyrnn
from problems import lstm_parameters, rnn_parameters, sequence


def count_for(seconds):
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += 1
    return n


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores")
def test_sequence_kernels_release_the_gil():
    """A pure-Python counter keeps counting while another thread runs a long LSTM.

    If the kernel held the GIL, the counter would stall for the whole call; the
    threshold (30% of the solo rate) is far below what a GIL-free kernel gives
    (~100%) and far above what a GIL-holding one gives (~0%).
    """
    rng = np.random.default_rng(0)
    x, a0 = sequence(rng, 64, 128, 256, 200)
    p = lstm_parameters(rng, 64, 128, 8, scale=0.1)
    start = time.perf_counter()
    caches = cyrnn.lstm_forward(x, a0, p)[3]
    call_seconds = time.perf_counter() - start
    solo_rate = count_for(0.2) / 0.2

    for run in (lambda: cyrnn.lstm_forward(x, a0, p),
                lambda: cyrnn.lstm_backward(np.ones((128, 256, 200)), caches)):
        done = threading.Event()
        worker = threading.Thread(target=lambda: (run(), done.set()))
        n = 0
        worker.start()
        t0 = time.perf_counter()
        while not done.is_set():
            n += 1
        elapsed = time.perf_counter() - t0
        worker.join()
        assert elapsed > 0.2 * call_seconds  # the loop really overlapped the call
        assert n / elapsed > 0.3 * solo_rate


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
