#!/bin/bash
# Instructions per in-process Check, counted by callgrind: repeatable on a noisy machine, unlike
# wall time. Runs one criterion benchmark of benches/check.rs under valgrind, counting only inside
# verdict::engine::check_with (what every Check runs), and divides by the number of calls of
# verdict::engine::check.
#
#   scripts/instructions-per-check.sh ["criterion filter"]   (default: "check/1 resource x 1 action")
set -euo pipefail
cd "$(dirname "$0")/.."
filter=${1:-"check/1 resource x 1 action"}
bin=$(cargo bench --bench check --no-run 2>&1 | grep -o 'target/release/deps/check-[0-9a-f]*' | tail -1)
out=$(mktemp)
valgrind --tool=callgrind --callgrind-out-file="$out" \
    --toggle-collect='verdict::engine::check_with' \
    "$bin" --bench --profile-time 2 "$filter" >/dev/null 2>&1
total=$(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
checks=$(callgrind_annotate --tree=caller "$out" \
    | awk '/engine::check \(/ && !done { done = 1; sub(/.*\(/, ""); sub(/x\).*/, ""); gsub(",", ""); print }')
echo "$filter: $((total / checks)) instructions per Check ($total over $checks Checks)"
rm -f "$out"
