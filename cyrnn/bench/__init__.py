"""Benchmarks of cyrnn, installed with it: `cyrnn-bench` (python -m cyrnn.bench).

- notebook: the notebook's functions against the NumPy reference and PyTorch
  (the README's main job);
- inference: the LSTM forward pass against PyTorch and onnxruntime
  (`cyrnn-bench --inference`);
- timing: interleaved rounds and medians, shared by both and by benchmarks/;
- cli: the command line.
"""
from cyrnn.bench.cli import main
from cyrnn.bench.notebook import (DEFAULT_SHAPES, FUNCTIONS, SHAPES, calls_for, check_agreement,
                                  make_problem, torch_calls)
from cyrnn.bench.timing import dgemm_peak, measure

__all__ = ["DEFAULT_SHAPES", "FUNCTIONS", "SHAPES", "calls_for", "check_agreement", "dgemm_peak",
           "main", "make_problem", "measure", "torch_calls"]
