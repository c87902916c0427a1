"""Multi-threaded inference: throughput scaling, request serving, and the GIL.

    python benchmarks/bench_threads.py [--max-threads N] [--json PATH]

(a) bigbatch inference (n_x, n_a, n_y, m, T) = (64, 128, 32, 1024, 50),
    lstm_forward(cache=False): sequences/s with k user threads (each on 1/k of the
    batch) and with the built-in n_threads=k; PyTorch nn.LSTM + Linear + softmax
    under torch.no_grad() with torch.set_num_threads(k), when installed.
(a') the same for a narrow batch, (256, 256, 32, 8, 2000) (the "long" shape of
    the inference suite), where n_threads=k splits each step by units (split
    runs, src/_engine.pyx) when the shape's plan has row blocks; the plan
    chosen is printed.
(b) request serving: many small requests (m = 1..8, T = 50, n_a = 128, n_x = 64,
    n_y = 32) from k user threads; requests/s, cyrnn vs PyTorch (each request
    one forward call).
(c) GIL check: a pure-Python counter thread's rate while another thread runs a
    long cyrnn call, as a fraction of its rate alone.
BLAS runs single-threaded throughout (threadpoolctl), as the README advises for
threaded callers; PyTorch gets its own thread setting per row.
"""
import argparse
import json
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

import cyrnn
from cyrnn import _engine
from cyrnn.bench import make_problem

BIGBATCH = (64, 128, 32, 1024, 50)
NARROW = (256, 256, 32, 8, 2000)


def median_time(fn, repeats):
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def thread_counts(max_threads):
    counts = [1, 2, 4, 8, 12, 16, 24, 32]
    return [k for k in counts if k <= max_threads] or [1]


def torch_lstm(prob, dtype):
    try:
        import torch
    except ImportError:
        return None, None
    from cyrnn.bench import torch_calls
    calls = torch_calls(prob, dtype)

    def infer():
        with torch.no_grad():
            return calls["lstm_forward"]()
    return torch, infer


def scaling(shape, max_threads, repeats, dtype):
    prob = make_problem(shape, dtype)
    x, a0, p = prob["x"], prob["a0"], prob["p"]
    m = x.shape[1]
    rows = []
    torch, torch_infer = torch_lstm(prob, dtype)
    for k in thread_counts(max_threads):
        row = {"threads": k}
        if k <= m:      # (user threads need a column each)
            parts = np.array_split(np.arange(m), k)
            xs = [np.ascontiguousarray(x[:, idx]) for idx in parts]
            a0s = [np.ascontiguousarray(a0[:, idx]) for idx in parts]
            with ThreadPoolExecutor(k) as pool:
                def user_threads():
                    list(pool.map(lambda i: cyrnn.lstm_forward(xs[i], a0s[i], p, cache=False),
                                  range(k)))
                row["user_threads_seq_per_s"] = m / median_time(user_threads, repeats)
        t_builtin = median_time(lambda: cyrnn.lstm_forward(x, a0, p, cache=False, n_threads=k),
                                repeats)
        row["n_threads_seq_per_s"] = m / t_builtin
        rows.append(row)
    # PyTorch last: its OpenMP threads keep spinning after its calls.
    for row in rows if torch is not None else ():
        torch.set_num_threads(row["threads"])
        row["torch_seq_per_s"] = m / median_time(torch_infer, repeats)
    base_u, base_b = rows[0]["user_threads_seq_per_s"], rows[0]["n_threads_seq_per_s"]
    for row in rows:
        if "user_threads_seq_per_s" in row:
            row["user_threads_speedup"] = row["user_threads_seq_per_s"] / base_u
        row["n_threads_speedup"] = row["n_threads_seq_per_s"] / base_b
    return rows


def serving(max_threads, seconds, dtype):
    n_x, n_a, n_y, T = 64, 128, 32, 50
    rng = np.random.default_rng(0)
    prob = make_problem((n_x, n_a, n_y, 8, T), dtype)
    p = prob["p"]
    requests = []
    for _ in range(64):
        m = int(rng.integers(1, 9))
        requests.append((prob["x"][:, :m].copy(), prob["a0"][:, :m].copy()))
    try:
        import torch
        from cyrnn.bench import torch_calls
        torch_requests = []
        for x, a0 in requests:
            calls = torch_calls({"x": x, "a0": a0, "p": p, "c0": a0,
                                 "da": np.zeros((n_a, x.shape[1], T), dtype)}, dtype)
            torch_requests.append(calls["lstm_forward"])
    except ImportError:
        torch = None
    rows = []

    def rate(serve_one, k):
        stop = time.perf_counter() + seconds
        counts = [0] * k

        def worker(i):
            j = i
            while time.perf_counter() < stop:
                serve_one(j % len(requests))
                j += k
                counts[i] += 1
        with ThreadPoolExecutor(k) as pool:
            list(pool.map(worker, range(k)))
        return sum(counts) / seconds

    def ours(j):
        x, a0 = requests[j]
        cyrnn.lstm_forward(x, a0, p, cache=False)

    for k in thread_counts(max_threads):
        rows.append({"threads": k, "cyrnn_requests_per_s": rate(ours, k)})
    if torch is not None:
        torch.set_num_threads(1)  # one intra-op thread per serving thread

        def theirs(j):
            with torch.no_grad():
                torch_requests[j]()
        for row in rows:
            row["torch_requests_per_s"] = rate(theirs, row["threads"])
    for row in rows:
        row["cyrnn_speedup"] = row["cyrnn_requests_per_s"] / rows[0]["cyrnn_requests_per_s"]
    return rows


def gil_check(dtype):
    prob = make_problem(BIGBATCH, dtype)
    x, a0, p = prob["x"], prob["a0"], prob["p"]

    def count(seconds):
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            n += 1
        return n / seconds

    solo = max(count(0.3), count(0.3))
    result = {}
    for name, call in (("lstm_forward", lambda: cyrnn.lstm_forward(x, a0, p)),
                       ("lstm_forward_inference",
                        lambda: cyrnn.lstm_forward(x, a0, p, cache=False))):
        done = threading.Event()
        worker = threading.Thread(target=lambda: [call() for _ in range(3)] and done.set())
        n = 0
        worker.start()
        start = time.perf_counter()
        while not done.is_set():
            n += 1
        elapsed = time.perf_counter() - start
        worker.join()
        result[name] = min(1.0, (n / elapsed) / max(solo, count(0.3)))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="per serving row")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--parts", default="gil,bigbatch,narrow,serving",
                        help="comma-separated: gil, bigbatch, narrow, serving")
    args = parser.parse_args()
    dtype = np.float32 if args.dtype == "float32" else np.float64
    parts = args.parts.split(",")
    result = {"cpus": os.cpu_count(), "dtype": args.dtype}
    with threadpool_limits(1, user_api="blas"):
        if "gil" in parts:
            result["gil_counter_fraction"] = gil_check(dtype)
        for name, shape in (("bigbatch", BIGBATCH), ("narrow", NARROW)):
            if name in parts:
                result[name] = scaling(shape, args.max_threads, args.repeats, dtype)
        if "serving" in parts:
            result["serving"] = serving(args.max_threads, args.seconds, dtype)
    result["plans"] = {" ".join(map(str, k)): v for k, v in _engine.forward_plans().items()}
    print(f"{result['cpus']} CPUs, {args.dtype}, BLAS 1 thread; plans chosen: {result['plans']}")
    for name, shape in (("bigbatch", BIGBATCH), ("narrow", NARROW)):
        if name not in result:
            continue
        print(f"(a) {name} inference {shape}, sequences/s (speed-up vs 1 thread)")
        for r in result[name]:
            torch_part = f"  torch {r['torch_seq_per_s']:8.0f}" if "torch_seq_per_s" in r else ""
            user_part = (f"user threads {r['user_threads_seq_per_s']:8.0f} "
                         f"(x{r['user_threads_speedup']:.2f})" if "user_threads_speedup" in r
                         else f"{'':26s}")
            print(f"  {r['threads']:3d} threads: {user_part}  n_threads "
                  f"{r['n_threads_seq_per_s']:8.0f} (x{r['n_threads_speedup']:.2f}){torch_part}")
    print("(b) request serving (m = 1..8, T = 50, n_a = 128), requests/s")
    for r in result.get("serving", ()):
        torch_part = (f"  torch {r['torch_requests_per_s']:8.0f}"
                      if "torch_requests_per_s" in r else "")
        print(f"  {r['threads']:3d} threads: cyrnn {r['cyrnn_requests_per_s']:8.0f} "
              f"(x{r['cyrnn_speedup']:.2f}){torch_part}")
    if "gil_counter_fraction" in result:
        print("(c) GIL check: counter thread keeps "
              + ", ".join(f"{100 * v:.0f}% ({k})"
                          for k, v in result["gil_counter_fraction"].items())
              + " of its solo rate")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
