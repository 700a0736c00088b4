"""Reads a `wrk --latency` report and prints "req/s p50-ms p99-ms non-2xx" on one line.

usage: wrk.py REPORT.txt
"""
import re
import sys

text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))


def latency_ms(percentile):
    value, unit = re.search(rf"\s{percentile}%\s+([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1, "s": 1e3}[unit]


errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"{rps:.0f} {latency_ms(50):.2f} {latency_ms(99):.2f} {errors.group(1) if errors else 0}")
