"""cyrnn-bench (cyrnn/bench.py), the README's main job: a short run says which
peers are missing and how to add them, and writes its table and plot."""
import sys

import pytest

from cyrnn import bench


def test_short_run_names_a_missing_peer_and_writes_the_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)          # as if not installed
    # (the peak GEMM rate takes a 2048³ GEMM: minutes under QEMU's emulation)
    monkeypatch.setattr(bench, "dgemm_peak", lambda dtype: 1.0)
    monkeypatch.chdir(tmp_path)
    args = ["--shapes", "tiny", "--functions", "rnn_forward", "--budget", "0.01", "--quiet",
            "--json", str(tmp_path / "r.json")]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "PyTorch is not installed: the PyTorch columns stay empty" in out
    assert "pip install torch" in out
    assert (tmp_path / "r.json").stat().st_size > 100
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot: matplotlib is not installed" in out
    else:
        assert (tmp_path / "cyrnn-bench-float64.png").stat().st_size > 1000


def test_unknown_shape_is_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--shapes", "huge"])
    assert "unknown shape 'huge'" in capsys.readouterr().err
