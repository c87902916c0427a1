"""cyrnn-bench's command line: the main job (notebook functions against the NumPy
reference and PyTorch) or, with --inference, the inference comparison."""
import argparse
import json
import os

import numpy as np

from cyrnn.bench import notebook
from cyrnn.bench.notebook import (DEFAULT_SHAPES, FUNCTIONS, SHAPES, check_agreement,
                                  format_table, plot, run)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cyrnn.bench", description=notebook.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default=",".join(DEFAULT_SHAPES),
                        help=f"comma-separated from {', '.join(SHAPES)}, or 'all' "
                             f"(default: %(default)s)")
    parser.add_argument("--functions", default="all",
                        help="comma-separated function names, or 'all'")
    parser.add_argument("--dtype", default=None,
                        help="float64 (default) or float32; with --inference a comma-separated "
                             "list (default float32,float64)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/PyTorch threads")
    parser.add_argument("--budget", type=float, default=0.25,
                        help="seconds of timing per function and shape (default %(default)s)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--out", metavar="DIR", default=".",
                        help="folder for the files it writes, made if missing: the plot, "
                             "and --json/--plot paths that are relative (default: the "
                             "current folder)")
    parser.add_argument("--json", metavar="PATH", help="write all results as JSON")
    parser.add_argument("--plot", metavar="PATH",
                        help="where to write the PNG plot (needs matplotlib; default "
                             "cyrnn-bench-<dtype>.png, or cyrnn-bench-inference.png)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--inference", action="store_true",
                        help="instead: the LSTM inference comparison with PyTorch and "
                             "onnxruntime (1 thread, 2 threads, serving; see "
                             "cyrnn.bench.inference); --dtype takes float32,float64 there")
    args, rest = parser.parse_known_args(argv)
    if args.inference:
        return inference_main(args, rest, parser)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    shapes = list(SHAPES) if args.shapes == "all" else args.shapes.split(",")
    functions = FUNCTIONS if args.functions == "all" else tuple(args.functions.split(","))
    for s in shapes:
        if s not in SHAPES:
            parser.error(f"unknown shape {s!r}; choose from {', '.join(SHAPES)}")
    for f in functions:
        if f not in FUNCTIONS:
            parser.error(f"unknown function {f!r}; choose from {', '.join(FUNCTIONS)}")
    args.dtype = args.dtype or "float64"
    if args.dtype not in ("float64", "float32"):
        parser.error(f"--dtype must be float64 or float32; got {args.dtype!r}")
    dtype = np.float32 if args.dtype == "float32" else np.float64
    if not args.no_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("PyTorch is not installed: the PyTorch columns stay empty. Add it with "
                  "`pip install torch` (or `pip install \"cyrnn[peers]\"`, which also brings "
                  "Keras, onnxruntime and dask for benchmarks/).")
    check_agreement(dtype)
    print(f"cyrnn agrees with the NumPy reference ({args.dtype}); timing {', '.join(shapes)} ...")
    result = run(shapes, dtype, args.threads, args.budget, functions,
                 use_torch=not args.no_torch, progress=not args.quiet)
    print(format_table(result))
    write_files(args, result, f"cyrnn-bench-{args.dtype}.png", plot,
                "speed-ups by shape and function")
    return 0


def write_files(args, result, default_plot, plot, what):
    """The JSON (when asked for) and the plot, in --out; says where each went."""
    os.makedirs(args.out, exist_ok=True)
    if args.json:
        path = os.path.abspath(os.path.join(args.out, args.json))
        with open(path, "w") as fh:
            json.dump(result, fh, indent=1)
        print(f"wrote {path}")
    path = os.path.abspath(os.path.join(args.out, args.plot or default_plot))
    try:
        plot(result, path)
        print(f"wrote {path} ({what})")
    except ImportError:
        if args.plot:
            raise
        print("(no plot: matplotlib is not installed; `pip install \"cyrnn[bench]\"`)")


def inference_main(args, rest, parser):
    from cyrnn.bench import inference as bench_inference

    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    dtypes = (args.dtype or "float32,float64").split(",")
    shapes = list(bench_inference.SHAPES) if args.shapes in ("all", ",".join(DEFAULT_SHAPES)) \
        else args.shapes.split(",")
    for name in shapes:
        if name not in bench_inference.SHAPES:
            parser.error(f"unknown shape {name!r}; choose from "
                         f"{', '.join(bench_inference.SHAPES)}")
    for d in dtypes:
        if d not in ("float32", "float64"):
            parser.error(f"--dtype takes float32 and/or float64; got {d!r}")
    result = bench_inference.run(shapes, [np.dtype(d).type for d in dtypes],
                                 max(args.budget, 1.0), progress_bar=not args.quiet)
    write_files(args, result, "cyrnn-bench-inference.png", bench_inference.plot,
                "peer time / cyrnn time by shape")
    return 0
