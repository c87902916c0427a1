"""cyrnn-bench (cyrnn/bench/), the README's main job: a short run says which
peers are missing and how to add them, and writes its table and plot."""
import sys

import pytest

from cyrnn import bench
from cyrnn.bench import timing


def test_short_run_names_a_missing_peer_and_writes_the_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)          # as if not installed
    # (the peak GEMM rate takes a 2048³ GEMM: minutes under QEMU's emulation)
    monkeypatch.setattr(bench, "dgemm_peak", lambda dtype: 1.0)
    monkeypatch.chdir(tmp_path)
    labels = bar_labels(monkeypatch)
    args = ["--shapes", "tiny", "--functions", "rnn_forward,gru_reset_before_backward",
            "--budget", "0.01", "--quiet", "--json", "r.json", "--out", "results"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "PyTorch is not installed: the PyTorch columns stay empty" in out
    assert "pip install torch" in out
    written = tmp_path / "results"
    assert f"wrote {written / 'r.json'}" in out                  # where, said in full
    assert (written / "r.json").stat().st_size > 100
    # every column defined above the table, every row as wide as the header
    intro = out[:out.index("\nshape ")]
    for column in ("cyrnn ms", "ref ms", "x ref", "torch ms", "x torch", "floor ms",
                   "/floor", "GFLOP/s", "%peak"):
        assert column in intro, f"column {column!r} is not defined above the table"
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("shape "))
    rows = lines[header + 2:header + 4]
    assert [row.split()[1] for row in rows] == ["rnn_forward", "gru_reset_before_backward"]
    assert all(len(row) == len(lines[header]) for row in rows)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot: matplotlib is not installed" in out
    else:
        assert (written / "cyrnn-bench-float64.png").stat().st_size > 1000
        assert labels == ["vs NumPy reference"]        # no empty "vs PyTorch" entry


def bar_labels(monkeypatch):
    """The labels of the bar series the plots draw (empty without matplotlib)."""
    labels = []
    try:
        from matplotlib.axes import Axes
    except ImportError:
        return labels
    real = Axes.bar

    def bar(self, *args, label=None, **kwargs):
        labels.append(label)
        return real(self, *args, label=label, **kwargs)
    monkeypatch.setattr(Axes, "bar", bar)
    return labels


def test_tables_align_their_columns():
    from cyrnn.bench.report import Table
    table = Table([("name", 4), ("title", 3), ("n", 6)], names=1)
    header, rule = table.header().splitlines()
    assert header == "name title      n" and rule == "-" * len(header)
    assert table.row("ab", "1.5", 12) == "ab     1.5     12"
    with pytest.raises(ValueError, match="a row of 2 cells for 3 columns"):
        table.row("x", 1)


def test_unknown_shape_is_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--shapes", "huge"])
    assert "unknown shape 'huge'" in capsys.readouterr().err


def test_measure_settles_before_each_sample(monkeypatch):
    """measure(settle=s): each sample follows a pause of s and one untimed call
    (other libraries' spinning threads idle, the candidate's own warm)."""
    events = []
    monkeypatch.setattr(timing.time, "sleep", lambda s: events.append(("sleep", s)))

    def candidate():
        events.append("call")
    t = timing.measure({"c": candidate}, budget=0.0, min_rounds=3, max_rounds=3, settle=0.5)
    assert t["c"] >= 0
    timed = events[2:]                     # after the two warm-up calls
    loops = (len(timed) - 3 * 2) // 3      # per round: sleep, untimed call, loops calls
    assert loops >= 1
    assert timed == ([("sleep", 0.5), "call"] + ["call"] * loops) * 3
    events.clear()
    timing.measure({"c": candidate}, budget=0.0, min_rounds=2, max_rounds=2)
    assert all(e == "call" for e in events)


# ------------------------------------------------------------- --inference

def test_inference_run_without_peers_says_how_to_add_them(tmp_path, monkeypatch, capsys):
    """cyrnn-bench --inference with no peer installed still times cyrnn and its
    floors, and names the missing peers with the command that adds them."""
    from cyrnn.bench import inference as bench_inference

    for name in ("torch", "onnx", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(bench_inference, "THREAD_SHAPES", ("tiny",))
    monkeypatch.setattr(bench_inference, "SERVING", (3, 5, 4))
    monkeypatch.chdir(tmp_path)
    labels = bar_labels(monkeypatch)
    assert bench.main(["--inference", "--shapes", "tiny", "--dtype", "float64",
                       "--budget", "0.01", "--json", "r.json", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "torch and onnxruntime not installed" in out and "pip install torch onnx" in out
    assert "n/a in float64: its CPU LSTM" in out and "Shapes (n_x, n_a, m, T): tiny" in out
    assert out.count("dtype   shape") == 2 and "dtype     m" in out      # three tables
    assert f"wrote {tmp_path / 'cyrnn-bench-inference.png'}" in out or "no plot" in out
    assert labels in ([], ["best BLAS floor"])        # only the bars it has
    import json
    result = json.loads((tmp_path / "r.json").read_text())
    row = result["single_thread"][0]
    assert {"cyrnn", "cyrnn cached", "floor direct", "floor transposed"} <= set(row["seconds"])
    assert row["cyrnn_vs_best_floor"] > 0 and "torch_vs_cyrnn" not in row
    assert result["two_threads"][0]["sequences_per_s"]["cyrnn 2 user threads"] > 0
    assert result["serving"][0]["requests_per_s"]["cyrnn"] > 0
    assert result["serving"][0]["requests_per_s"]["batcher"] > 0


def test_inference_peers_compute_what_cyrnn_does():
    """The peers the inference table times run the same LSTM (PyTorch's and
    ONNX's gate orders, with and without the head): checked before timing, and
    that check catches a wrong gate order."""
    import numpy as np

    from cyrnn.bench import inference as bench_inference
    from problems import require_peer

    found = {name: require_peer(name, "the inference table times it")
             for name in ("torch", "onnx", "onnxruntime")}
    for n_y in (0, 3):
        calls = bench_inference.implementations(found, (4, 6, 5, 7), np.float32, n_y)
        assert {"torch", "onnxruntime"} <= set(calls)
    calls = bench_inference.implementations(found, (4, 6, 5, 7), np.float64, 0)
    assert "torch" in calls and "onnxruntime" not in calls     # no float64 ONNX LSTM
    real = bench_inference._stacked
    try:
        bench_inference._stacked = lambda p, order, n_a: real(p, "fico", n_a)
        with pytest.raises(AssertionError, match="does not compute what cyrnn does"):
            bench_inference.implementations(found, (4, 6, 5, 7), np.float32, 0)
    finally:
        bench_inference._stacked = real
