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
# fixed rate).
#
# What h2load's fixed rate is: `--rps N` is per connection, and its timer ticks at most every
# 10 ms, so requests leave in bursts of rate/100 per tick (all connections' ticks close together),
# and a request's time starts when it is submitted (FIXED_STREAMS per connection leaves room for a
# whole burst, so none waits for a free stream). A burst queues at the server, so the median is
# in milliseconds; and a burst costs the server less CPU per request than evenly spaced requests.
# h2load's latency at a fixed rate is that of 10 ms bursts, a different load: benches/grpc.rs's
# (each request sent at its own due time) is the one to compare with the target. Its
# `--timing-script-file` mode does not help: its timer re-arms from the time it fired, so it falls
# far behind the asked rate.
#
# Each row ends with the server's share of a core (its threads' time on a CPU, from schedstat) and
# how busy CPU 0 and CPU 1 were (clock ticks, /proc/stat): CPU 0 busier than the server, or
# CPU 1 busier than h2load alone, means other processes took part of the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${SECONDS_PER_PHASE:-5}
connections=${CONNECTIONS:-4}
streams=${STREAMS:-16}
fixed_streams=${FIXED_STREAMS:-64}

for tool in h2load curl taskset python3; do
  command -v "$tool" >/dev/null || { echo "h2load.sh: $tool not found (h2load: apt-get install nghttp2-client)" >&2; exit 1; }
done

echo "== building the release daemon and the grpc bench binary"
. benches/wire-build.sh
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

# start NAME COMMAND...: runs the server on CPU 0 and sets $addr and $pid when it announces it.
start() {
  local name=$1
  shift
  VERDICT_LOG=info taskset -c 0 "$@" >"$work/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 600); do
    addr=$(grep 'serving gRPC' "$work/$name.log" | grep -o ' addr=[^ ]*' | head -1 | sed 's/.*addr=//' || true)
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

# cpu PID: nanoseconds on a CPU of PID's threads, then busy and total ticks of CPU 0 and CPU 1.
cpu() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ns += $1} END {printf "%.0f ", ns}'
  awk '/^cpu[01] / {busy = $2 + $3 + $4 + $7 + $8 + $9; printf "%d %d ", busy, busy + $5 + $6}' /proc/stat
  date +%s%N
}

# run LABEL ADDR PID H2LOAD_ARGS...: h2load on CPU 1; appends a row to $work/rows and prints it; the
# rate (HTTP 200 answers in the main phase per second; the warm-up is not logged) goes to
# $work/rate.
run() {
  local label=$1 addr=$2 server=$3 before after
  shift 3
  rm -f "$work/log.tsv"
  before=$(cpu "$server")
  taskset -c 1 h2load -D "$duration" --warm-up-time 1 -t 1 \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$work/frame.bin" \
    --log-file="$work/log.tsv" "$@" "http://$addr/verdict.v1.Authorizer/Check" >"$work/h2load.out" 2>&1 ||
    { cat "$work/h2load.out" >&2; exit 1; }
  after=$(cpu "$server")
  python3 - "$label" "$work/h2load.out" "$work/log.tsv" "$duration" "$work/rate" "$before" "$after" >>"$work/rows" <<'EOF'
import re, sys
label, out, log, duration = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3], float(sys.argv[4])
b, a = [list(map(int, v.split())) for v in sys.argv[6:8]]
server = (a[0] - b[0]) / (a[5] - b[5])
cpu0, cpu1 = ((a[i] - b[i]) / (a[i + 1] - b[i + 1]) for i in (1, 3))
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
print(f"{label:<52} {len(times) / duration:>10.0f} req/s  p50 {p(.5):>7} us  p90 {p(.9):>7} us  p99 {p(.99):>7} us  p999 {p(.999):>7} us  failed {failed}  CPU: server {server:.0%}, CPU 0 busy {cpu0:.0%}, CPU 1 busy {cpu1:.0%}")
EOF
  tail -1 "$work/rows"
}

rate() { cat "$work/rate"; }

start ceiling "$bench" --ceiling-server
ceiling=$addr
ceiling_pid=$pid
start verdict "$daemon" serve --listen 127.0.0.1:0 --no-watch --request-timeout-ms 0 --policies policies
verdict=$addr
verdict_pid=$pid
verify ceiling "$ceiling"
verify verdict "$verdict"

echo "== h2load: ${duration} s per phase (after 1 s of warm-up), $connections connections; servers on CPU 0, h2load on CPU 1"
run "ceiling (constant response), max rate" "$ceiling" "$ceiling_pid" -c "$connections" -m "$streams"
ceiling_max=$(rate)
run "verdict Check 1x1, max rate" "$verdict" "$verdict_pid" -c "$connections" -m "$streams"
verdict_max=$(rate)
half=$((verdict_max / 2))
per_connection=$(python3 -c "print(f'{$half / $connections:.2f}')")
run "ceiling at $half req/s" "$ceiling" "$ceiling_pid" -c "$connections" -m "$fixed_streams" --rps "$per_connection"
run "verdict at $half req/s (half its max)" "$verdict" "$verdict_pid" -c "$connections" -m "$fixed_streams" --rps "$per_connection"

echo
echo "h2load $(h2load --version | head -1 | awk '{print $2}'), ${duration} s per phase, $connections connections ($streams streams each at the maximum rate, $fixed_streams at a fixed rate)"
cat "$work/rows"
python3 -c "print(f'verdict throughput / ceiling: {100 * $verdict_max / $ceiling_max:.1f}%')"
