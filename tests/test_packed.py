"""The packed plan: cyrnn's own kernel for the recurrent product (weights packed
once per call in panels of units, each panel's product fused with the cell's
kernel; src/cyrnn_packed.h), against the NumPy reference at the edges of its
panels, tiles and column blocks, on every x86-64 level this machine can run."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import cyrnn
import cyrnn.reference as ref
from cyrnn import _engine
from problems import assert_close, engine_settings, path_count, problem

KINDS = ("rnn", "lstm", "gru", "gru_reset_before")
# the levels the kernel can run here: the machine's best and every lower one
# the build holds side by side (a -march build or another platform: its one)
BEST = _engine.packed_isa()
LEVELS = [isa for isa in _engine.PACKED_ISAS[:_engine.PACKED_ISAS.index(BEST) + 1]] \
    if BEST in _engine.PACKED_ISAS else [BEST]


@pytest.fixture(params=LEVELS)
def packed_level(request):
    """The packed plan pinned at one instruction-set level for the test."""
    level = _engine._use_packed_isa(request.param if request.param in _engine.PACKED_ISAS
                                    else None)
    try:
        with engine_settings(plan="packed"):
            yield level
    finally:
        _engine._use_packed_isa(None)


def reference_forward(kind, x, a0, p, lengths=None, reverse=False):
    """The reference's hidden states in float64 (reverse: on reversed time)."""
    x64, a064 = x.astype(np.float64), a0.astype(np.float64)
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    forward = getattr(ref, kind.split("_")[0] + "_forward")
    if reverse:
        return forward(np.ascontiguousarray(x64[:, :, ::-1]), a064, p64)[0][:, :, ::-1]
    return forward(x64, a064, p64, lengths=lengths)[0]


def runs(kind, x, a0, p, lengths=None, reverse=False, threads=(1, 2, 3)):
    """The hidden states with caches, then without on each thread count."""
    cell = kind.split("_")[0]
    packings = path_count("weight_packings")
    out = [_engine._run_direction(cell, x, a0, p, lengths=lengths, reverse=reverse,
                                  cache=True)[0]]
    out += [_engine._run_direction(cell, x, a0, p, lengths=lengths, reverse=reverse,
                                   cache=False, n_threads=k)[0] for k in threads]
    # each call packed its weights (a shape's first call may time its memory
    # modes on more runs)
    assert path_count("weight_packings") - packings >= len(out)
    return out


def tolerance(dtype):
    return 1e-10 if dtype == np.float64 else 3e-5


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), dtype=st.sampled_from([np.float64, np.float32]),
       n_x=st.integers(1, 6), n_a=st.integers(1, 70), m=st.integers(1, 70),
       T=st.integers(2, 5), variant=st.sampled_from(["plain", "reverse", "lengths"]),
       seed=st.integers(0, 2**16))
def test_packed_plan_computes_the_reference(packed_level, kind, dtype, n_x, n_a, m, T,
                                            variant, seed):
    """Any cell, dtype, size (n_a across panel edges, m across tile widths and
    column blocks), direction and lengths: the reference's states, and the
    same bits with and without caches on 1, 2 and 3 threads."""
    x, a0, p, rng = problem(kind, n_x, n_a, 2, m, T, seed, dtype)
    lengths = rng.integers(0, T + 1, m) if variant == "lengths" else None
    reverse = variant == "reverse"
    got = runs(kind, x, a0, p, lengths, reverse)
    assert_close(got[0], reference_forward(kind, x, a0, p, lengths, reverse),
                 rtol=tolerance(dtype), atol=tolerance(dtype), what=packed_level)
    for other in got[1:]:
        np.testing.assert_array_equal(other, got[0])


# n_a at every panel's edge (units per panel: 4, 8 or 16 lanes per vector,
# times 1, 2 or 4 by the pass's gates), m at the column tiles' widths (1, 2, 3,
# 4, 6, 8) and the column block's (64 columns of a 16-KiB tile)
EDGES_N_A = (1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65)
EDGES_M = (1, 2, 3, 5, 6, 7, 8, 9, 13, 17, 63, 64, 65, 129)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_packed_plan_at_panel_and_tile_edges(packed_level, kind, dtype):
    rng = np.random.default_rng(7)
    for n_a in EDGES_N_A:
        m = int(rng.choice(EDGES_M))
        x, a0, p, _ = problem(kind, 3, n_a, 2, m, 3, n_a, dtype)
        got = runs(kind, x, a0, p, threads=(1, 4))
        assert_close(got[0], reference_forward(kind, x, a0, p), rtol=tolerance(dtype),
                     atol=tolerance(dtype), what=f"{packed_level} n_a={n_a} m={m}")
        for other in got[1:]:
            np.testing.assert_array_equal(other, got[0])
    for m in EDGES_M:
        n_a = int(rng.choice(EDGES_N_A))
        x, a0, p, _ = problem(kind, 2, n_a, 2, m, 2, m, dtype)
        got = runs(kind, x, a0, p, threads=(2,))
        assert_close(got[0], reference_forward(kind, x, a0, p), rtol=tolerance(dtype),
                     atol=tolerance(dtype), what=f"{packed_level} n_a={n_a} m={m}")
        np.testing.assert_array_equal(got[1], got[0])


def test_packed_plan_splits_each_step_among_threads(packed_level):
    """One chunk without lengths runs split (each part whole panels of every
    pass, its product fused with its units' kernel) whatever n_threads; with
    lengths by chunks: both compute the reference."""
    for kind in KINDS:
        x, a0, p, rng = problem(kind, 5, 70, 2, 9, 4, 5, np.float32)
        split = path_count("split_runs")
        got = runs(kind, x, a0, p, threads=(1, 2, 4))
        assert path_count("split_runs") - split == 4
        assert_close(got[0], reference_forward(kind, x, a0, p), rtol=3e-5, atol=3e-5)
        for other in got[1:]:
            np.testing.assert_array_equal(other, got[0])
        lengths = rng.integers(0, 5, 9)
        split = path_count("split_runs")
        got = runs(kind, x, a0, p, lengths=lengths, threads=(2,))
        assert path_count("split_runs") == split
        assert_close(got[0], reference_forward(kind, x, a0, p, lengths), rtol=3e-5, atol=3e-5)
        np.testing.assert_array_equal(got[1], got[0])


def test_packed_weights_follow_in_place_edits_between_calls(packed_level):
    """Packed once per call: a parameter edited in place between two calls
    (the notebook's way of updating weights) is what the second call uses."""
    x, a0, p, _ = problem("lstm", 4, 20, 2, 3, 4, 1)
    first = cyrnn.lstm_forward(x, a0, p, cache=False)[0]
    p["Wf"][:, :20] *= -1.5
    second = cyrnn.lstm_forward(x, a0, p, cache=False)[0]
    assert not np.array_equal(first, second)
    assert_close(second, reference_forward("lstm", x, a0, p))


def model_and_input(cell="lstm", layers=2, dtype=np.float64, seed=3):
    from cyrnn import models
    rng = np.random.default_rng(seed)
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    n_x, n_a, m, T = 5, 19, 3, 7
    stack, n_in = [], n_x
    for _ in range(layers):
        stack.append([models.convert._direction(
            cell, n_a, rng.uniform(-0.6, 0.6, (G * n_a, n_in)),
            rng.uniform(-0.6, 0.6, (G * n_a, n_a)), rng.uniform(-0.6, 0.6, G * n_a),
            rng.uniform(-0.6, 0.6, G * n_a), {"rnn": "", "lstm": "ifco", "gru": "rzn"}[cell],
            reset_after=True) for _ in range(2)])
        n_in = 2 * n_a
    model = models.Model(cell, [[{k: v.astype(dtype) for k, v in p.items()} for p in layer]
                                for layer in stack])
    return model, stack, rng.standard_normal((n_x, m, T)).astype(dtype)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_model_packs_each_direction_once(packed_level, cell):
    """A Model keeps each direction's packed weights: its first call packs
    them (a shape's first call may pack more, timing its memory modes), later
    calls, with or without lengths, pack nothing and compute the same."""
    from cyrnn import models
    model, stack, x = model_and_input(cell)
    first = model(x)[0]
    packings = path_count("weight_packings")
    again = model(x)[0]
    with_lengths = model(x, lengths=np.array([7, 2, 5]))[0]
    assert path_count("weight_packings") == packings
    np.testing.assert_array_equal(again, first)
    # the same as packing on every call: a model rebuilt from the same weights
    assert_close(models.Model(cell, stack)(x)[0], first, rtol=1e-12, atol=1e-13)
    assert_close(with_lengths[:, 0], first[:, 0], rtol=1e-12, atol=1e-13)


def test_a_models_weights_are_its_own_and_read_only(packed_level):
    """In-place edits of a model's weights (which its kept packing would not
    see) are refused; the arrays it was built from stay the caller's, writable;
    an array assigned in place of one is packed at the next call."""
    from cyrnn import models
    model, stack, x = model_and_input("lstm", layers=1)
    given = stack[0][0]["Wf"]
    assert given.flags.writeable and not np.shares_memory(given, model.layers[0][0]["Wf"])
    first = model(x)[0]
    with pytest.raises(ValueError, match="read-only"):
        model.layers[0][0]["Wf"][0, 0] = 1.0
    edited = [dict(p) for p in stack[0]]
    edited[0]["Wf"] = edited[0]["Wf"] * -1.5
    packings = path_count("weight_packings")
    model.layers[0][0]["Wf"] = np.ascontiguousarray(edited[0]["Wf"])
    second = model(x)[0]
    assert path_count("weight_packings") > packings
    assert not np.array_equal(first, second)
    assert_close(second, models.Model("lstm", [edited])(x)[0], rtol=1e-12, atol=1e-13)


def test_a_model_copy_packs_afresh():
    """A pickled model (a Dask worker's copy) comes back read-only with an empty
    cache, and computes what the original does."""
    import pickle
    with engine_settings(plan="packed"):
        model, _, x = model_and_input("gru", dtype=np.float32)
        want = model(x)[0]
        copy = pickle.loads(pickle.dumps(model))
        assert not any(c.filled for layer in copy._packed for c in layer)
        assert not copy.layers[1][1]["Wr"].flags.writeable
        np.testing.assert_array_equal(copy(x)[0], want)


def test_a_models_packing_follows_the_instruction_set_level():
    """Packed at one level, a model's next call at another (a different panel
    width) packs again instead of reading the old layout."""
    if len(LEVELS) < 2:
        pytest.skip(f"one packed-kernel level in this build ({LEVELS})")
    model, _, x = model_and_input("lstm", dtype=np.float32)
    try:
        with engine_settings(plan="packed"):
            high = _engine._use_packed_isa(LEVELS[-1])
            best = model(x)[0]
            if _engine._use_packed_isa(LEVELS[0]) == high:
                pytest.skip(f"one packed-kernel level in force in this build ({high})")
            packings = path_count("weight_packings")
            lowest = model(x)[0]
            assert path_count("weight_packings") > packings
    finally:
        _engine._use_packed_isa(None)
    assert_close(lowest, best, rtol=1e-5, atol=1e-5)


def test_threads_share_a_models_packing():
    """Calls from several threads on one model at once (its first included)
    all compute what one call does."""
    from concurrent.futures import ThreadPoolExecutor
    with engine_settings(plan="packed"):
        model, _, x = model_and_input("lstm")
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda _: model(x)[0], range(8)))
        want = model(x)[0]
    for out in outs:
        np.testing.assert_array_equal(out, want)


def test_packed_plan_leaves_the_inputs_alone(packed_level):
    x, a0, p, _ = problem("gru_reset_before", 3, 33, 2, 5, 4, 2, np.float32)
    before = [x.copy(), a0.copy()] + [v.copy() for v in p.values()]
    cyrnn.gru_forward(x, a0, p, cache=True)
    for was, now in zip(before, [x, a0] + list(p.values())):
        np.testing.assert_array_equal(now, was)


@pytest.mark.parametrize("kind", KINDS)
def test_packed_plan_backward_matches_the_reference(packed_level, kind):
    """Caches made under the packed plan feed backward as any other's."""
    x, a0, p, _ = problem(kind, 3, 19, 2, 6, 5, 3)
    cell = kind.split("_")[0]
    out = getattr(cyrnn, cell + "_forward")(x, a0, p)
    a, caches = out[0], out[-1]
    da = np.random.default_rng(0).standard_normal(a.shape)
    got = getattr(cyrnn, cell + "_backward")(da, caches)
    want = getattr(ref, cell + "_backward")(da, getattr(ref, cell + "_forward")(x, a0, p)[-1])
    for key in want:
        assert_close(got[key], want[key], rtol=1e-9, atol=1e-10, what=key)


def test_floor_of_the_packed_plan_runs():
    """GemmFloor(plan="packed") runs the kernel's products alone (benchmarks'
    second floor) without touching anything outside its buffers."""
    floor = _engine.GemmFloor("lstm", 8, 37, 3, 5, 6, np.float32, plan="packed")
    floor.forward()
    floor.forward()


def test_auto_plan_over_every_candidate_computes_the_reference():
    """Auto mode times every candidate, the packed plan among them, on a
    shape's first call; whichever wins computes the reference."""
    x, a0, p, _ = problem("lstm", 16, 128, 2, 32, 6, 4, np.float32)
    with engine_settings(plan="auto"):
        a = cyrnn.lstm_forward(x, a0, p, cache=False)[0]
    chosen = _engine.forward_plans()[("float32", 512, 128, 32)]
    assert chosen in _engine.FORWARD_PLANS
    assert_close(a, reference_forward("lstm", x, a0, p), rtol=3e-5, atol=3e-5)
