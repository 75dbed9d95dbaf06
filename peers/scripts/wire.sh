#!/usr/bin/env bash
# Verdict's daemon and the real Cerbos PDP over gRPC, in one run (benches/wire.rs): builds the
# release daemon and the bench, fetches Cerbos (scripts/cerbos.sh), then runs the bench on the
# last CPU with the servers on CPU 0, so that load and servers never share a core. Arguments go to
# the bench (--seconds, --rounds, --concurrency, --connections).
#   bash peers/scripts/wire.sh --seconds 5 --rounds 3
set -euo pipefail
peers="$(cd "$(dirname "$0")/.." && pwd)"
cpus=$(nproc)
[ "$cpus" -ge 2 ] || { echo "wire.sh: needs 2 CPUs at least (server and load apart)" >&2; exit 1; }
# The daemon built in this workspace's target/, with the dependencies the bench shares.
(cd "$peers" && cargo build --release -p verdict --bin verdict)
export VERDICT_BIN="$peers/target/release/verdict"
export CERBOS_BIN=$(bash "$peers/scripts/cerbos.sh")
bench=$(cd "$peers" && cargo bench --bench wire --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "wire" and m.get("executable"):
        print(m["executable"])')
[ -x "$bench" ] || { echo "wire.sh: the bench did not build: cd peers && cargo bench --bench wire --no-run" >&2; exit 1; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); CPUs: $cpus; verdict $(git -C "$peers" rev-parse --short HEAD)" >&2
exec taskset -c "1-$((cpus - 1))" "$bench" --server-cpus 0 "$@"
