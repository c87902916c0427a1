"""Markdown tables from the JSON files of `python -m cyrnn.bench` (also `--inference`)
and bench_threads.py.

    python benchmarks/tables.py benchmarks/results/float64.json [...]
    python benchmarks/tables.py --summary results/float64.json results/float32.json

--summary prints the one compact table of the top-level README: the sequence
functions' speed-ups at every shape, one row per shape and dtype.
"""
import json
import sys


def ms(seconds):
    if seconds is None:
        return ""
    return f"{seconds * 1e3:.4g}"


def suite_table(result):
    s = result["settings"]
    lines = [f"**{s['dtype']}, {s['threads']} BLAS thread(s)**; GEMM peak "
             f"{result['gemm_peak_gflops']:.1f} GFLOP/s (2048³, same run). Times are medians "
             f"in ms; `x ref`/`x torch` are speed-ups of cyrnn (torch compared on forward+"
             f"backward for the backward rows); `/floor` is cyrnn over the BLAS-only floor.",
             "",
             "| shape | function | cyrnn | reference | x ref | torch | x torch | floor | /floor "
             "| GFLOP/s | % peak |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['shape']} | {r['function']} | {ms(r['cyrnn_s'])} | {ms(r['reference_s'])} "
            f"| {r['speedup_vs_reference']:.1f} | {ms(r.get('torch_s'))} "
            f"| {format(r['speedup_vs_torch'], '.2f') if 'speedup_vs_torch' in r else ''} "
            f"| {ms(r.get('floor_s'))} | {format(r['vs_floor'], '.2f') if 'vs_floor' in r else ''} "
            f"| {r['gflops']:.1f} | {100 * r['fraction_of_peak']:.0f}% |")
    return "\n".join(lines)


def threads_table(result):
    lines = [f"**{result['cpus']} CPUs, {result['dtype']}** — bigbatch inference "
             f"(64, 128, 32, 1024, 50), sequences/s (speed-up vs 1 thread)", "",
             "| threads | user threads | n_threads | PyTorch (set_num_threads) |",
             "|---:|---:|---:|---:|"]
    for r in result["bigbatch"]:
        lines.append(f"| {r['threads']} | {r['user_threads_seq_per_s']:.0f} "
                     f"(x{r['user_threads_speedup']:.2f}) | {r['n_threads_seq_per_s']:.0f} "
                     f"(x{r['n_threads_speedup']:.2f}) | {r.get('torch_seq_per_s', 0):.0f} |")
    lines += ["", "Request serving (m = 1..8, T = 50, n_a = 128, n_x = 64), requests/s", "",
              "| threads | cyrnn | PyTorch (1 intra-op thread per caller) |", "|---:|---:|---:|"]
    for r in result["serving"]:
        lines.append(f"| {r['threads']} | {r['cyrnn_requests_per_s']:.0f} "
                     f"(x{r['cyrnn_speedup']:.2f}) | {r.get('torch_requests_per_s', 0):.0f} |")
    gil = ", ".join(f"{100 * v:.0f}% during `{k}`"
                    for k, v in result["gil_counter_fraction"].items())
    lines += ["", f"GIL check: a pure-Python counter thread keeps {gil} of its solo rate."]
    return "\n".join(lines)


SEQUENCE_FUNCTIONS = ("rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
                      "gru_forward", "gru_backward")


def summary_table(results):
    lines = ["| shape | dtype | " + " | ".join(f"`{f}`" for f in SEQUENCE_FUNCTIONS) + " |",
             "|---|---|" + "---:|" * len(SEQUENCE_FUNCTIONS)]
    rows = {(r["settings"]["dtype"], row["shape"], row["function"]): row
            for r in results for row in r["rows"]}
    shapes = list(dict.fromkeys(row["shape"] for r in results for row in r["rows"]))
    for shape in shapes:
        for dtype in dict.fromkeys(r["settings"]["dtype"] for r in results):
            cells = []
            for function in SEQUENCE_FUNCTIONS:
                row = rows.get((dtype, shape, function))
                if row is None:
                    cells.append("")
                    continue
                torch = row.get("speedup_vs_torch")
                cells.append(f"{row['speedup_vs_reference']:.1f}"
                             + (f" / {torch:.2f}" if torch is not None else ""))
            lines.append(f"| {shape} | {dtype} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def inference_tables(result):
    """The three tables of `cyrnn-bench --inference`: 1 thread, 2 threads, serving."""
    out = [("| shape | dtype | head | cyrnn ms | cached ms | best floor ms (plan) | "
            "cyrnn / floor | PyTorch ms | ORT ms | PyTorch / cyrnn | ORT / cyrnn | "
            "faster peer / floor |"),
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["single_thread"]:
        t = r["seconds"]
        best = r.get("best_floor")
        peers = [t[k] for k in ("torch", "onnxruntime") if k in t]
        out.append("| " + " | ".join([
            r["shape"], r["dtype"], "yes" if r["head"] else "no", ms(t["cyrnn"]),
            ms(t["cyrnn cached"]),
            f"{ms(t[best])} ({best.split()[-1]})" if best else "",
            f"{r['cyrnn_vs_best_floor']:.2f}" if best else "",
            ms(t.get("torch")), ms(t.get("onnxruntime")),
            f"{r['torch_vs_cyrnn']:.2f}" if "torch" in t else "",
            f"{r['onnxruntime_vs_cyrnn']:.2f}" if "onnxruntime" in t else "",
            f"{min(peers) / t[best]:.2f}" if best and peers else ""]) + " |")
    out += ["", ("| shape | dtype | cyrnn n_threads=2 | 2 user threads | 2 BLAS threads | "
                 "PyTorch | onnxruntime | best cyrnn / faster peer |"),
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["two_threads"]:
        q = r["sequences_per_s"]
        out.append("| " + " | ".join(
            [r["shape"], r["dtype"]] + [f"{q[k]:.0f}" if k in q else "" for k in (
                "cyrnn", "cyrnn 2 user threads", "cyrnn 2 BLAS threads", "torch", "onnxruntime")]
            + [f"{r['cyrnn_vs_faster_peer']:.2f}" if "cyrnn_vs_faster_peer" in r else ""]) + " |")
    out += ["", ("| requests | dtype | user threads | cyrnn req/s | PyTorch req/s | "
                 "onnxruntime req/s | cyrnn / faster peer |"), "|---|---|---:|---:|---:|---:|---:|"]
    for r in result["serving"]:
        q = r["requests_per_s"]
        out.append("| " + " | ".join(
            [f"m = {r['m']}", r["dtype"], str(r["threads"])]
            + [f"{q[k]:.0f}" if k in q else "" for k in ("cyrnn", "torch", "onnxruntime")]
            + [f"{r['cyrnn_vs_faster_peer']:.2f}" if "cyrnn_vs_faster_peer" in r else ""]) + " |")
    return "\n".join(out)


def main(paths):
    if paths and paths[0] == "--summary":
        results = []
        for path in paths[1:]:
            with open(path) as fh:
                results.append(json.load(fh))
        print(summary_table(results))
        return
    for path in paths:
        with open(path) as fh:
            result = json.load(fh)
        if "single_thread" in result:
            print(inference_tables(result))
        else:
            print(threads_table(result) if "bigbatch" in result else suite_table(result))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
