#!/usr/bin/env python3
"""Prints the medians of the last `cargo bench --bench peers` run (peers/target/criterion), and for
each scenario the ratio of every peer engine to Verdict.

Usage (in peers/): nice -n 10 cargo bench --bench peers && python3 medians.py
"""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent / "target" / "criterion"
groups = {}
for estimates in sorted(root.glob("*/*/new/estimates.json")):
    bench = json.loads((estimates.parent / "benchmark.json").read_text())
    group, engine = bench["group_id"], bench["function_id"]
    groups.setdefault(group, {})[engine] = json.loads(estimates.read_text())["median"]["point_estimate"]


def show(ns):
    return f"{ns / 1e3:10.3f} µs" if ns < 1e6 else f"{ns / 1e6:10.3f} ms"


for group, medians in sorted(groups.items()):
    print(group)
    base = medians.get("verdict")
    for engine, ns in sorted(medians.items(), key=lambda kv: kv[1]):
        ratio = f"  {ns / base:6.1f}x Verdict" if base else ""
        print(f"  {engine:<22} median {show(ns)}{ratio}")
