#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, starting from the committed seeds (fuzz/seeds/) and
# whatever corpus earlier runs left (fuzz/corpus/, not committed); exits non-zero on the first
# crash, leaving the input in fuzz/artifacts/<target>/. CI runs it with a short time per target.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     # default: 30 s, every target
#
# VERDICT_FUZZ_PROFILE=dev builds unoptimized (about half the build time of the default release
# build, fewer runs per second): what CI uses, where the build is most of the time spent.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Works on the stable toolchain: no sanitizer
# (Verdict is safe Rust; a panic or a failed assertion is the crash), and RUSTC_BOOTSTRAP=1 in
# case cargo-fuzz asks rustc for an unstable flag. With nightly, `cargo +nightly fuzz run TARGET`
# adds AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(policy_load plan sql request token)
fi

export RUSTC_BOOTSTRAP=1
build=(--sanitizer none)
if [ "${VERDICT_FUZZ_PROFILE:-release}" = dev ]; then
  build+=(--dev)
fi
cargo fuzz build "${build[@]}"

for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  case "$target" in
    policy_load | plan) options+=(-dict=fuzz/cel.dict) ;;
  esac
  echo "== fuzz $target for ${seconds}s"
  started=$(date +%s)
  cargo fuzz run "${build[@]}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- "${options[@]}"
  echo "== fuzz $target: no crash in $(( $(date +%s) - started ))s"
done
