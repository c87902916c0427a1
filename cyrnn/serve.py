"""Serving: requests from many threads coalesced into batched Model calls.

    from cyrnn.serve import Batcher
    with Batcher(model) as batcher:                 # in a service, shared by threads
        outputs, final = batcher(x)                 # x: one sequence (n_x, T)
        future = batcher.submit(x)                  # or a concurrent.futures.Future

A `Batcher` (docs/contract.md §10) owns worker threads (`n_threads`, default one
per core). Each worker takes the requests waiting in the queue — up to
`max_batch` sequences, of any lengths — and runs them as one
`model(x, lengths=...)` call, which computes each sequence's own steps only
(no padding), then hands every request its part of the results. An idle
batcher runs a request at once; under concurrent load a worker holds its batch
open while requests keep arriving, up to `max_delay` seconds in all.
"""
import asyncio
import collections
import concurrent.futures
import functools
import queue
import threading
import time
import weakref

import numpy as np

from cyrnn import _parallel, _validation

# How many of the latest requests' latencies stats() summarises.
LATENCY_WINDOW = 10_000
# Batches of fewer sequences run one call per request: a call with lengths over
# a few columns costs more per sequence than each one's own call (2-8 sequences
# of 10-200 steps: 1.05-1.3x; from 16 on 0.8x: benchmarks/README.md, serving).
COALESCE_FROM = 16
# A batch held open for more requests runs when none arrives for this fraction
# of max_delay (a burst of arrivals joins; a pause does not keep it waiting).
ARRIVAL_GAP = 0.125


class BatcherClosed(RuntimeError):
    """The batcher was closed: it takes no new requests."""


class BatcherFull(queue.Full):
    """The batcher's queue stayed full for the whole `timeout`."""


class _Request:
    __slots__ = ("x", "m", "T", "lengths", "state", "single", "future", "arrived")

    def __init__(self, x, lengths, state, single):
        self.x, self.lengths, self.state, self.single = x, lengths, state, single
        self.m, self.T = x.shape[1], x.shape[2]
        self.future = _Future()
        self.arrived = time.perf_counter()


class _Future(concurrent.futures.Future):
    """A request's future (a concurrent.futures.Future)."""


class _State:
    """What the workers share (the Batcher's state without the Batcher, so an
    unclosed batcher can be garbage-collected: its finalizer stops them)."""

    def __init__(self, model, max_batch, max_delay, max_queue, workers):
        self.model, self.max_batch, self.max_delay, self.max_queue = \
            model, max_batch, max_delay, max_queue
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)      # a request, or closing
        self.room = threading.Condition(self.lock)         # space in the queue
        self.waiting = collections.deque()
        self.closed = False
        self.running = 0            # batches running now
        self.last_batch = self.last_size = 0    # requests, sequences of the last batch
        self.workers = workers
        self.requests = self.batches = self.sequences = 0
        self.refused = self.failed = self.cancelled = 0
        self.latencies = collections.deque(maxlen=LATENCY_WINDOW)

    def close(self):
        with self.lock:
            self.closed = True
            self.arrived.notify_all()
            self.room.notify_all()

    def take(self):
        """The next batch: the waiting requests, up to max_batch sequences (a
        larger request alone), or None when closed and drained."""
        with self.lock:
            while not self.waiting and not self.closed:
                self.arrived.wait()
            if not self.waiting:
                return None
            batch, size = [], 0
            deadline = None
            while True:
                while self.waiting and (not batch or size + self.waiting[0].m <= self.max_batch):
                    request = self.waiting.popleft()
                    self.room.notify()
                    if not request.future.set_running_or_notify_cancel():
                        self.cancelled += 1         # cancelled while it waited: dropped
                        continue
                    batch.append(request)
                    size += request.m
                full = size >= self.max_batch or (self.waiting and batch)
                # hold the batch open only under a load that coalesces (the last
                # batch held COALESCE_FROM sequences or more), and only while
                # requests keep arriving: a burst of them joins, a pause of
                # ARRIVAL_GAP · max_delay runs what was gathered
                busy = self.last_size >= COALESCE_FROM
                if full or self.closed or not busy or self.max_delay <= 0:
                    break
                now = time.perf_counter()
                deadline = deadline or now + self.max_delay
                if now >= deadline:
                    break
                before = len(self.waiting)
                self.arrived.wait(min(deadline - now, ARRIVAL_GAP * self.max_delay))
                if len(self.waiting) == before:
                    break
            if batch:
                self.running += 1
                self.last_batch, self.last_size = len(batch), size
            return batch

    def done(self, batch, error):
        finished = time.perf_counter()
        with self.lock:
            self.running -= 1
            self.batches += 1
            self.sequences += sum(r.m for r in batch)
            if error is not None:
                self.failed += len(batch)
            self.latencies.extend(finished - r.arrived for r in batch)


def _work(state):
    """A worker: batches until the batcher is closed and its queue drained."""
    while True:
        batch = state.take()
        if batch is None:
            return
        if not batch:
            continue
        error = None
        parallel = state.workers > 1
        if parallel:
            _parallel._enter_region()       # SciPy's BLAS on one thread while batches run
        try:
            if sum(r.m for r in batch) >= COALESCE_FROM:
                results = _run(state.model, batch)
            else:
                results = [_run(state.model, [r])[0] for r in batch]
        except BaseException as exc:        # fails this batch's requests only
            error = exc
        finally:
            if parallel:
                _parallel._leave_region()
        state.done(batch, error)
        for i, request in enumerate(batch):
            if error is not None:
                request.future.set_exception(error)
            else:
                request.future.set_result(results[i])


def _run(model, batch):
    """One model call over the batch's sequences; each request's results."""
    M = sum(r.m for r in batch)
    T = max(r.T for r in batch)
    states = model.num_layers * model.directions
    keys = ("a", "c") if model.cell == "lstm" else ("a",)
    initial = None
    if any(r.state is not None for r in batch):
        initial = {k: np.zeros((states, model.n_a, M), model.dtype) for k in keys}
    if len(batch) == 1:
        x, lengths = batch[0].x, batch[0].lengths        # (the request's own copy)
    else:
        x = np.zeros((model.n_x, M, T), model.dtype)
        lengths = np.empty(M, np.int64)
    column = 0
    for r in batch:
        if len(batch) > 1:
            x[:, column:column + r.m, :r.T] = r.x
            lengths[column:column + r.m] = r.lengths
        if r.state is not None:
            for k, value in r.state.items():
                initial[k][:, :, column:column + r.m] = value
        column += r.m
    if (lengths == T).all():
        lengths = None          # (every sequence runs every step: no packing to do)
    outputs, final = model(x, lengths=lengths, initial_state=initial)
    results, column = [], 0
    for r in batch:
        part = slice(column, column + r.m)
        out = outputs[:, part, :r.T]
        ends = {k: v[:, :, part] for k, v in final.items()}
        if r.single:
            results.append((np.ascontiguousarray(out[:, 0]),
                            {k: np.ascontiguousarray(v[:, :, 0]) for k, v in ends.items()}))
        else:
            results.append((np.ascontiguousarray(out),
                            {k: np.ascontiguousarray(v) for k, v in ends.items()}))
        column += r.m
    return results


class Batcher:
    """Coalesces concurrent requests to `model` (a cyrnn.models.Model) into
    batched calls; thread-safe.

    max_batch: sequences per batched call (a larger request runs alone).
    max_delay: seconds a worker may hold a batch open for more requests under
    concurrent load, while they keep arriving (less than ARRIVAL_GAP·max_delay
    apart); an idle batcher runs a request at once.
    n_threads: worker threads, each running its own batches (None: one per core).
    max_queue: requests that may wait; `submit` then blocks up to its `timeout`.
    """

    def __init__(self, model, *, max_batch=64, max_delay=0.002, n_threads=None,
                 max_queue=1024):
        from cyrnn.models import Model
        if not isinstance(model, Model):
            raise TypeError(f"model must be a cyrnn.models.Model; got {type(model).__name__}")
        for name, value in (("max_batch", max_batch), ("max_queue", max_queue)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if isinstance(max_delay, bool) or not isinstance(max_delay, (int, float)) or \
                not 0 <= max_delay < float("inf"):
            raise ValueError(f"max_delay must be a finite number of seconds >= 0; "
                             f"got {max_delay!r}")
        workers = _parallel.resolve_threads(n_threads)
        self.model = model
        self._state = _State(model, max_batch, float(max_delay), max_queue, workers)
        self._threads = [threading.Thread(target=_work, args=(self._state,), daemon=True,
                                          name=f"cyrnn-batcher-{i}") for i in range(workers)]
        for thread in self._threads:
            thread.start()
        # garbage collection of an unclosed batcher stops its workers
        self._finalizer = weakref.finalize(self, self._state.close)

    # ------------------------------------------------------------ requests

    def submit(self, x, initial_state=None, *, lengths=None, timeout=None):
        """A Future of the request's (outputs, final_state).

        x: one sequence (n_x, T) — outputs (D·n_a or n_y, T), final state
        {"a": (L·D, n_a)} (and "c" for the LSTM) — or several, (n_x, m, T) with
        `lengths` (default: all T), results shaped as the model's.
        initial_state: as the model's, without the m axis for one sequence.
        A malformed request fails its own future with the model's error. When
        max_queue requests wait, blocks up to `timeout` seconds (None: until
        there is room), then raises BatcherFull; after close(), BatcherClosed."""
        state = self._state
        if state.closed:
            raise BatcherClosed("the Batcher is closed: it takes no new requests")
        try:
            request = self._request(x, initial_state, lengths)
        except (TypeError, ValueError) as exc:
            with state.lock:
                state.refused += 1
            failed = _Future()
            failed.set_exception(exc)
            return failed
        with state.lock:
            deadline = None if timeout is None else time.perf_counter() + timeout
            while len(state.waiting) >= state.max_queue and not state.closed:
                remaining = None if deadline is None else deadline - time.perf_counter()
                if remaining is not None and remaining <= 0:
                    raise BatcherFull(
                        f"the Batcher's queue held max_queue={state.max_queue} requests "
                        f"for the whole timeout={timeout} s; retry later, or raise "
                        f"max_queue or n_threads")
                state.room.wait(remaining)
            if state.closed:
                raise BatcherClosed("the Batcher is closed: it takes no new requests")
            request.arrived = time.perf_counter()
            state.waiting.append(request)
            state.requests += 1
            state.arrived.notify()
        return request.future

    def __call__(self, x, initial_state=None, *, lengths=None, timeout=None):
        """submit(...).result(): the request's (outputs, final_state). When the
        batcher is idle (nothing running or waiting, and its last batch held
        one request: no concurrent load), the calling thread runs the request
        itself: no hand-off to a worker and back."""
        state = self._state
        with state.lock:
            inline = state.running == 0 and not state.waiting and not state.closed and \
                state.last_batch <= 1
            if inline:
                state.running += 1
        if not inline:
            return self.submit(x, initial_state, lengths=lengths, timeout=timeout).result()
        error = None
        try:
            request = self._request(x, initial_state, lengths)
        except (TypeError, ValueError) as exc:
            with state.lock:
                state.running -= 1
                state.refused += 1
            raise exc
        with state.lock:
            state.requests += 1
        try:
            return _run(self.model, [request])[0]
        except BaseException as exc:
            error = exc
            raise
        finally:
            state.done([request], error)

    async def asubmit(self, x, initial_state=None, *, lengths=None, timeout=None):
        """submit for asyncio: awaits the result (and room in a full queue)
        without blocking the event loop."""
        loop = asyncio.get_running_loop()
        try:
            future = self.submit(x, initial_state, lengths=lengths, timeout=0)
        except BatcherFull:
            future = await loop.run_in_executor(None, functools.partial(
                self.submit, x, initial_state, lengths=lengths, timeout=timeout))
        return await asyncio.wrap_future(future)

    def _request(self, x, initial_state, lengths):
        model = self.model
        x = _validation.as_array("x", x)
        given = x.shape
        if x.ndim == 2:
            if lengths is not None:
                raise ValueError("lengths is for a request of several sequences, "
                                 "x of shape (n_x, m, T); x has shape " f"{x.shape}")
            single = True
            x = x[:, None, :]
        elif x.ndim == 3:
            single = False
        else:
            raise ValueError(f"x must be one sequence (n_x, T) or several (n_x, m, T); "
                             f"got shape {x.shape}")
        n_x, m, T = x.shape
        if n_x != model.n_x:
            raise ValueError(f"x has shape {given}; its first dimension n_x must be "
                             f"{model.n_x}, the input size of the model")
        if m == 0:
            raise ValueError("x holds no sequence (m = 0)")
        lengths = np.full(m, T, np.int64) if lengths is None else \
            _validation.check_lengths(lengths, m, T)
        x = np.array(x, model.dtype, order="C")     # the request's own copy
        state = None
        if initial_state is not None:
            if not hasattr(initial_state, "keys"):
                raise TypeError(f"initial_state must be a dict; got "
                                f"{type(initial_state).__name__}")
            keys = ("a", "c") if model.cell == "lstm" else ("a",)
            unknown = set(initial_state) - set(keys)
            if unknown:
                raise ValueError(f"initial_state has keys {sorted(unknown)}; a {model.cell} "
                                 f"model's are {list(keys)}")
            states = model.num_layers * model.directions
            want = (states, model.n_a) if single else (states, model.n_a, m)
            state = {}
            for key, value in initial_state.items():
                value = np.asarray(value, model.dtype)
                if value.shape != want:
                    raise ValueError(f"initial_state[{key!r}] has shape {value.shape}; "
                                     f"expected (layers·directions, n_a{'' if single else ', m'})"
                                     f" = {want}")
                state[key] = np.array(value[:, :, None] if single else value)
        return _Request(x, lengths, state, single)

    # ------------------------------------------------------------ lifetime

    def close(self):
        """Run every accepted request, stop the workers; later submits raise
        BatcherClosed."""
        self._state.close()
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def stats(self):
        """Counters since the start: requests (accepted), refused (malformed),
        failed (in a batch that raised), cancelled (dropped before their batch),
        batches (taken from the queue; one call each from COALESCE_FROM
        sequences on, else one per request), mean_batch (sequences per batch),
        queue (requests waiting now),
        running (batches now), and latency_p50 / latency_p99 (seconds from
        submit to result) over the last LATENCY_WINDOW requests."""
        state = self._state
        with state.lock:
            latencies = np.array(state.latencies)
            out = {"requests": state.requests, "refused": state.refused,
                   "failed": state.failed, "cancelled": state.cancelled,
                   "batches": state.batches,
                   "mean_batch": state.sequences / state.batches if state.batches else 0.0,
                   "queue": len(state.waiting), "running": state.running}
        out["latency_p50"], out["latency_p99"] = (
            np.percentile(latencies, [50, 99]).tolist() if latencies.size else (None, None))
        return out

    def __repr__(self):
        state = self._state
        return (f"Batcher({self.model!r}, max_batch={state.max_batch}, "
                f"max_delay={state.max_delay}, n_threads={state.workers}, "
                f"max_queue={state.max_queue}{', closed' if state.closed else ''})")
