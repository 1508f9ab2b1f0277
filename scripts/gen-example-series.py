#!/usr/bin/env python3
"""Writes examples/series.csv: one day of requests/s for the example WPA, one sample a minute.

A daily curve (quiet night, busy afternoon) with three bursts; deterministic noise so the file is stable.
"""
import math
import random
import sys

rng = random.Random(42)
start = 1_714_521_600  # 2024-05-01T00:00:00Z
bursts = [(9 * 60 + 30, 15, 3000), (14 * 60, 10, 4200), (20 * 60, 20, 2600)]  # minute, length, extra rps
out = open(sys.argv[1] if len(sys.argv) > 1 else "examples/series.csv", "w")
out.write("timestamp,metric,value\n")
for minute in range(24 * 60):
    hour = minute / 60
    daily = 850 - 600 * math.cos((hour - 2) / 24 * 2 * math.pi)  # 250 rps at 02:00, 1450 at 14:00
    extra = sum(rps for (m, length, rps) in bursts if m <= minute < m + length)
    value = max(0.0, daily + extra + rng.gauss(0, 25))
    t = start + minute * 60
    stamp = "%04d-%02d-%02dT%02d:%02d:00Z" % (2024, 5, 1, minute // 60, minute % 60)
    out.write(f"{stamp},nginx.net.request_per_s,{value:.1f}\n")
