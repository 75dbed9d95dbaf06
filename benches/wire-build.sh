# Sourced by the over-the-wire scripts (h2load.sh, callgrind-wire.sh): builds the release daemon
# and the grpc bench binary (which serves the constant-response ceiling, prints the request frame
# and decodes answers), and sets $bench to the latter.
cargo build --release --bin verdict
bench=$(cargo bench --bench grpc --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "grpc" and m.get("executable"):
        print(m["executable"])')
[ -x "$bench" ] || { echo "$(basename "$0"): the grpc bench did not build: cargo bench --bench grpc --no-run" >&2; exit 1; }
