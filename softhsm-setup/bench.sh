#!/usr/bin/env bash
# Latency of one signing over the real stack (SoftHSM tokens, ten signer
# processes checking two department approvals, gRPC over mutual TLS on
# loopback) for a 2-of-3, a 3-of-5 and a 7-of-10 key, each next to the
# in-process FROST floor of its size, and the cost of a new TLS connection
# (handshake signed in the signer's token) versus a call on a reused one,
# and PSBT requests on a 2-of-3 bitcoin-taproot key (its floor, the
# derivation, the stack), all measured in the same run; then each series'
# time per phase (coordinator and signers); and the first key's signings
# as requests (approved -> SIGNED, every store write made) on the embedded
# SQLite store next to a private PostgreSQL server started here. Release
# build: figures from debug builds mean nothing (RINGI_BENCH_PROFILE=debug
# runs the debug binaries anyway, for a quick look; label such figures).
#
# Usage: softhsm-setup/bench.sh [ITERATIONS] [tls|plain] [KEYS]
#   (default 500 tls bench,bench-3of5,bench-7of10; KEYS: any of those three)
#   RINGI_BENCH_BIN=DIR: release binaries to run instead of this tree's
#   (an A/B comparison of two builds, as for bench-load.sh), not rebuilt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

iterations=${1:-500}
mode=${2:-tls}
keys=${3:-bench,bench-3of5,bench-7of10}
[ "$mode" = plain ] && mode=""
"$here/install-deps.sh"
if [ -n "${RINGI_BENCH_BIN:-}" ]; then
  bin=$RINGI_BENCH_BIN
elif [ "${RINGI_BENCH_PROFILE:-release}" = debug ]; then
  cargo build --quiet --manifest-path "$root/Cargo.toml" --bins
  bin="$root/target/debug"
else
  cargo build --quiet --release --manifest-path "$root/Cargo.toml" --bins
  bin="$root/target/release"
fi
work=$(mktemp -d -t ringi-bench.XXXXXX)
# The PostgreSQL server (another user, as root) must reach its directory
# inside: traverse, not list.
chmod 711 "$work"
PIDS=()
trap 'stop_stack; stop_postgres; rm -rf "$work"' EXIT
start_postgres "$work"
bench_policy "$bin" "$work" bench bench-3of5 bench-7of10 bench-btc:regtest
start_stack "$bin" "$work" 10 "$work/policy.toml" $mode 2>/dev/null >/dev/null
# signers N: signer-1,...,signer-N.
signers() { seq -f 'signer-%g' -s, 1 "$1"; }
"$bin/ringi" keygen --key-id bench --threshold 2 --signers "$(signers 3)" >/dev/null 2>&1
"$bin/ringi" keygen --key-id bench-3of5 --threshold 3 --signers "$(signers 5)" >/dev/null 2>&1
"$bin/ringi" keygen --key-id bench-7of10 --threshold 7 --signers "$(signers 10)" >/dev/null 2>&1
"$bin/ringi" keygen --key-id bench-btc --kind bitcoin-taproot --threshold 2 --signers "$(signers 3)" >/dev/null 2>&1
RUST_LOG=error "$bin/ringi" bench --config "$work/coordinator.toml" --keys "$keys" --psbt-key-id bench-btc \
  --store-url "$PG_URL" --iterations "$iterations" --approver "treasury=$work/alice.pem" --approver "compliance=$work/carol.pem"
