#!/usr/bin/env bash
# Usage: softhsm-setup/docker/sign.sh [--from-host] [MESSAGE]
#
# On the stack up.sh started: the wallet service submits a withdrawal request
# for key demo-hot (the message to sign is SHA-256 of MESSAGE), treasury
# (alice) and compliance (carol) approve it with their development key files,
# the coordinator runs FROST with two of the three signers, and the signature
# is checked by an independent RFC 9591 verifier. Prints the signature.
#
# By default every command runs in a throwaway CLI container on the stack's
# network. --from-host runs the host's ringi binary instead, against the
# coordinator's published port, with credentials copied out of the stack into
# a temporary directory (removed afterwards).
#
# RINGI_SIGN_SIGNERS=signer-1,signer-3 routes the signing to those signers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
key_id=${RINGI_KEY_ID:-demo-hot}

from_host=0
if [ "${1:-}" = --from-host ]; then from_host=1; shift; fi
text=${1:-withdraw 0.5 BTC to bc1qexample $(date +%s%N)}
message=$(printf '%s' "$text" | sha256sum | cut -d' ' -f1)

cli_roles "$from_host"

route=()
if [ -n "${RINGI_SIGN_SIGNERS:-}" ]; then route=(--signers "$RINGI_SIGN_SIGNERS"); fi
id=$(wallet requests submit --key-id "$key_id" --message-hex "$message" --asset BTC \
       --amount 50000000 --destination bc1qexample --memo "$text" "${route[@]}")
echo "request $id: sign sha256('$text') = $message" >&2
# (The CLI warns that key files are for development only; the approvers' keys
# belong in tokens in production, see docs/approvals.md.)
operator approve "$id" --department treasury --key-file "$(keyfile alice)" --yes 2>/dev/null >&2
operator approve "$id" --department compliance --key-file "$(keyfile carol)" --yes 2>/dev/null >&2
signature=$(operator requests wait "$id" --timeout-secs 60)
group_key=$(operator pubkey --key-id "$key_id")
echo "group key $group_key" >&2
echo "signature $signature" >&2
python3 "$here/../verify_frost_signature.py" "$group_key" "$message" "$signature" >&2
echo "$signature"
