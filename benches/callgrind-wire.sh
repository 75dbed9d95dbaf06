#!/usr/bin/env bash
# Over the wire, counted instead of timed: user-space instructions per Check of the daemon and of
# the constant-response ceiling server, each run under callgrind and sent the same requests by
# h2load. Instruction counts do not depend on what else the machine is doing, so the ratio is
# repeatable where throughput is not (kernel time, the same for both servers per request within a
# few percent, is not counted).
#
# Run: bash benches/callgrind-wire.sh     (needs valgrind and h2load: apt-get install nghttp2-client)
# Settings (environment): REQUESTS (5000, counted after 500 not counted), CONNECTIONS (4),
# STREAMS (16 per connection), DAEMON (target/release/verdict, built here; another build of the
# daemon to compare with, e.g. one of an earlier commit), POLICIES (policies; an older build may
# need its own commit's set, and the current build is then counted on that set too).
set -euo pipefail
cd "$(dirname "$0")/.."

requests=${REQUESTS:-5000}
connections=${CONNECTIONS:-4}
streams=${STREAMS:-16}

for tool in h2load valgrind callgrind_control callgrind_annotate taskset python3 ss; do
  command -v "$tool" >/dev/null || { echo "callgrind-wire.sh: $tool not found" >&2; exit 1; }
done

. benches/wire-build.sh

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bench" --print-frame >"$work/frame.bin"

load() { # ADDR N
  taskset -c 1 h2load -n "$2" -t 1 -c "$connections" -m "$streams" \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$work/frame.bin" \
    "http://$1/verdict.v1.Authorizer/Check" | awk '/^requests:/ {print $8}'
}

# count NAME COMMAND...: instructions per request of COMMAND (a server announcing its address).
count() {
  local name=$1 addr="" pid="" ok
  shift
  VERDICT_LOG=info taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" \
    "$@" >"$work/$name.log" 2>&1 &
  # count runs in a subshell ($(count ...)): its server is stopped when it exits, whatever way.
  trap "kill $! 2>/dev/null || true" EXIT
  for _ in $(seq 600); do
    addr=$(grep 'serving gRPC' "$work/$name.log" | grep -o ' addr=[^ ]*' | head -1 | sed 's/.*addr=//' || true)
    [ -n "$addr" ] && break
    sleep 0.2
  done
  [ -n "$addr" ] || { echo "callgrind-wire.sh: $name did not start" >&2; cat "$work/$name.log" >&2; exit 1; }
  pid=$(ss -ltnpH "sport = :${addr##*:}" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
  load "$addr" 500 >/dev/null              # warm-up, not counted
  callgrind_control -z "$pid" >/dev/null 2>&1
  ok=$(load "$addr" "$requests")
  [ "$ok" = "$requests" ] || { echo "callgrind-wire.sh: $name answered $ok of $requests" >&2; exit 1; }
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"
  wait "$!" 2>/dev/null || true
  local total
  total=$(callgrind_annotate "$work/$name.out.1" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo $((total / requests))
}

ceiling=$(count ceiling "$bench" --ceiling-server)
verdict=$(count verdict "${DAEMON:-target/release/verdict}" serve --listen 127.0.0.1:0 --no-watch \
  --request-timeout-ms 0 --policies "${POLICIES:-policies}")
echo "user-space instructions per Check over gRPC ($requests requests, $connections connections x $streams streams):"
echo "  ceiling (constant response)  $ceiling"
echo "  verdict Check 1x1            $verdict"
python3 -c "print(f'  ceiling / verdict            {100 * $ceiling / $verdict:.1f}%')"
