#!/usr/bin/env bash
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
#
# Runs every fuzz target (or the ones named) for SECONDS each (default 60)
# with cargo-fuzz (libFuzzer, AddressSanitizer), starting from the
# harnesses' seed corpora (valid inputs that reach the deepest checks;
# written by the ringi-fuzz-seeds binary). Needs a nightly toolchain and
# `cargo install cargo-fuzz`. Corpora stay in fuzz/libfuzzer/corpus/TARGET
# between runs; a crash is saved in fuzz/libfuzzer/artifacts/TARGET and
# fails the run: copy it into fuzz/regressions/TARGET/ once fixed, so
# `cargo test -p ringi-fuzz` replays it from then on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
cargo run --quiet -p ringi-fuzz --bin ringi-fuzz-seeds -- "$here/libfuzzer/corpus"
cd "$here"
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir libfuzzer)
fi
cargo +nightly fuzz build --fuzz-dir libfuzzer
for target in "${targets[@]}"; do
  echo "== $target: $seconds s"
  cargo +nightly fuzz run --fuzz-dir libfuzzer "$target" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done|==[0-9]+==ERROR|SUMMARY)' || true
  if [ -n "$(ls -A "libfuzzer/artifacts/$target" 2>/dev/null)" ]; then
    echo "fuzz: $target found a crash: fuzz/libfuzzer/artifacts/$target" >&2
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets, $seconds s each, no crash"
