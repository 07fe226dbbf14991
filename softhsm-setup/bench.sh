#!/usr/bin/env bash
# Latency of one 2-of-3 signing over the real stack (SoftHSM tokens, three
# signer processes checking two department approvals, gRPC over mutual TLS
# on loopback) next to the in-process FROST floor, and the cost of a new TLS
# connection (handshake signed in the signer's token) versus a call on a
# reused one, and PSBT requests on a bitcoin-taproot key (its floor, the
# derivation, the stack), all measured in the same run. Release build: figures from debug
# builds mean nothing.
#
# Usage: softhsm-setup/bench.sh [ITERATIONS] [tls|plain]   (default 500 tls)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

iterations=${1:-500}
mode=${2:-tls}
[ "$mode" = plain ] && mode=""
"$here/install-deps.sh"
cargo build --quiet --release --manifest-path "$root/Cargo.toml" --bins
bin="$root/target/release"
work=$(mktemp -d -t ringi-bench.XXXXXX)
PIDS=()
trap 'stop_stack; rm -rf "$work"' EXIT
alice=$("$bin/ringi" approver-key generate --out "$work/alice.pem" 2>/dev/null)
carol=$("$bin/ringi" approver-key generate --out "$work/carol.pem" 2>/dev/null)
cat > "$work/policy.toml" <<TOML
version = 1
[[departments]]
name = "treasury"
approvers = [{ name = "alice", key = "$alice" }]
[[departments]]
name = "compliance"
approvers = [{ name = "carol", key = "$carol" }]
[keys.bench]
request_ttl_secs = 3600
approval_ttl_secs = 600
require = { treasury = 1, compliance = 1 }
[keys.bench-btc]
request_ttl_secs = 3600
approval_ttl_secs = 600
require = { treasury = 1, compliance = 1 }
network = "regtest"
TOML
start_stack "$bin" "$work" 3 "$work/policy.toml" $mode 2>/dev/null >/dev/null
"$bin/ringi" keygen --key-id bench --threshold 2 --signers signer-1,signer-2,signer-3 >/dev/null 2>&1
"$bin/ringi" keygen --key-id bench-btc --kind bitcoin-taproot --threshold 2 --signers signer-1,signer-2,signer-3 >/dev/null 2>&1
RUST_LOG=error "$bin/ringi" bench --config "$work/coordinator.toml" --key-id bench --psbt-key-id bench-btc \
  --iterations "$iterations" --approver "treasury=$work/alice.pem" --approver "compliance=$work/carol.pem"
