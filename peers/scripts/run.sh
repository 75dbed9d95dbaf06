#!/usr/bin/env bash
# Every peer in one run: in process, Verdict, Cedar, Rego (regorus' interpreter and its RVM) on
# criterion (benches/peers.rs, then medians.py); over the wire, Verdict's daemon and the real
# Cerbos PDP pinned apart (scripts/wire.sh, arguments passed on). Prints the machine's load first.
#   bash peers/scripts/run.sh --seconds 5 --rounds 3
set -euo pipefail
peers="$(cd "$(dirname "$0")/.." && pwd)"
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, verdict $(git -C "$peers" rev-parse --short HEAD)"
echo "== in process: cargo bench --bench peers"
(cd "$peers" && cargo bench --bench peers >/dev/null 2>&1 && python3 medians.py)
echo "== over the wire: scripts/wire.sh $*"
bash "$peers/scripts/wire.sh" "$@"
