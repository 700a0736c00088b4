"""Turns hyperfine JSON exports into one markdown table with ratios to a named baseline.

usage: table.py RESULTS.json BASELINE-NAME [RESULTS.json BASELINE-NAME ...]
"""
import json
import sys


def rows(path, baseline):
    results = json.load(open(path))["results"]
    base = next(r for r in results if r["command"] == baseline)["mean"]
    for r in results:
        yield r["command"], r["mean"], r["stddev"] or 0.0, r["min"], len(r["times"]), r["mean"] / base, baseline


def fmt(seconds):
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.3f} s"


print("| command | mean ± σ | min | runs | ratio to baseline |")
print("|---|---|---|---|---|")
args = sys.argv[1:]
for path, baseline in zip(args[::2], args[1::2]):
    for command, mean, sd, lo, n, ratio, base in rows(path, baseline):
        mark = " (baseline)" if command == base else ""
        print(f"| `{command}` | {fmt(mean)} ± {fmt(sd)} | {fmt(lo)} | {n} | {ratio:.3f}×{mark} |")
