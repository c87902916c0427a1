"""cyrnn.dask throughput (issue 21's targets): sequences per second of an LSTM
forward (bigbatch-sized chunks: n_x = 64, n_a = 128, T = 50, 1024 sequences per
chunk, float32, hidden states only) on the threaded scheduler (1 and 2 threads)
and on a distributed LocalCluster (1 and 2 single-threaded worker processes),
and the distributed path against one in-process `lstm_forward(...,
n_threads=2)` call on a 64k-sequence job.

    python benchmarks/bench_dask.py [--sequences 32768] [--big 65536] [--json ...]

The inputs are placed first (on the cluster's workers, evenly, or in memory for the
threaded scheduler): the timings are of inference on data already there, not
of moving it. Each job returns the last step's hidden states (n_a, m) so that
what travels back is small, as in a job that writes its outputs where they are.
Repeated in interleaved rounds; medians. BLAS: one thread per worker thread.
"""
import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import cyrnn

N_X, N_A, T, CHUNK = 64, 128, 50, 1024


def parameters(rng):
    p = {f"{w}{g}": (0.3 * rng.standard_normal((N_A, N_A + N_X) if w == "W" else (N_A, 1)))
         .astype(np.float32) for g in "fico" for w in "Wb"}
    p["Wy"], p["by"] = np.zeros((0, N_A), np.float32), np.zeros((0, 1), np.float32)
    return p


def lazy_job(da, cdask, x, p):
    a0 = da.zeros((N_A, x.shape[1]), dtype=np.float32, chunks=(N_A, CHUNK))
    return cdask.lstm_forward(x, a0, p)[0][:, :, -1]


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def place(client, x):
    """x on the cluster as chunks of CHUNK sequences, spread evenly over the
    workers (persist may leave 18 and 14 of 32 chunks on two workers)."""
    import dask.array as da
    workers = sorted(client.scheduler_info()["workers"])
    parts = [np.ascontiguousarray(x[:, j:j + CHUNK]) for j in range(0, x.shape[1], CHUNK)]
    futures = [client.scatter(part, workers=[workers[i % len(workers)]])
               for i, part in enumerate(parts)]
    return da.concatenate([da.from_delayed(f, shape=part.shape, dtype=part.dtype)
                           for f, part in zip(futures, parts)], axis=1)


def measure(runs, rounds):
    """Median seconds of each run over interleaved rounds (after a warm-up)."""
    samples = {name: [] for name in runs}
    with threadpool_limits(1, "blas"):
        for fn in runs.values():
            fn()
        for _ in range(rounds):
            for name, fn in runs.items():
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequences", type=int, default=32768)
    parser.add_argument("--big", type=int, default=65536)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    from cyrnn import dask as cdask

    rng = np.random.default_rng(0)
    p = parameters(rng)
    x_np = rng.standard_normal((N_X, args.sequences, T), dtype=np.float32)
    big_np = rng.standard_normal((N_X, args.big, T), dtype=np.float32)
    a0_big = np.zeros((N_A, args.big), np.float32)
    x_local = da.from_array(x_np, chunks=(N_X, CHUNK, T)).persist()

    def threaded(k):
        return lambda: lazy_job(da, cdask, x_local, p).compute(scheduler="threads",
                                                                num_workers=k)

    def in_process():
        return cyrnn.lstm_forward(big_np, a0_big, p, cache=False, n_threads=2)[0][:, :, -1]

    def in_process_slices():
        # the same job as a loop over 2048-column slices (2 engine chunks each)
        return [cyrnn.lstm_forward(big_np[:, j:j + 2048], a0_big[:, j:j + 2048], p,
                                   cache=False, n_threads=2)[0][:, :, -1]
                for j in range(0, args.big, 2048)]

    # The threaded scheduler with no cluster running (idle worker processes
    # still take CPU time from a 2-thread run); then rounds of clusters, one
    # cluster alive at a time (started, data placed evenly, warmed up, timed,
    # closed), the 64k-sequence job with the in-process calls.
    seconds = measure({"threads 1": threaded(1), "threads 2": threaded(2)}, args.rounds)

    samples = {}
    with threadpool_limits(1, "blas"):
        for _ in range(args.rounds):
            for workers in (1, 2):
                with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster, \
                        Client(cluster, set_as_default=False) as client:
                    jobs = {f"cluster {workers} worker{'s' if workers > 1 else ''}":
                            place(client, x_np)}
                    if workers == 2:
                        jobs["big: cluster 2 workers"] = place(client, big_np)
                    for name, x_remote in jobs.items():
                        run = lambda: client.compute(lazy_job(da, cdask, x_remote, p), sync=True)
                        run()
                        samples.setdefault(name, []).append(timed(run))
            for name, fn in (("big: in-process n_threads=2", in_process),
                             ("big: in-process, 2048-column slices", in_process_slices)):
                fn()
                samples.setdefault(name, []).append(timed(fn))
    seconds.update({name: statistics.median(v) for name, v in samples.items()})
    rate = {name: (args.big if name.startswith("big") else args.sequences) / s
            for name, s in seconds.items()}
    ratios = {"threads 2 / threads 1": rate["threads 2"] / rate["threads 1"],
              "cluster 2 / cluster 1": rate["cluster 2 workers"] / rate["cluster 1 worker"],
              "distributed overhead vs in-process (64k job)":
                  seconds["big: cluster 2 workers"] / seconds["big: in-process n_threads=2"] - 1,
              "distributed overhead vs in-process slices (64k job)":
                  seconds["big: cluster 2 workers"] /
                  seconds["big: in-process, 2048-column slices"] - 1}
    for name in seconds:
        print(f"{name:30} {seconds[name]:8.3f} s  {rate[name]:10.0f} sequences/s")
    for name, value in ratios.items():
        print(f"{name:45} {value:.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": {"platform": platform.platform(),
                                   "dask": dask.__version__},
                       "shape": {"n_x": N_X, "n_a": N_A, "T": T, "chunk": CHUNK,
                                 "sequences": args.sequences, "big": args.big},
                       "seconds": seconds, "sequences_per_second": rate, "ratios": ratios},
                      fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
