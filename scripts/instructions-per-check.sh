#!/bin/bash
# Instructions per in-process Check, counted by callgrind: repeatable on a noisy machine, unlike
# wall time. Runs one criterion benchmark of benches/check.rs under valgrind, counting only inside
# verdict::engine::check_with (what every Check runs), and divides by the number of calls of
# verdict::engine::check.
#
#   scripts/instructions-per-check.sh [--rev REV]... ["criterion filter"]...
#
# Without --rev, measures the working tree. Each --rev REV (a commit, a branch, or `worktree` for
# the working tree) is exported (`git archive`, nothing checked out) and built in this tree's
# target/ (dependencies shared), then measured: before and after in one run, one line each.
# Filters default to "check/1 resource x 1 action".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
revs=()
filters=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rev) revs+=("$2"); shift 2 ;;
        *) filters+=("$1"); shift ;;
    esac
done
[ ${#revs[@]} -gt 0 ] || revs=(worktree)
[ ${#filters[@]} -gt 0 ] || filters=("check/1 resource x 1 action")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Builds the bench binary of revision $1 in this tree's target/ and copies it to $2 (cargo names
# the artifacts of every copy of the crate alike: the next build overwrites them).
build() {
    local rev=$1 manifest=$root/Cargo.toml log=$work/build.log
    if [ "$rev" != worktree ]; then
        local src="$work/src-$(git rev-parse --short "$rev")"
        mkdir -p "$src"
        git archive "$rev" | tar -x -C "$src"
        # Newer than anything built: cargo rebuilds the crate and reruns build.rs (the proto code).
        find "$src" -type f -exec touch {} +
        manifest=$src/Cargo.toml
    fi
    if ! CARGO_TARGET_DIR=$root/target cargo bench --manifest-path "$manifest" --bench check --no-run >"$log" 2>&1; then
        cat "$log" >&2
        echo "cannot build the benchmark of $rev" >&2
        exit 1
    fi
    local bin
    bin=$(grep -o '[^ (]*target/release/deps/check-[0-9a-f]*' "$log" | tail -1)
    cp "$root/${bin#"$root"/}" "$2"
}

bins=()
for i in "${!revs[@]}"; do
    bins+=("$work/check-$i")
    build "${revs[$i]}" "${bins[$i]}"
done
for filter in "${filters[@]}"; do
    for i in "${!revs[@]}"; do
        out=$work/callgrind.out
        valgrind --tool=callgrind --callgrind-out-file="$out" \
            --toggle-collect='verdict::engine::check_with' \
            "${bins[$i]}" --bench --profile-time 2 "$filter" >/dev/null 2>&1
        total=$(callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
        checks=$(callgrind_annotate --tree=caller "$out" \
            | awk '/engine::check \(/ && !done { done = 1; sub(/.*\(/, ""); sub(/x\).*/, ""); gsub(",", ""); print }')
        label=${revs[$i]}
        [ "$label" = worktree ] || label="$label ($(git rev-parse --short "$label"))"
        echo "$label: $filter: $((total / checks)) instructions per Check ($total over $checks Checks)"
        rm -f "$out"
    done
done
