#!/usr/bin/env bash
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
#
# Runs every fuzz target (or the ones named) for SECONDS each (default 60)
# with cargo-fuzz (libFuzzer, AddressSanitizer). Needs a nightly toolchain
# and `cargo install cargo-fuzz`. Corpora stay in fuzz/corpus/TARGET between
# runs; a crash is saved in fuzz/artifacts/TARGET and fails the run.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build
for target in "${targets[@]}"; do
  echo "== $target: $seconds s"
  cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done|==[0-9]+==ERROR|SUMMARY)' || true
  if [ -n "$(ls -A "artifacts/$target" 2>/dev/null)" ]; then
    echo "fuzz: $target found a crash: fuzz/artifacts/$target" >&2
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets, $seconds s each, no crash"
