#!/usr/bin/env bash
# Over the wire with an independent client: h2load (Debian `nghttp2-client`) sends the same Check
# request as benches/grpc.rs, as a prebuilt gRPC message, to the constant-response ceiling server
# and to the release daemon (both on CPU 0; h2load on CPU 1, one thread): at the maximum rate, then
# at a fixed rate of half the daemon's maximum. Latency percentiles come from h2load's per-request
# log. h2load ignores grpc-status, so one request with the same bytes goes through curl first and
# its trailers and decisions are checked (grpc-status 0, read ALLOW).
#
# Run: bash benches/h2load.sh
# Settings (environment): SECONDS_PER_PHASE (5), CONNECTIONS (4), STREAMS (16 per connection at
# the maximum rate: 64 in flight, as benches/grpc.rs), FIXED_STREAMS (64 per connection at the
# fixed rate), SPREAD_CONNECTIONS (100, see below).
#
# What h2load's fixed rate is: `--rps N` is per connection, and its timer ticks at most every
# 10 ms, so requests leave in bursts of rate/100 per tick, and a request's time starts when it is
# submitted (FIXED_STREAMS per connection leaves room for a whole burst, so none waits for a free
# stream). Those bursts add latency. The "spread" rows send the same total rate over
# SPREAD_CONNECTIONS connections, each ticking at its own phase, so arrivals are closer to even.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${SECONDS_PER_PHASE:-5}
connections=${CONNECTIONS:-4}
streams=${STREAMS:-16}
fixed_streams=${FIXED_STREAMS:-64}
spread=${SPREAD_CONNECTIONS:-100}

for tool in h2load curl taskset python3; do
  command -v "$tool" >/dev/null || { echo "h2load.sh: $tool not found (h2load: apt-get install nghttp2-client)" >&2; exit 1; }
done

echo "== building the release daemon and the grpc bench binary"
cargo build --release --bin verdict
bench=$(cargo bench --bench grpc --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "grpc" and m.get("executable"):
        print(m["executable"])')
daemon=target/release/verdict

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bench" --print-frame >"$work/frame.bin"

# start NAME COMMAND...: runs the server on CPU 0 and sets $addr when it announces it.
start() {
  local name=$1
  shift
  VERDICT_LOG=info taskset -c 0 "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 600); do
    addr=$(grep -o 'serving gRPC addr=[^ ]*' "$work/$name.log" | head -1 | sed 's/.*addr=//' || true)
    [ -n "$addr" ] && return 0
    sleep 0.1
  done
  echo "h2load.sh: $name did not start:" >&2
  cat "$work/$name.log" >&2
  exit 1
}

# verify NAME ADDR: one request with the frame h2load sends; grpc-status 0 and read ALLOW.
verify() {
  local name=$1 addr=$2
  curl -sS --http2-prior-knowledge --max-time 10 -H 'content-type: application/grpc' -H 'te: trailers' \
    --data-binary @"$work/frame.bin" -D "$work/$name.headers" -o "$work/$name.body" \
    "http://$addr/verdict.v1.Authorizer/Check"
  if ! tr -d '\r' <"$work/$name.headers" | grep -qx 'grpc-status: 0'; then
    echo "h2load.sh: $name did not answer grpc-status 0:" >&2
    cat "$work/$name.headers" >&2
    exit 1
  fi
  local decisions
  decisions=$("$bench" --decode-response <"$work/$name.body")
  echo "$name answers grpc-status 0: $decisions"
  grep -q 'read: EFFECT_ALLOW' <<<"$decisions" || { echo "h2load.sh: $name did not allow" >&2; exit 1; }
}

# run LABEL ADDR H2LOAD_ARGS...: h2load on CPU 1; appends a row to $work/rows and prints it; the
# rate (HTTP 200 answers in the main phase per second; the warm-up is not logged) goes to
# $work/rate.
run() {
  local label=$1 addr=$2
  shift 2
  rm -f "$work/log.tsv"
  taskset -c 1 h2load -D "$duration" --warm-up-time 1 -t 1 \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$work/frame.bin" \
    --log-file="$work/log.tsv" "$@" "http://$addr/verdict.v1.Authorizer/Check" >"$work/h2load.out" 2>&1 ||
    { cat "$work/h2load.out" >&2; exit 1; }
  python3 - "$label" "$work/h2load.out" "$work/log.tsv" "$duration" "$work/rate" >>"$work/rows" <<'EOF'
import re, sys
label, out, log, duration = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3], float(sys.argv[4])
requests = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
times, failed = [], int(requests.group(5)) + int(requests.group(7))
for line in open(log):
    start, status, micros = line.split("\t")
    if status == "200":
        times.append(int(micros))
times.sort()
def p(q):
    return times[round((len(times) - 1) * q)] if times else float("nan")
open(sys.argv[5], "w").write(f"{len(times) / duration:.0f}\n")
print(f"{label:<52} {len(times) / duration:>10.0f} req/s  p50 {p(.5):>7} us  p90 {p(.9):>7} us  p99 {p(.99):>7} us  p999 {p(.999):>7} us  failed {failed}")
EOF
  tail -1 "$work/rows"
}

rate() { cat "$work/rate"; }

start ceiling "$bench" --ceiling-server
ceiling=$addr
start verdict "$daemon" serve --listen 127.0.0.1:0 --no-watch --request-timeout-ms 0 --policies policies
verdict=$addr
verify ceiling "$ceiling"
verify verdict "$verdict"

echo "== h2load: ${duration} s per phase (after 1 s of warm-up), $connections connections; servers on CPU 0, h2load on CPU 1"
run "ceiling (constant response), max rate" "$ceiling" -c "$connections" -m "$streams"
ceiling_max=$(rate)
run "verdict Check 1x1, max rate" "$verdict" -c "$connections" -m "$streams"
verdict_max=$(rate)
half=$((verdict_max / 2))
per_connection=$(python3 -c "print(f'{$half / $connections:.2f}')")
per_spread=$(python3 -c "print(f'{$half / $spread:.2f}')")
run "ceiling at $half req/s" "$ceiling" -c "$connections" -m "$fixed_streams" --rps "$per_connection"
run "verdict at $half req/s (half its max)" "$verdict" -c "$connections" -m "$fixed_streams" --rps "$per_connection"
run "ceiling at $half req/s, $spread connections" "$ceiling" -c "$spread" -m "$fixed_streams" --rps "$per_spread"
run "verdict at $half req/s, $spread connections" "$verdict" -c "$spread" -m "$fixed_streams" --rps "$per_spread"

echo
echo "h2load $(h2load --version | head -1 | awk '{print $2}'), ${duration} s per phase, $connections connections ($streams streams each at the maximum rate, $fixed_streams at a fixed rate)"
cat "$work/rows"
python3 -c "print(f'verdict throughput / ceiling: {100 * $verdict_max / $ceiling_max:.1f}%')"
