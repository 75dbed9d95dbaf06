#!/usr/bin/env python3
"""How often a thread that never blocks is kept off its CPU: spins reading the clock for N seconds
(default 10) and counts the gaps between two reads. On an idle machine the gaps over 200 us are
the host (or the kernel) taking the CPU away, and they set a floor under any p99 measured there.

Run: taskset -c 1 python3 scripts/hiccups.py 10   (BENCHMARKS.md, "Over the wire")
"""
import sys
import time

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
end = time.perf_counter_ns() + int(seconds * 1e9)
last = time.perf_counter_ns()
gaps = []
while last < end:
    now = time.perf_counter_ns()
    if now - last > 50_000:
        gaps.append(now - last)
    last = now
over = lambda us: sum(g > us * 1000 for g in gaps)
print(
    f"{seconds:.0f} s spinning: gaps over 50 us {over(50) / seconds:.1f}/s, over 200 us {over(200) / seconds:.1f}/s, "
    f"over 1 ms {over(1000) / seconds:.1f}/s, longest {max(gaps, default=0) / 1000:.0f} us"
)
