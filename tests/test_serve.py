"""cyrnn.serve.Batcher (docs/contract.md §10): concurrent requests coalesced into
batched Model calls give each request what the model gives it alone; faults
stay with their request or batch; the queue is bounded; no thread outlives
close() or an unclosed batcher."""
import asyncio
import gc
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cyrnn import models
from cyrnn.serve import Batcher, BatcherClosed, BatcherFull
from problems import assert_close

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
ORDER = {"rnn": "", "lstm": "ifco", "gru": "rzn"}


def make_model(cell="lstm", layers=1, directions=2, n_x=5, n_a=6, dtype=np.float64,
               head=False, seed=0, reset_after=True, cls=models.Model):
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    stack, n_in = [], n_x
    for _ in range(layers):
        stack.append([models.convert._direction(
            cell, n_a, rng.uniform(-0.6, 0.6, (G * n_a, n_in)),
            rng.uniform(-0.6, 0.6, (G * n_a, n_a)), rng.uniform(-0.6, 0.6, G * n_a),
            rng.uniform(-0.6, 0.6, G * n_a), ORDER[cell], reset_after=reset_after)
            for _ in range(directions)])
        n_in = directions * n_a
    stack = [[{k: v.astype(dtype) for k, v in p.items()} for p in layer] for layer in stack]
    top = {"Wy": rng.uniform(-1, 1, (3, n_in)).astype(dtype),
           "by": rng.uniform(-1, 1, (3, 1)).astype(dtype)} if head else None
    return cls(cell, stack, top)


def alone(model, x):
    """The model's results for one sequence (n_x, T) called alone."""
    out, final = model(x[:, None, :])
    return out[:, 0], {k: v[:, :, 0] for k, v in final.items()}


def tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


def threads_named_batcher():
    return [t for t in threading.enumerate() if t.name.startswith("cyrnn-batcher")]


@pytest.mark.parametrize("cell, reset_after", [("rnn", True), ("lstm", True), ("gru", True),
                                               ("gru", False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_concurrent_requests_get_what_the_model_gives_each_alone(cell, reset_after, dtype):
    model = make_model(cell, layers=2, dtype=dtype, head=cell == "lstm",
                       reset_after=reset_after)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((5, int(rng.integers(1, 40)))) for _ in range(120)]
    with Batcher(model, max_batch=16, n_threads=2) as batcher:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(batcher, xs))
        stats = batcher.stats()
    for x, (out, final) in zip(xs, results):
        want, want_final = alone(model, x)
        assert out.dtype == dtype and out.shape == want.shape
        assert_close(out, want, **tolerance(dtype))
        assert set(final) == set(want_final)
        for key in final:
            assert_close(final[key], want_final[key], **tolerance(dtype))
    assert stats["requests"] == 120 and stats["failed"] == stats["refused"] == 0
    assert stats["batches"] < 120 and stats["mean_batch"] > 1     # requests were coalesced
    assert 0 < stats["latency_p50"] <= stats["latency_p99"]


class Gated(models.Model):
    """A model whose calls wait for `gate` and raise on inputs holding 99."""
    gate = None

    def __call__(self, x, **kwargs):
        if self.gate is not None:
            self.gate.wait(10)
        if (x == 99).any():
            raise RuntimeError("this batch cannot run")
        return super().__call__(x, **kwargs)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(1, 3), st.booleans()),
                min_size=1, max_size=12),
       st.integers(1, 8), st.sampled_from(["rnn", "lstm", "gru"]), st.sampled_from([1, 16]))
def test_any_mix_of_requests_coalesces_correctly(requests, max_batch, cell, coalesce_from):
    """Single sequences and multi-sequence requests with lengths and initial
    states, of any lengths (0 included), submitted at once to one worker;
    batches coalesced into one call from 1 sequence on, or (the default) run
    one call per request below 16."""
    from cyrnn import serve
    default, serve.COALESCE_FROM = serve.COALESCE_FROM, coalesce_from
    try:
        check_a_mix(requests, max_batch, cell)
    finally:
        serve.COALESCE_FROM = default


def check_a_mix(requests, max_batch, cell):
    # (the worker waits at its first request until all are queued: then batches form)
    model = make_model(cell, layers=2, directions=2, n_a=4, n_x=3, cls=Gated)
    model.gate = threading.Event()
    rng = np.random.default_rng(len(requests))
    states = model.num_layers * model.directions
    keys = ("a", "c") if cell == "lstm" else ("a",)
    submitted = []
    with Batcher(model, max_batch=max_batch, n_threads=1) as batcher:
        for T, m, with_state in requests:
            if m == 1:
                x = rng.standard_normal((3, T))
                state = {k: rng.standard_normal((states, 4)) for k in keys} \
                    if with_state else None
                submitted.append((x, None, state, batcher.submit(x, state)))
            else:
                x = rng.standard_normal((3, m, T))
                lengths = rng.integers(0, T + 1, m)
                state = {k: rng.standard_normal((states, 4, m)) for k in keys} \
                    if with_state else None
                submitted.append((x, lengths, state,
                                  batcher.submit(x, state, lengths=lengths)))
        model.gate.set()
    for x, lengths, state, future in submitted:
        out, final = future.result()
        if x.ndim == 2:
            s = None if state is None else {k: v[:, :, None] for k, v in state.items()}
            want, want_final = model(x[:, None, :], initial_state=s)
            want, want_final = want[:, 0], {k: v[:, :, 0] for k, v in want_final.items()}
        else:
            want, want_final = model(x, lengths=lengths, initial_state=state)
        assert_close(out, want, rtol=1e-12, atol=1e-12)
        for key in want_final:
            assert_close(final[key], want_final[key], rtol=1e-12, atol=1e-12)


def test_malformed_requests_fail_their_own_future_only():
    model = make_model("lstm", directions=1)
    good = np.zeros((5, 4))
    with Batcher(model, n_threads=1) as batcher:
        cases = [
            (dict(x=np.zeros((4, 7))), r"x has shape \(4, 7\); its first dimension n_x must be 5"),
            (dict(x=np.zeros(5)), r"one sequence \(n_x, T\) or several"),
            (dict(x=np.array([["a"] * 3] * 5)), "x"),
            (dict(x=good, initial_state={"a": np.zeros((2, 6))}),
             r"initial_state\['a'\] has shape \(2, 6\); expected .* = \(1, 6\)"),
            (dict(x=good, initial_state={"h": np.zeros((1, 6))}), r"keys \['h'\]"),
            (dict(x=good, initial_state=[1]), "initial_state must be a dict"),
            (dict(x=np.zeros((5, 2, 4)), lengths=[5, 1]), "lengths"),
            (dict(x=good, lengths=[4]), "lengths is for a request of several sequences"),
        ]
        futures = [batcher.submit(**kwargs) for kwargs, _ in cases]
        fine = batcher.submit(good)
        for future, (_, message) in zip(futures, cases):
            with pytest.raises((ValueError, TypeError), match=message):
                future.result()
        assert_close(fine.result()[0], alone(model, good)[0], rtol=1e-12, atol=1e-12)
        assert batcher.stats()["refused"] == len(cases)


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    model = make_model("gru", directions=1, cls=Gated)
    with Batcher(model, max_batch=1, n_threads=1) as batcher:
        bad = batcher.submit(np.full((5, 3), 99.0))
        good = batcher.submit(np.ones((5, 3)))
        with pytest.raises(RuntimeError, match="this batch cannot run"):
            bad.result()
        assert_close(good.result()[0], alone(model, np.ones((5, 3)))[0], rtol=0, atol=0)
        assert batcher.stats()["failed"] == 1


def test_cancelled_requests_are_dropped_and_a_full_queue_pushes_back():
    model = make_model("rnn", directions=1, cls=Gated)
    model.gate = threading.Event()
    with Batcher(model, max_batch=1, n_threads=1, max_queue=2) as batcher:
        running = batcher.submit(np.ones((5, 2)))
        while batcher.stats()["running"] == 0:       # the worker holds it, gated
            time.sleep(0.001)
        dropped, kept = batcher.submit(np.ones((5, 2))), batcher.submit(np.ones((5, 3)))
        with pytest.raises(BatcherFull, match="max_queue=2"):
            batcher.submit(np.ones((5, 2)), timeout=0.05)
        assert dropped.cancel()
        model.gate.set()
        assert running.result()[0].shape == (6, 2) and kept.result()[0].shape == (6, 3)
        stats = batcher.stats()
        assert stats["cancelled"] == 1 and stats["requests"] == 3 and stats["queue"] == 0


def test_close_runs_what_was_accepted_then_refuses():
    model = make_model("lstm", directions=1, cls=Gated)
    model.gate = threading.Event()
    batcher = Batcher(model, max_batch=2, n_threads=2)
    futures = [batcher.submit(np.ones((5, 3))) for _ in range(6)]
    threading.Timer(0.05, model.gate.set).start()
    batcher.close()
    assert all(f.done() and f.result()[0].shape == (6, 3) for f in futures)
    with pytest.raises(BatcherClosed, match="closed"):
        batcher.submit(np.ones((5, 3)))
    assert not threads_named_batcher()
    assert "closed" in repr(batcher)


def test_an_unclosed_batcher_leaves_no_thread_when_collected():
    def serve_once():
        batcher = Batcher(make_model("gru", directions=1), n_threads=3)
        batcher(np.ones((5, 2)))
    serve_once()
    gc.collect()
    deadline = time.monotonic() + 10
    while threads_named_batcher() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not threads_named_batcher()


def test_an_idle_batcher_runs_a_request_at_once():
    """max_delay holds a batch open only under concurrent load: a request to
    an idle batcher does not wait for it; a blocking call there runs in the
    calling thread, counted like any other."""
    model = make_model("lstm", directions=1)
    with Batcher(model, max_delay=5.0, n_threads=2) as batcher:
        start = time.perf_counter()
        out = batcher.submit(np.ones((5, 3))).result()[0]
        assert time.perf_counter() - start < 2.5
        caller = threading.current_thread()
        ran_in = []
        real = type(model).__call__

        def spy(self, *args, **kwargs):
            ran_in.append(threading.current_thread())
            return real(self, *args, **kwargs)
        try:
            type(model).__call__ = spy
            again = batcher(np.ones((5, 3)))[0]
        finally:
            type(model).__call__ = real
        assert ran_in == [caller]
        np.testing.assert_array_equal(again, out)
        with pytest.raises(ValueError, match="n_x must be 5"):
            batcher(np.ones((4, 3)))
        stats = batcher.stats()
        assert stats["requests"] == 2 and stats["refused"] == 1 and stats["running"] == 0


def test_asubmit_awaits_results_in_asyncio():
    model = make_model("lstm")
    xs = [np.full((5, T), 0.1 * T) for T in (1, 5, 9)]

    async def main(batcher):
        return await asyncio.gather(*(batcher.asubmit(x) for x in xs))
    with Batcher(model) as batcher:
        results = asyncio.run(main(batcher))
    for x, (out, _) in zip(xs, results):
        assert_close(out, alone(model, x)[0], rtol=1e-12, atol=1e-12)


def test_arguments_are_checked():
    model = make_model("rnn")
    with pytest.raises(TypeError, match="model must be a cyrnn.models.Model; got dict"):
        Batcher({})
    for kwargs, message in ((dict(max_batch=0), "max_batch must be a positive int; got 0"),
                            (dict(max_queue=1.5), "max_queue must be a positive int"),
                            (dict(max_delay=-1), "max_delay must be a finite number"),
                            (dict(max_delay=float("nan")), "max_delay"),
                            (dict(n_threads=0), "n_threads must be >= 1")):
        with pytest.raises((TypeError, ValueError), match=message):
            Batcher(model, **kwargs)
    assert not threads_named_batcher()


def test_soak_of_twenty_thousand_requests():
    """benchmarks/soak_serve.py with 20,000 requests from 64 threads (1% malformed,
    1% cancelled): every valid answer right, every malformed one refused with
    its message, memory flat after warm-up, no thread left."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "soak_serve.py"
    if not path.exists():
        pytest.skip("benchmarks/ is not beside the tests (an installed copy of them)")
    spec = importlib.util.spec_from_file_location("soak_serve", path)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    # (fewer under emulation and the sanitizers: CYRNN_SOAK_REQUESTS)
    requests = int(os.environ.get("CYRNN_SOAK_REQUESTS", 20_000))
    # (ASan's quarantine of freed memory grows the resident set by design)
    slack = float("inf") if os.environ.get("CYRNN_SANITIZED") == "1" else 64.0
    counts = soak.soak(requests=requests, clients=64, n_a=16, rss_slack=slack)
    assert counts["answered"] > 0.95 * requests and counts["refused"] > 0.002 * requests
    assert counts["cancelled"] + counts["late_cancel_answered"] > 0
