"""A/B: time the functions of two (or more) cyrnn builds on this machine.

Each build lives in its own environment (two builds of one package cannot be
imported into one process), so the comparison runs worker processes, one per
build and (shape, dtype), alternating builds round by round so the machine's
noise hits them alike, and reports medians over the rounds:

    python benchmarks/bench_build.py --build old=/path/venv-0.1/bin/python \\
        --build new=/path/venv/bin/python --rounds 5 --json ab.json

Every function is timed (the eight notebook functions, and the forward
functions with cache=False), float64 and float32, 1 BLAS thread; problems and
timing as in cyrnn.bench. Prints, per row, each build's milliseconds and the
ratio of every build to the first.
"""
import argparse
import json
import statistics
import subprocess
import sys

SHAPES = ("tiny", "small", "medium", "bigbatch", "wide")
DTYPES = ("float64", "float32")


def worker(shape, dtype, budget):
    import numpy as np
    from threadpoolctl import threadpool_limits

    import cyrnn
    from cyrnn.bench import SHAPES as PROBLEMS, calls_for, make_problem, measure

    prob = make_problem(PROBLEMS[shape], np.dtype(dtype))
    calls = calls_for(cyrnn, prob)
    x, a0, p = prob["x"], prob["a0"], prob["p"]
    calls["rnn_forward cache=False"] = lambda: cyrnn.rnn_forward(x, a0, p, cache=False)
    calls["lstm_forward cache=False"] = lambda: cyrnn.lstm_forward(x, a0, p, cache=False)
    with threadpool_limits(1):
        # one function at a time: the long ones would crowd the short ones' rounds
        times = {name: measure({name: fn}, budget)[name] for name, fn in calls.items()}
    print(json.dumps(times))


def inference_worker(shape, dtype, budget):
    """lstm_forward(cache=False) at an inference shape (cyrnn-bench --inference),
    hidden states only and with the head, on 1 and 2 threads."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    import cyrnn
    try:
        from cyrnn.bench.inference import HEAD_ROWS, SHAPES as PROBLEMS, lstm_problem
    except ImportError:     # (builds before cyrnn.bench became a package)
        from cyrnn.bench_inference import HEAD_ROWS, SHAPES as PROBLEMS, lstm_problem
    from cyrnn.bench import measure

    n_x, n_a, m, T = PROBLEMS[shape]
    calls = {}
    for n_y, what in ((0, "a"), (HEAD_ROWS, "head")):
        p, x, a0 = lstm_problem(n_x, n_a, m, T, np.dtype(dtype), n_y)
        p = cyrnn.prepare(p)
        for threads in (1, 2):
            calls[f"lstm inference {what} {threads}t"] = (
                lambda x=x, a0=a0, p=p, threads=threads:
                cyrnn.lstm_forward(x, a0, p, cache=False, n_threads=threads))
    with threadpool_limits(1):
        times = {name: measure({name: fn}, budget)[name] for name, fn in calls.items()}
    print(json.dumps(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", action="append", required=True,
                        help="NAME=PYTHON: a build's name and its environment's Python")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.3, help="seconds per function")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--json", help="write every sample here")
    parser.add_argument("--suite", choices=("notebook", "inference"), default="notebook",
                        help="the notebook functions (SHAPES of cyrnn.bench) or LSTM "
                             "inference (the shapes of cyrnn-bench --inference, 1 and 2 "
                             "threads)")
    parser.add_argument("--worker", nargs=2, metavar=("SHAPE", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        (inference_worker if args.suite == "inference" else worker)(*args.worker, args.budget)
        return
    builds = dict(b.split("=", 1) for b in args.build)
    names = list(builds)
    samples = {}
    for shape in args.shapes.split(","):
        for dtype in args.dtypes.split(","):
            for r in range(args.rounds):
                for name in (names if r % 2 == 0 else names[::-1]):
                    out = subprocess.run(
                        [builds[name], __file__, "--build", "x=x", "--budget", str(args.budget),
                         "--suite", args.suite, "--worker", shape, dtype], check=True,
                        capture_output=True, text=True,
                        cwd="/")
                    for function, seconds in json.loads(out.stdout.splitlines()[-1]).items():
                        samples.setdefault((shape, dtype, function), {}).setdefault(
                            name, []).append(seconds)
            print_rows(samples, shape, dtype, names)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"shape": s, "dtype": d, "function": fn, "seconds": v}
                       for (s, d, fn), v in samples.items()], f, indent=1)


def print_rows(samples, shape, dtype, names):
    for (s, d, function), by_build in samples.items():
        if (s, d) != (shape, dtype) or any(n not in by_build for n in names):
            continue    # (a function only some builds have is not compared)
        med = {n: statistics.median(by_build[n]) for n in names}
        cells = " ".join(f"{med[n] * 1e3:10.4f}" for n in names)
        ratios = " ".join(f"{med[n] / med[names[0]]:.3f}" for n in names[1:])
        print(f"{shape:9s} {dtype:8s} {function:26s} {cells}  {ratios}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
