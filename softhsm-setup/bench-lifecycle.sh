#!/usr/bin/env bash
# Key lifecycle durations over the real stack (issue 15), release build:
# six signer processes on their own SoftHSM tokens and a coordinator, every
# hop on mutual TLS, as softhsm-setup/bench.sh starts them; a policy whose
# admins alice and carol must both sign a key order. Then
# `ringi bench-lifecycle` for 2-of-3 and 3-of-5 keys over signers 1-5:
# ITERATIONS refreshes of one key, and ITERATIONS repairs (each of a fresh
# key) of participant 1 onto signer-6, the spare; each next to the
# in-process FROST floor of the same protocol and size, then each refresh
# step's figures. The bench keeps its keys in a store of its own, not the
# coordinator's.
#
# Usage: softhsm-setup/bench-lifecycle.sh [ITERATIONS]     (default 20)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

iterations=${1:-20}
"$here/install-deps.sh"
cargo build --quiet --release --manifest-path "$root/Cargo.toml" --bins
bin="$root/target/release"
work=$(mktemp -d -t ringi-bench-lifecycle.XXXXXX)
PIDS=()
trap 'stop_stack; rm -rf "$work"' EXIT
bench_policy "$bin" "$work"
start_stack "$bin" "$work" 6 "$work/policy.toml" tls 2>/dev/null >/dev/null
RUST_LOG=error "$bin/ringi" bench-lifecycle --config "$work/coordinator.toml" --sizes 2of3,3of5 \
  --iterations "$iterations" --admin "$work/alice.pem" --admin "$work/carol.pem" --spare signer-6
