#!/usr/bin/env bash
# Usage: softhsm-setup/docker/spend.sh [--from-host]
#
# On the stack up.sh started: a Bitcoin Taproot spend. Creates the
# bitcoin-taproot key demo-btc (2-of-3) unless it exists; builds on the host
# an unsigned PSBT spending a synthetic coin of its P2TR address (ringi-psbt's
# create_spend example) to the allowlisted regtest address; the wallet
# service submits it; treasury (alice) and compliance (carol) approve; every
# signer derives the payment, change and fee itself and signs each input;
# the signed transaction is checked on the host by Bitcoin Core 26's
# consensus code (verify_spend, taproot flags, with the spent output).
# Prints the signed transaction's hex.
#
# --from-host runs the host's ringi binary against the published port, as
# sign.sh does; by default the CLI runs in throwaway containers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
key_id=demo-btc
payee=bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6

from_host=0
if [ "${1:-}" = --from-host ]; then from_host=1; shift; fi
cli_roles "$from_host"

if ! operator keys | grep -qw -- "$key_id"; then
  operator keygen --key-id "$key_id" --threshold 2 --signers signer-1,signer-2,signer-3 \
    --kind bitcoin-taproot >/dev/null
fi
operator pubkey --key-id "$key_id" > "${TMPDIR:-/tmp}/ringi-spend-$$.key"
internal=$(sed -n 's/^internal key *//p' "${TMPDIR:-/tmp}/ringi-spend-$$.key")
output=$(sed -n 's/^output key *//p' "${TMPDIR:-/tmp}/ringi-spend-$$.key")
address=$(sed -n 's/^address *//p' "${TMPDIR:-/tmp}/ringi-spend-$$.key")
rm -f "${TMPDIR:-/tmp}/ringi-spend-$$.key"
echo "key $key_id: output key $output, address $address" >&2

cargo build --quiet --manifest-path "$docker_root/Cargo.toml" -p ringi-psbt --examples
examples=$docker_root/target/debug/examples
coin=$(printf 'docker e2e funding %s' "$(date +%s%N)" | sha256sum | cut -d' ' -f1):0:100000
spent=$(mktemp)
psbt=$("$examples/create_spend" "$internal" "$output" regtest 1000 --coin "$coin" --pay "$payee:60000" 2>"$spent")
id=$(wallet requests submit --key-id "$key_id" --psbt "$psbt" --memo "docker e2e spend")
echo "request $id: PSBT paying 60000 sat to $payee" >&2
operator approve "$id" --department treasury --key-file "$(keyfile alice)" --yes 2>/dev/null >&2
operator approve "$id" --department compliance --key-file "$(keyfile carol)" --yes 2>/dev/null >&2
tx=$(operator requests wait "$id" --timeout-secs 60 --output tx)
"$examples/verify_spend" "$tx" $(cat "$spent") >&2
rm -f "$spent"
echo "$tx"
