"""Soak test of cyrnn.serve.Batcher: many requests from many threads, some
malformed, some cancelled; every valid answer checked against the model alone.

    python benchmarks/soak_serve.py [--requests 200000] [--clients 64] [--n-a 32]

Each client thread sends single sequences of random lengths 1-60; 1% are
malformed (a wrong n_x), 1% are cancelled right after submission (dropped if
still waiting, else answered). Checks: every valid request's result equals the
model's for it alone (answers are checked against a cache of single calls, one
per distinct request), every malformed one fails with the model's message,
the resident memory after the run is within `--rss-slack` MiB of what it was
after the first tenth (warm-up), and no batcher thread is left after close().
tests/test_serve.py runs it with 20,000 requests.
"""
import argparse
import sys
import threading

import numpy as np

from cyrnn import models
from cyrnn.serve import Batcher

DISTINCT = 512      # distinct valid requests the clients draw from


def rss_mib():
    """Resident memory now (Linux /proc; elsewhere None: not checked)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except OSError:
        return None
    import os
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_model(n_x, n_a, seed=0):
    rng = np.random.default_rng(seed)
    layer = [{k: rng.uniform(-0.5, 0.5, (n_a, n_a + n_x) if k[0] == "W" else (n_a, 1))
              for k in ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo")} for _ in range(2)]
    return models.Model("lstm", [layer])


def soak(requests=200_000, clients=64, n_x=8, n_a=32, rss_slack=64.0, seed=0):
    """Runs the soak; returns its counts (raises AssertionError on a failed check)."""
    model = make_model(n_x, n_a, seed)
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal((n_x, int(T))) for T in rng.integers(1, 61, DISTINCT)]
    wanted = [None] * DISTINCT
    per_client = requests // clients
    counts = {"answered": 0, "refused": 0, "cancelled": 0, "late_cancel_answered": 0}
    errors = []
    lock = threading.Lock()
    rss = {}

    def client(c):
        local = np.random.default_rng(seed * 1000 + c)
        mine = dict.fromkeys(counts, 0)
        try:
            for i in range(per_client):
                if c == 0 and i == per_client // 10:
                    rss["warm"] = rss_mib()
                roll = local.random()
                if roll < 0.01:                              # malformed: wrong n_x
                    future = batcher.submit(np.zeros((n_x + 1, 5)))
                    try:
                        future.result()
                    except ValueError as exc:
                        assert f"n_x must be {n_x}" in str(exc), exc
                        mine["refused"] += 1
                    else:
                        raise AssertionError("a malformed request was answered")
                    continue
                k = int(local.integers(DISTINCT))
                future = batcher.submit(inputs[k])
                if roll < 0.02 and future.cancel():
                    mine["cancelled"] += 1
                    continue
                out, final = future.result()
                want = wanted[k]
                if want is None:
                    want = wanted[k] = model(inputs[k][:, None, :])[0][:, 0]
                np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
                mine["late_cancel_answered" if roll < 0.02 else "answered"] += 1
        except BaseException as exc:    # reported by the main thread
            errors.append(exc)
        with lock:
            for key, value in mine.items():
                counts[key] += value

    with Batcher(model) as batcher:
        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = batcher.stats()
    if errors:
        raise errors[0]
    left = [t for t in threading.enumerate() if t.name.startswith("cyrnn-batcher")]
    assert not left, f"batcher threads left after close(): {left}"
    total = sum(counts.values())
    assert total == per_client * clients, (counts, per_client * clients)
    assert stats["refused"] == counts["refused"] and stats["cancelled"] == counts["cancelled"]
    end = rss_mib()
    if rss.get("warm") is not None and end is not None:
        assert end - rss["warm"] <= rss_slack, \
            f"resident memory grew {end - rss['warm']:.1f} MiB after warm-up"
    return {**counts, "batches": stats["batches"], "mean_batch": stats["mean_batch"],
            "rss_warm_mib": rss.get("warm"), "rss_end_mib": end,
            "latency_p99_ms": 1e3 * (stats["latency_p99"] or 0)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--n-a", type=int, default=32)
    parser.add_argument("--rss-slack", type=float, default=64.0)
    args = parser.parse_args(argv)
    print(soak(args.requests, args.clients, n_a=args.n_a, rss_slack=args.rss_slack))
    return 0


if __name__ == "__main__":
    sys.exit(main())
