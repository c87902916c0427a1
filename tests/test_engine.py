"""The sequence engine's own options and guarantees (src/_engine.pyx).

Reverse direction, the plan (chunks that depend on m only), inference in
blocks of steps, the BLAS-only floor, the caches' checks and semantics, and
the thread pool under concurrent calls.
"""
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import cyrnn
import cyrnn.reference as ref
from cyrnn import _engine
from problems import (PARAMETERS, assert_close, assert_environment_setting, engine_settings,
                      lstm_parameters, path_count, problem, rnn_parameters, run_python,
                      sequence)

FORWARD = {"rnn": cyrnn.rnn_forward, "lstm": cyrnn.lstm_forward, "gru": cyrnn.gru_forward}
BACKWARD = {"rnn": cyrnn.rnn_backward, "lstm": cyrnn.lstm_backward, "gru": cyrnn.gru_backward}
CACHES = {"rnn": cyrnn.RNNStepCaches, "lstm": cyrnn.LSTMStepCaches, "gru": cyrnn.GRUStepCaches}
FORWARD["gru_reset_before"], BACKWARD["gru_reset_before"] = cyrnn.gru_forward, cyrnn.gru_backward


# ---------------------------------------------------------------- reverse direction

@settings(max_examples=40)
@given(kind=st.sampled_from(sorted(PARAMETERS)), n_x=st.integers(1, 4), n_a=st.integers(1, 5),
       m=st.integers(1, 70), T=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_reverse_direction_is_the_forward_pass_on_reversed_time(kind, n_x, n_a, m, T, seed):
    """Run backwards natively (no reversed copies of x), the engine must equal
    the forward pass over x[..., ::-1] (the reference's), outputs reversed
    back; its gradients likewise. Every cell."""
    x, a0, p, rng = problem(kind, n_x, n_a, 3, m, T, seed)
    cell = kind.split("_")[0]
    c0 = rng.standard_normal(a0.shape) if kind == "lstm" else None
    a, y, c, caches = _engine._run_direction(cell, x, a0, p, c0=c0, reverse=True, cache=True)
    flipped = np.ascontiguousarray(x[:, :, ::-1])
    if kind == "lstm":
        fa, fy, fc, fcaches = ref.lstm_forward(flipped, a0, p) if c0 is None else \
            cyrnn.lstm_forward(flipped, a0, p, c0=c0)
        assert_close(c, fc[:, :, ::-1])
    else:
        fa, fy, fcaches = getattr(ref, cell + "_forward")(flipped, a0, p)
    assert_close(a, fa[:, :, ::-1])
    assert_close(y, fy[:, :, ::-1])
    # the same bits without caches and on two threads
    for cache, threads in ((False, 1), (True, 2)):
        again = _engine._run_direction(cell, x, a0, p, c0=c0, reverse=True, cache=cache,
                                       n_threads=threads)
        np.testing.assert_array_equal(again[0], a)

    da = rng.standard_normal(a.shape)
    grads = _engine._backward_direction(cell, da, caches, reverse=True)
    want = getattr(ref, cell + "_backward")(np.ascontiguousarray(da[:, :, ::-1]), fcaches)
    assert list(grads) == list(want)
    for key in want:
        got = grads[key][:, :, ::-1] if key == "dx" else grads[key]
        assert_close(got, want[key], rtol=1e-9, atol=1e-11)


# ---------------------------------------------------------------- the plan

def test_chunks_depend_on_m_only_and_cover_the_batch():
    for m in (0, 1, 63, 1023, 1024, 2047, 2048, 5000, 10**6):
        bounds = _engine.chunk_bounds(m)
        assert (len(bounds) == 0) == (m == 0)
        if m:
            assert bounds[0][0] == 0 and bounds[-1][1] == m
            assert all(b[1] == c[0] for b, c in zip(bounds, bounds[1:]))
            assert all(hi > lo for lo, hi in bounds)
            assert len(bounds) <= 16
    assert len(_engine.chunk_bounds(2048)) == 2


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_several_chunks_blocks_and_workspace_give_identical_bits(kind, dtype):
    """m = 2100 runs as two chunks; T = 19 in blocks of 8 steps. Every way of
    running it (caches or not, scratch or the block workspace, 1-3 threads)
    computes the same GEMMs and passes, so the bits agree; and they match the
    reference."""
    x, a0, p, rng = problem(kind, 3, 4, 2, 2100, 19, dtype=dtype)
    forward = FORWARD[kind]
    base = forward(x, a0, p)
    runs = [forward(x, a0, p, cache=False), forward(x, a0, p, n_threads=2),
            forward(x, a0, p, cache=False, n_threads=3)]
    with engine_settings(scratch_bytes=0):      # inference in blocks, in a workspace
        runs += [forward(x, a0, p, cache=False), forward(x, a0, p, cache=False, n_threads=2)]
    for run in runs:
        for got, want in zip(run[:-1], base[:-1]):
            np.testing.assert_array_equal(got, want)
    want = (ref.rnn_forward if kind == "rnn" else ref.lstm_forward)(
        x.astype(np.float64), a0.astype(np.float64),
        {k: v.astype(np.float64) for k, v in p.items()})
    tol = 1e-11 if dtype == np.float64 else 2e-5
    for got, expected in zip(base[:-1], want[:-1]):
        assert_close(got, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "gru_reset_before"])
def test_gemm_floor_runs_the_drivers_plan(kind):
    # the floor runs the driver with its GEMMs only, on the problem's own
    # buffers: any shape the engine runs must run here (and under the sanitizers)
    for shape in ((3, 5, 2, 10, 7), (4, 6, 3, 2100, 3), (2, 3, 0, 1, 1), (2, 3, 2, 5, 0)):
        floor = _engine.GemmFloor(kind, *shape)
        floor.forward()
        floor.backward()
        _engine.GemmFloor(kind, *shape, dtype=np.float32).forward()


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["rnn", "lstm", "gru", "gru_reset_before"]),
       dtype=st.sampled_from([np.float64, np.float32]), n_x=st.integers(1, 4),
       n_a=st.integers(1, 6), extra=st.integers(0, 40), T=st.integers(1, 12),
       reverse=st.booleans(), seed=st.integers(0, 2**16))
def test_inference_scratch_with_padded_rows_gives_the_cached_bits(kind, dtype, n_x, n_a, extra,
                                                                  T, reverse, seed):
    """Inference whose batch rows are wide enough for the time-major scratch
    (its rows padded apart, see scratch_ld) computes the cached call's bits,
    forward and reverse; forced here for outputs of any size."""
    m = 512 // np.dtype(dtype).itemsize + extra
    x, a0, p, _ = problem(kind, n_x, n_a, 2, m, T, seed, dtype)
    cell = kind.split("_")[0]
    with engine_settings(cached_output_bytes=0, inference_mode="scratch"):
        got = _engine._run_direction(cell, x, a0, p, reverse=reverse, cache=False)
    want = _engine._run_direction(cell, x, a0, p, reverse=reverse, cache=True)
    for g, w in zip(got[:3], want[:3]):
        if w is not None:
            np.testing.assert_array_equal(g, w)


# ---------------------------------------------------------------- forward plans

@pytest.fixture
def pinned_plan():
    """Pin the forward plan within one test (set_forward_plan); the mode is
    restored after it."""
    with engine_settings(plan="auto"):
        yield _engine.set_forward_plan


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # each example pins
@given(kind=st.sampled_from(["rnn", "lstm", "gru", "gru_reset_before"]),
       dtype=st.sampled_from([np.float64, np.float32]), n_x=st.integers(1, 5),
       n_a=st.integers(1, 9), m=st.integers(1, 40), T=st.integers(1, 9),
       reverse=st.booleans(), with_lengths=st.booleans(), seed=st.integers(0, 2**16))
def test_each_forward_plan_computes_the_reference(pinned_plan, kind, dtype, n_x, n_a, m, T,
                                                  reverse, with_lengths, seed):
    """Every plan of the recurrent product, pinned (gemv applies to single
    columns, transposed to several), equals the reference (reverse: on reversed
    time), and each gives the same bits with and without caches and on 1 or 2
    threads."""
    x, a0, p, rng = problem(kind, n_x, n_a, 2, m, T, seed, dtype)
    lengths = rng.integers(0, T + 1, m) if with_lengths else None
    x64, a064 = x.astype(np.float64), a0.astype(np.float64)
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    tol = 1e-10 if dtype == np.float64 else 3e-5
    reference = getattr(ref, kind.split("_")[0] + "_forward")
    if reverse:
        lengths = None
        want = reference(np.ascontiguousarray(x64[:, :, ::-1]), a064, p64)[0][:, :, ::-1]
    else:
        want = reference(x64, a064, p64, lengths=lengths)[0]
    for plan in _engine.FORWARD_PLANS:
        pinned_plan(plan)
        runs = [_engine._run_direction(kind.split("_")[0], x, a0, p, lengths=lengths,
                                       reverse=reverse, cache=cache, n_threads=threads)[0]
                for cache, threads in ((True, 1), (False, 1), (False, 2))]
        assert_close(runs[0], want, rtol=tol, atol=tol, what=plan)
        for other in runs[1:]:
            np.testing.assert_array_equal(other, runs[0])


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "gru_reset_before"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_single_columns_give_one_result_whatever_their_strides(kind, dtype):
    """A single column's products give the same bits in the caches (columns
    packed as they run) and in the workspace (a stride of whole steps). ARM's
    OpenBLAS sums a one-column GEMM in an order that depends on the vectors'
    strides; the BLAS layer hands it contiguous ones (found on aarch64: the
    reset-before GRU's candidate product on Γr·a_prev, m = 1, lengths [1], T = 2)."""
    for seed in range(4):
        for T, length in ((2, 1), (3, 1), (3, 2), (5, 3)):
            x, a0, p, _ = problem(kind, 3, 17, 2, 1, T, seed, dtype)
            runs = [_engine._run_direction(kind.split("_")[0], x, a0, p,
                                           lengths=np.array([length]), cache=cache)[0]
                    for cache in (True, False)]
            np.testing.assert_array_equal(runs[1], runs[0])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["rnn", "lstm", "gru", "gru_reset_before"]),
       dtype=st.sampled_from([np.float64, np.float32]), n_a=st.integers(17, 90),
       m=st.integers(1, 12), T=st.integers(2, 6), with_lengths=st.booleans(),
       seed=st.integers(0, 2**16))
def test_row_block_plans_split_tall_weights_and_compute_the_reference(
        pinned_plan, kind, dtype, n_a, m, T, with_lengths, seed):
    """The row-block plans on weights taller than their blocks (gates·n_a rows
    from 17 to 360: whole blocks and a last, shorter one; the reset-before
    GRU's products of 2·n_a and n_a rows) equal the reference, and each gives
    the same bits with and without caches and on 1 or 2 threads."""
    x, a0, p, rng = problem(kind, 3, n_a, 2, m, T, seed, dtype)
    lengths = rng.integers(0, T + 1, m) if with_lengths else None
    want = getattr(ref, kind.split("_")[0] + "_forward")(
        x.astype(np.float64), a0.astype(np.float64),
        {k: v.astype(np.float64) for k, v in p.items()}, lengths=lengths)[0]
    tol = 1e-10 if dtype == np.float64 else 3e-5
    for plan in ("rows256", "rows128", "rows64"):
        pinned_plan(plan)
        runs = [_engine._run_direction(kind.split("_")[0], x, a0, p, lengths=lengths,
                                       cache=cache, n_threads=threads)[0]
                for cache, threads in ((True, 1), (False, 1), (False, 2))]
        assert_close(runs[0], want, rtol=tol, atol=tol, what=plan)
        for other in runs[1:]:
            np.testing.assert_array_equal(other, runs[0])


# (examples from the profile: 60 natively, 15 under emulation and the sanitizers,
# where 40 took 5 minutes)
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["rnn", "lstm", "gru", "gru_reset_before"]), dtype=st.sampled_from([np.float64, np.float32]),
       sizes=st.sampled_from([(128, "rows64"), (192, "rows64"), (256, "rows128"),
                              (256, "rows64"), (256, "rows256"), (100, "rows64"),
                              (40, "rows128")]),
       n_x=st.integers(1, 9), n_y=st.sampled_from([0, 2]), m=st.integers(1, 12),
       T=st.integers(2, 40), reverse=st.booleans(), seed=st.integers(0, 2**16))
def test_split_runs_give_one_result_on_any_threads_caches_and_layouts(
        pinned_plan, kind, dtype, sizes, n_x, n_y, m, T, reverse, seed):
    """Under a row-block plan a narrow batch runs each step split in parts that
    threads run at once: by units when the blocks divide n_a in two or more,
    else the blocks' GEMMs then the kernels by units (n_a = 256 in blocks of
    256, 100 in 64, 40 in 128: one block taller than the weights). Over
    several blocks of steps, forward and reversed, with and without the output
    head, every way of running it (1, 2 or 3 threads; cache=False; caches
    copied from the workspace or written in place; x read in place; states written time-major)
    gives the same bits in every output, cache entry and gradient, close to the
    chunk path's. Every cell (the reset-before GRU in two passes per step)."""
    n_a, plan = sizes
    name = kind.split("_")[0]
    pinned_plan(plan)
    rng = np.random.default_rng(seed)
    x, a0 = sequence(rng, n_x, n_a, m, T, dtype)
    # weights of spectral radius ~0.6: float32 stays close to float64 over the
    # steps (at scale 0.5 the dynamics are chaotic, whatever the path)
    p = PARAMETERS[kind](rng, n_x, n_a, n_y, dtype, scale=n_a ** -0.5)
    c0 = rng.standard_normal(a0.shape).astype(dtype) if kind == "lstm" else None
    started = path_count("split_runs")

    def run(cache=True, n_threads=1, copied=None, xs=x, out=None):
        limits = {} if copied is None else {"copied_min_bytes": 0.0 if copied else float("inf")}
        with engine_settings(**limits):
            return _engine._run_direction(name, xs, a0, p, c0=c0, reverse=reverse, cache=cache,
                                          n_threads=n_threads, out=out)

    base = run(copied=True)
    assert path_count("split_runs") == started + 1
    time_major_x = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    runs = [run(copied=False), run(n_threads=2, copied=True), run(cache=False),
            run(cache=False, n_threads=3), run(cache=False, n_threads=2, xs=time_major_x)]
    for other in runs:
        for got, want in zip(other[:3], base[:3]):
            if want is not None:
                np.testing.assert_array_equal(got, want)
    if n_y == 0:
        states = np.empty((n_a, T, m), dtype)
        run(cache=False, n_threads=2, out=states.transpose(0, 2, 1))
        np.testing.assert_array_equal(states.transpose(0, 2, 1), base[0])
    assert path_count("split_runs") == started + 6 + (n_y == 0)
    for t in range(T):
        for entry, same in zip(base[3][0][t], runs[0][3][0][t]):
            if isinstance(entry, np.ndarray):
                np.testing.assert_array_equal(entry, same)
    # the chunk path (the direct plan) in float64, tested against the reference elsewhere
    pinned_plan("direct")
    want = _engine._run_direction(name, x.astype(np.float64), a0.astype(np.float64),
                                  {k: v.astype(np.float64) for k, v in p.items()},
                                  c0=None if c0 is None else c0.astype(np.float64),
                                  reverse=reverse)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)
    for got, expected, what in zip(base[:3], want[:3], "ayc"):
        if expected is not None:
            assert_close(got, expected, what=what, **tol)
    da = rng.standard_normal((n_a, m, T)).astype(dtype)
    copied, in_place = (_engine._backward_direction(name, da, r[3], reverse=reverse)
                        for r in (base, runs[0]))
    for key in copied:
        np.testing.assert_array_equal(copied[key], in_place[key])


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(FORWARD)), dtype=st.sampled_from([np.float64, np.float32]),
       m=st.sampled_from([128, 300, 2100]), T=st.integers(1, 19), n_y=st.sampled_from([0, 2]),
       reverse=st.booleans(), seed=st.integers(0, 2**16))
def test_wide_inference_streaming_its_states_gives_the_cached_bits(pinned_plan, kind, dtype, m,
                                                                  T, n_y, reverse, seed):
    """Wide batches without caches (here: the output size that makes a batch
    wide lowered to 0) run their steps in blocks and stream each block's states
    into time-major buffers, leaving them in the user's layout whole rows at
    once at the end, whenever their states fit the scratch limit (here pinned
    where the whole scratch fits too). Forward and reversed, one
    chunk or two, 1 or 2 threads, with the output head or without: the bits of
    the cached call, of the full scratch and of blocks scattered one by one."""
    name = kind.split("_")[0]
    pinned_plan("direct")       # (row blocks would run split, which has no state buffers)
    rng = np.random.default_rng(seed)
    x, a0 = sequence(rng, 3, 5, m, T, dtype)
    p = PARAMETERS[kind](rng, 3, 5, n_y, dtype, scale=0.5)
    c0 = rng.standard_normal(a0.shape).astype(dtype) if kind == "lstm" else None
    state_bytes = (2 if kind == "lstm" else 1) * 5 * T * m * np.dtype(dtype).itemsize

    def run(limit, cache=False, n_threads=1):
        with engine_settings(scratch_bytes=limit, cached_output_bytes=0, inference_mode="states"):
            return _engine._run_direction(name, x, a0, p, c0=c0, reverse=reverse, cache=cache,
                                          n_threads=n_threads)

    base = run(float("inf"), cache=True)
    started = path_count("state_buffer_runs")
    streamed = [run(state_bytes), run(state_bytes, n_threads=2)]
    assert path_count("state_buffer_runs") == started + 2
    others = [run(float("inf")), run(0.0), run(0.0, n_threads=2)]
    assert path_count("state_buffer_runs") == started + 3      # (pinned where both fit)
    for other in streamed + others:
        for got, want in zip(other[:3], base[:3]):
            if want is not None:
                np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("sizes", [(3, 5, 300, 21), (16, 32, 16, 50)], ids=["wide", "small"])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "gru_reset_before"])
def test_inference_times_its_mode_once_and_gives_the_cached_bits(kind, sizes):
    """Where two ways fit (wide: state buffers or scratch, by rule; small,
    whose scratch fits the CPU's caches: blocks or scratch, timed on the first
    call of a shape and kept), either gives the cached call's bits, pinned or
    chosen."""
    name = kind.split("_")[0]
    n_x, n_a, m, T = sizes
    x, a0, p, _ = problem(kind, n_x, n_a, 2, m, T, seed=4, dtype=np.float32)
    want = _engine._run_direction(name, x, a0, p, cache=True)
    with engine_settings(plan="direct", cached_output_bytes=0, inference_mode="auto"):
        before = dict(_engine.inference_modes())
        got = _engine._run_direction(name, x, a0, p)
        chosen = {k: v for k, v in _engine.inference_modes().items() if k not in before}
        again = _engine._run_direction(name, x, a0, p)
        assert _engine.inference_modes() == {**before, **chosen}
    assert len(chosen) <= 1 and set(chosen.values()) <= {"states", "blocks", "scratch"}
    runs = [got, again]
    for mode in ("states", "scratch"):
        with engine_settings(plan="direct", cached_output_bytes=0, inference_mode=mode):
            runs.append(_engine._run_direction(name, x, a0, p))
    for run in runs:
        for g, w in zip(run[:3], want[:3]):
            if w is not None:
                np.testing.assert_array_equal(g, w)


def test_inference_mode_pinned_in_the_environment():
    assert_environment_setting("CYRNN_INFERENCE_MODE", "set_inference_mode", "scratch",
                               "fastest", "CYRNN_INFERENCE_MODE must be one of")
    with pytest.raises(ValueError, match="must be one of auto, states, scratch; got 'fastest'"):
        _engine.set_inference_mode("fastest")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_transposed_plan_over_chunks_blocks_and_threads_gives_identical_bits(pinned_plan,
                                                                             dtype):
    """m = 2100 (two chunks) in blocks of steps, pinned to the transposed plan:
    every way of running it gives the same bits, close to the direct plan."""
    x, a0, p, _ = problem("lstm", 3, 6, 2, 2100, 11, dtype=dtype)
    pinned_plan("transposed")
    base = cyrnn.lstm_forward(x, a0, p)
    with engine_settings(scratch_bytes=0):
        runs = [cyrnn.lstm_forward(x, a0, p, cache=False),
                cyrnn.lstm_forward(x, a0, p, cache=False, n_threads=2),
                cyrnn.lstm_forward(x, a0, p, n_threads=3)]
    for run in runs:
        for got, want in zip(run[:3], base[:3]):
            np.testing.assert_array_equal(got, want)
    pinned_plan("direct")
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for got, want in zip(base[:3], cyrnn.lstm_forward(x, a0, p)[:3]):
        assert_close(got, want, rtol=tol, atol=tol)


def test_auto_plan_times_once_per_shape_and_applies_its_choice(pinned_plan):
    """A shape above the planning threshold is timed on its first call (several
    columns: direct, transposed or row blocks; one: the same but gemv for
    transposed); the choice is cached
    for the process, and the call's bits are those of that plan pinned. Below the threshold, single columns and single steps stay
    direct without a timing run."""
    x, a0, p, _ = problem("lstm", 8, 128, 0, 32, 3, dtype=np.float32)
    key = ("float32", 512, 128, 32)
    got = cyrnn.lstm_forward(x, a0, p, cache=False)[0]
    chosen = _engine.forward_plans()[key]
    assert chosen in _engine.FORWARD_PLANS
    pinned_plan(chosen)
    np.testing.assert_array_equal(cyrnn.lstm_forward(x, a0, p, cache=False)[0], got)
    # a single column of large weights: direct or gemv, timed likewise
    pinned_plan("auto")
    x, a0, p, _ = problem("lstm", 8, 512, 0, 1, 3, dtype=np.float32)
    got = cyrnn.lstm_forward(x, a0, p, cache=False)[0]
    chosen = _engine.forward_plans()[("float32", 2048, 512, 1)]
    assert chosen in _engine.FORWARD_PLANS and chosen != "transposed"
    pinned_plan(chosen)
    np.testing.assert_array_equal(cyrnn.lstm_forward(x, a0, p, cache=False)[0], got)
    pinned_plan("auto")
    before = dict(_engine.forward_plans())
    for shape in ((8, 8, 0, 32, 3), (8, 128, 0, 1, 3), (8, 128, 0, 32, 1)):
        xs, a0s, ps, _ = problem("lstm", *shape, dtype=np.float32)
        cyrnn.lstm_forward(xs, a0s, ps, cache=False)
    assert _engine.forward_plans() == before


def test_gemm_floor_of_each_plan_and_bad_plans_refused(pinned_plan):
    for kind in ("rnn", "lstm", "gru", "gru_reset_before"):
        for plan in _engine.FORWARD_PLANS:
            _engine.GemmFloor(kind, 3, 5, 2, 10, 7, plan=plan).forward()
            _engine.GemmFloor(kind, 3, 5, 0, 2100, 2, np.float32, plan=plan).forward()
            _engine.GemmFloor(kind, 3, 5, 0, 1, 4, np.float32, plan=plan).forward()
    with pytest.raises(ValueError, match="plan must be one of"):
        _engine.GemmFloor("lstm", 3, 5, 2, 10, 7, plan="fastest")
    with pytest.raises(ValueError, match="CYRNN_FORWARD_PLAN must be auto, direct, transposed, "
                                         "gemv, rows256, rows128, rows64, packed; got 'sideways'"):
        pinned_plan("sideways")
    assert_environment_setting("CYRNN_FORWARD_PLAN", "set_forward_plan", "transposed",
                               "sideways", "CYRNN_FORWARD_PLAN must be")


# ---------------------------------------------------------------- caches

def test_caches_read_the_weights_when_backward_runs_for_every_cell():
    """Like the notebook's and the reference's caches, which hold the
    parameters dict: a change made in place between forward and backward is
    seen by both implementations alike. (The reset-after GRU's caches hold the
    forward's Wca·a_prev + bca with its gates, which the reference recomputes:
    see test_gru.py.)"""
    for kind in ("rnn", "lstm", "gru_reset_before"):
        x, a0, p, rng = problem(kind, 3, 4, 2, 5, 6)
        _, _, *rest = FORWARD[kind](x, a0, p)
        _, _, *ref_rest = getattr(ref, kind.split("_")[0] + "_forward")(x, a0, p)
        for w in p.values():
            w *= 1.5
        da = rng.standard_normal((4, 5, 6))
        got = BACKWARD[kind](da, rest[-1])
        want = getattr(ref, kind.split("_")[0] + "_backward")(da, ref_rest[-1])
        for key in want:
            assert_close(got[key], want[key])


def test_caches_from_pickle_are_checked_and_read_only():
    x, a0, p, rng = problem("lstm", 3, 4, 2, 5, 6)
    caches = cyrnn.lstm_forward(x, a0, p)[3]
    steps = pickle.loads(pickle.dumps(caches[0]))
    for name in ("A", "C", "G", "a0", "X"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(steps, name)[...] = 0
    with pytest.raises(AttributeError):
        steps.A = np.zeros((4, 6, 5))
    # a payload altered in transit is refused when it is loaded
    cls, args = caches[0].__reduce__()
    bad = list(args)
    bad[2] = bad[2][:, :3]
    with pytest.raises(ValueError, match=r"LSTMStepCaches\.G has shape"):
        cls(*bad)


def test_uninitialised_caches_are_refused():
    for kind, cls in CACHES.items():
        backward = BACKWARD[kind]
        empty = cls.__new__(cls)
        with pytest.raises(ValueError, match="not initialised"):
            backward(np.zeros((4, 5, 1)), (empty, np.zeros((3, 5, 1))))
        with pytest.raises(ValueError, match="not initialised"):
            empty[0]
        assert len(empty) == 0


def _cache_fields(kind, rng):
    x, a0, p, _ = problem(kind, 3, 4, 2, 5, 6, seed=int(rng.integers(1000)))
    steps = FORWARD[kind](x, a0, p)[-1][0]
    if kind == "rnn":
        return ["A", "a0", "X", "x", "parameters"], [steps.A, steps.a0, steps.X, steps.x, p]
    if kind == "gru":
        return (["A", "G", "a0", "X", "x", "parameters"],
                [steps.A, steps.G, steps.a0, steps.X, steps.x, p])
    return (["A", "C", "G", "a0", "c0", "X", "x", "parameters"],
            [steps.A, steps.C, steps.G, steps.a0, None, steps.X, steps.x, p])


def _tampered(value, how, rng):
    if not isinstance(value, np.ndarray) or value.ndim == 0:
        how = ("none", "scalar", "list")[int(rng.integers(3))]
    if how == "none":
        return None
    if how == "list":
        return np.asarray(value).tolist()
    if how == "dtype":
        v = np.asarray(value)
        v = v.real if np.iscomplexobj(v) else v
        return v.astype(np.int32 if rng.random() < 0.5 else np.complex128)
    if how == "float32":
        return np.asarray(value, np.float32)
    if how == "transpose":
        return np.asarray(value).T
    if how == "strided":
        v = np.asarray(value)
        return np.repeat(v, 2, axis=-1)[..., ::2]
    if how == "truncate":
        v = np.asarray(value)
        axis = int(rng.integers(v.ndim))
        return np.take(v, range(max(0, v.shape[axis] - 1)), axis=axis)
    if how == "grow":
        v = np.asarray(value)
        axis = int(rng.integers(v.ndim))
        return np.concatenate([v, np.take(v, [0], axis=axis)], axis=axis)
    if how == "ndim":
        return np.asarray(value)[..., None]
    if how == "scalar":
        return np.float64(1.0)
    raise AssertionError(how)


TAMPERING = ("none", "list", "dtype", "float32", "transpose", "strided", "truncate", "grow",
             "ndim", "scalar")


def test_tampered_caches_raise_clear_errors_never_crash():
    """Thousands of hand-built caches with one or two broken fields: each is
    refused with a TypeError/ValueError naming the field, or (when the change
    still leaves a consistent object, e.g. a smaller-T x) works like the
    intact one. Never a crash, never garbage."""
    rng = np.random.default_rng(7)
    refused = 0
    for attempt in range(2000):
        kind = ("rnn", "lstm", "gru")[attempt % 3]
        cls = CACHES[kind]
        names, fields = _cache_fields(kind, rng)
        for _ in range(1 + attempt % 2):
            k = int(rng.integers(len(names) - 1))   # parameters are checked at backward
            fields[k] = _tampered(fields[k], TAMPERING[int(rng.integers(len(TAMPERING)))], rng)
        try:
            steps = cls(*fields)
        except (TypeError, ValueError) as exc:
            assert cls.__name__ in str(exc), exc
            refused += 1
            continue
        da = rng.standard_normal((steps.A.shape[0], steps.A.shape[2], steps.A.shape[1]))
        grads = BACKWARD[kind](da, (steps, steps.x))
        assert all(np.isfinite(g).all() for g in grads.values())
    assert refused > 1400


def test_step_tuples_of_rebuilt_caches_match_the_originals():
    x, a0, p, rng = problem("lstm", 3, 4, 2, 5, 6)
    caches = cyrnn.lstm_forward(x, a0, p)[3]
    s = caches[0]
    rebuilt = cyrnn.LSTMStepCaches(s.A, s.C, s.G, s.a0, s.c0, s.X, s.x, p)
    for t in range(6):
        for u, v in zip(rebuilt[t][:9], s[t][:9]):
            np.testing.assert_array_equal(u, v)


# ---------------------------------------------------------------- errors name the data

def test_transposed_x_and_wrong_a0_are_blamed_on_them():
    x, a0, p, _ = problem("lstm", 3, 4, 2, 5, 6)
    with pytest.raises(ValueError, match=r"^x has shape \(5, 3, 6\); its first dimension n_x "
                                         r"must be 3"):
        cyrnn.lstm_forward(x.transpose(1, 0, 2), a0, p)
    with pytest.raises(ValueError, match=r"^a0 has shape \(3, 5\); its first dimension n_a "
                                         r"must be 4"):
        cyrnn.lstm_forward(x, a0[:3], p)
    xr, a0r, pr, _ = problem("rnn", 3, 4, 2, 5, 6)
    with pytest.raises(ValueError, match=r"^xt has shape \(5, 3\)"):
        cyrnn.rnn_cell_forward(xr[:, :, 0].T, a0r, pr)
    # parameters that disagree among themselves are blamed themselves
    with pytest.raises(ValueError, match=r"^parameters\['Wc'\] has shape \(4, 6\)"):
        cyrnn.lstm_forward(x, a0, dict(p, Wc=p["Wc"][:, :6]))


def test_cell_sizes_beyond_the_blas_range_raise_memory_error():
    big = np.broadcast_to(np.float64(0), (3, 2**31))
    p = rnn_parameters(np.random.default_rng(0), 3, 2, 2)
    with pytest.raises(MemoryError, match="32-bit BLAS"):
        cyrnn.rnn_cell_forward(big, np.broadcast_to(np.float64(0), (2, 2**31)), p)


# ---------------------------------------------------------------- threads

def test_pool_survives_concurrent_calls_with_growing_n_threads():
    """Calls that need more pool threads replace the executor while others
    still submit to the old one; that must never fail ("cannot schedule new
    futures after shutdown") nor change results."""
    from cyrnn import _parallel

    x, a0, p, _ = problem("rnn", 2, 3, 2, 2048 * 3, 2)
    want = cyrnn.rnn_forward(x, a0, p, cache=False)[0]
    errors = []
    start = threading.Barrier(8)

    def caller(k):
        try:
            start.wait(timeout=30)
            for i in range(12):
                _parallel._executor = None if (k + i) % 5 == 0 else _parallel._executor
                got = cyrnn.rnn_forward(x, a0, p, cache=False, n_threads=2 + (k + i) % 7)[0]
                np.testing.assert_array_equal(got, want)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(caller, range(8)))
    assert not errors, errors[:3]


def test_importing_the_source_tree_says_how_to_install(tmp_path):
    """`import cyrnn` from a source checkout (everything but the compiled
    modules: the type stubs _engine.pyi and the rest are there) must say what to
    do, not fail with a bare ModuleNotFoundError deep inside."""
    import os
    import shutil
    from importlib.machinery import EXTENSION_SUFFIXES

    package = os.path.dirname(cyrnn.__file__)
    shutil.copytree(package, tmp_path / "cyrnn", ignore=lambda d, names: [
        n for n in names if n.endswith(tuple(EXTENSION_SUFFIXES)) or n == "__pycache__"])
    assert (tmp_path / "cyrnn" / "_engine.pyi").exists()
    out = run_python("import cyrnn", cwd=tmp_path)
    assert out.returncode != 0
    assert "compiled modules are missing" in out.stderr and "pip install ." in out.stderr


def test_debug_build_checks_blocks_against_their_buffers():
    """In the debug build a block past its buffer aborts the process with the
    block's name; other builds compile the checks away."""
    out = run_python("from cyrnn import _engine; _engine._check_block_selftest()", cwd="/")
    if _engine.DEBUG_CHECKS:
        assert out.returncode != 0 and "block selftest" in out.stderr, out
    else:
        assert out.returncode == 0, out.stderr


def test_backward_reads_only_the_gate_weights_like_the_reference():
    """The backward functions need the gate weights only; a missing or odd
    output layer in the cached parameters does not concern them (nor the
    reference's), while a bad gate weight is named."""
    for kind in ("rnn", "lstm"):
        x, a0, p, rng = problem(kind, 3, 4, 2, 5, 6)
        caches = FORWARD[kind](x, a0, p)[-1]
        ref_caches = (ref.rnn_forward if kind == "rnn" else ref.lstm_forward)(x, a0, p)[-1]
        head = "Wya" if kind == "rnn" else "Wy"
        p[head] = "not an array"
        del p["by"]
        da = rng.standard_normal((4, 5, 6))
        got = BACKWARD[kind](da, caches)
        want = (ref.rnn_backward if kind == "rnn" else ref.lstm_backward)(da, ref_caches)
        for key in want:
            assert_close(got[key], want[key])
        gate = "Waa" if kind == "rnn" else "Wo"
        p[gate] = p[gate][:, :2]
        with pytest.raises(ValueError, match=rf"parameters\['{gate}'\] has shape \(4, 2\)"):
            BACKWARD[kind](da, caches)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_column_backward_with_large_weights(dtype):
    """m = 1 with recurrent weights of 2^18 elements or more: the backward's
    products run as matrix-vector products (src/_cells.pxd); checked against
    the reference, alone and as the last column running of a packed batch."""
    rng = np.random.default_rng(12)
    n_x, n_a, T = 3, 256, 4
    p = lstm_parameters(rng, n_x, n_a, 2, dtype, scale=0.05)
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == np.float64 else dict(rtol=2e-3, atol=2e-5)
    for m, lengths in ((1, None), (2, np.array([4, 1]))):
        x = rng.standard_normal((n_x, m, T)).astype(dtype)
        a0 = rng.standard_normal((n_a, m)).astype(dtype)
        da = rng.standard_normal((n_a, m, T)).astype(dtype)
        got = cyrnn.lstm_backward(da, cyrnn.lstm_forward(x, a0, p, lengths=lengths)[-1])
        want = ref.lstm_backward(da, ref.lstm_forward(x, a0, p, lengths=lengths)[-1])
        for key in want:
            assert_close(got[key], want[key], what=key, **tol)


# ---------------------------------------------------------------- prepared weights

@pytest.mark.parametrize("kind", ["lstm", "gru_reset_before"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_prepared_parameters_are_read_in_place_with_the_same_bits(kind, dtype):
    """cyrnn.prepare stacks the gate weights once; the functions then read them
    in place (no stacking copy per call) and compute the same bits, with and
    without caches, the cell functions and backward too; changing a prepared
    array in place changes the next call like any parameter dict."""
    x, a0, p, rng = problem(kind, 3, 5, 2, 7, 6, dtype=dtype)
    prepared = cyrnn.prepare(p)
    forward, backward = FORWARD[kind], BACKWARD[kind]
    gate = "Wc"
    copies = path_count("stacking_copies")
    got = [forward(x, a0, prepared), forward(x, a0, prepared, cache=False)]
    assert path_count("stacking_copies") == copies
    want = forward(x, a0, p)
    assert path_count("stacking_copies") > copies
    for run in got:
        for g, w in zip(run[:-1], want[:-1]):
            np.testing.assert_array_equal(g, w)
    da = rng.standard_normal(want[0].shape).astype(dtype)
    for key, value in backward(da, want[-1]).items():
        np.testing.assert_array_equal(backward(da, got[0][-1])[key], value)
    if kind == "lstm":
        xt = np.ascontiguousarray(x[:, :, 0])
        for g, w in zip(cyrnn.lstm_cell_forward(xt, a0, a0, prepared)[:3],
                        cyrnn.lstm_cell_forward(xt, a0, a0, p)[:3]):
            np.testing.assert_array_equal(g, w)
    prepared[gate] *= 2          # in place: a view of the stacked block
    p[gate] = p[gate] * 2
    for g, w in zip(forward(x, a0, prepared, cache=False)[:-1],
                    forward(x, a0, p, cache=False)[:-1]):
        np.testing.assert_array_equal(g, w)


def test_views_of_one_block_out_of_order_are_stacked_by_copy():
    """Gate weights that are views of one matrix in another order than the
    cell's (or with a gap) are not read as a stacked block."""
    x, a0, p, _ = problem("lstm", 3, 4, 2, 5, 4)
    block = np.concatenate([p["Wi"], p["Wf"], p["Wc"], p["Wo"]])
    swapped = dict(p, Wi=block[:4], Wf=block[4:8], Wc=block[8:12], Wo=block[12:])
    copies = path_count("stacking_copies")
    for g, w in zip(cyrnn.lstm_forward(x, a0, swapped)[:3], ref.lstm_forward(x, a0, p)[:3]):
        assert_close(g, w)
    assert path_count("stacking_copies") == copies + 1
    assert cyrnn.prepare({"Wax": p["Wf"]})["Wax"] is p["Wf"]     # nothing to stack
    with pytest.raises(TypeError, match="parameters must be a dict"):
        cyrnn.prepare([p])


def test_threads_planning_one_shape_at_once_agree(pinned_plan):
    """Calls of a new shape from several threads at once time it concurrently;
    they all run the plan stored first, so their bits agree with later calls."""
    x, a0, p, _ = problem("lstm", 4, 512, 0, 3, 3, dtype=np.float32)
    assert ("float32", 2048, 512, 3) not in _engine.forward_plans()
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: cyrnn.lstm_forward(x, a0, p, cache=False)[0], range(4)))
    later = cyrnn.lstm_forward(x, a0, p, cache=False)[0]
    assert ("float32", 2048, 512, 3) in _engine.forward_plans()
    for run in runs:
        np.testing.assert_array_equal(run, later)
