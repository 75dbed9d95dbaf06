#!/usr/bin/env python3
"""Prints the median of every criterion benchmark found under target/criterion (the last run).

Usage: cargo bench --bench check --bench plan && python3 scripts/bench-medians.py [FILTER]
"""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
pattern = sys.argv[1] if len(sys.argv) > 1 else ""
rows = []
for estimates in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((estimates.parent / "benchmark.json").read_text())
    name = bench.get("full_id") or bench.get("title") or str(estimates.parent.parent)
    if pattern not in name:
        continue
    median = json.loads(estimates.read_text())["median"]
    ns = median["point_estimate"]
    lo, hi = median["confidence_interval"]["lower_bound"], median["confidence_interval"]["upper_bound"]
    unit, scale = ("µs", 1e3) if ns < 1e6 else ("ms", 1e6)
    rows.append((name, f"{ns / scale:.3f} {unit}", f"[{lo / scale:.3f} .. {hi / scale:.3f}]"))
width = max((len(r[0]) for r in rows), default=0)
for name, median, interval in rows:
    print(f"{name:<{width}}  median {median:>12}  95% CI {interval}")
