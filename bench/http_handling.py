#!/usr/bin/env python3
"""http_handling.py BEFORE AFTER — the hub's own handling time over a run.

BEFORE and AFTER are /metrics texts scraped around the run; the difference
of their dxhub_http_handling_seconds histograms (request received whole to
answer queued) gives the run's quantiles, interpolated within a bucket as
Prometheus' histogram_quantile does.  Prints one line for the bench's
results file: srv_p50_us=N srv_p99_us=N srv_requests=N
"""
import re
import sys

LINE = re.compile(r'^dxhub_http_handling_seconds_bucket\{le="([^"]+)"\} (\d+)$')


def buckets(path):
    out = []
    for line in open(path):
        m = LINE.match(line.strip())
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            out.append((le, int(m.group(2))))
    return out


def quantile(q, bs):
    total = bs[-1][1]
    if not total:
        return 0.0
    rank, prev_le, prev_n = q * total, 0.0, 0
    for le, n in bs:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_n) / max(n - prev_n, 1)
        prev_le, prev_n = le, n
    return prev_le


before, after = buckets(sys.argv[1]), buckets(sys.argv[2])
if not after or len(before) != len(after):
    print("srv_p50_us=0 srv_p99_us=0 srv_requests=0")
    sys.exit(0)
delta = [(le, n - m) for (le, n), (_, m) in zip(after, before)]
print("srv_p50_us=%.1f srv_p99_us=%.1f srv_requests=%d"
      % (quantile(0.5, delta) * 1e6, quantile(0.99, delta) * 1e6, delta[-1][1]))
