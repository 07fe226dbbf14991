#!/usr/bin/env bash
# The whole flow on SoftHSM, on loopback: 3 signer nodes, each with its own
# token; a coordinator; a 2-of-3 DKG; a signing verified by an independent
# RFC 9591 verifier; a signing with one signer stopped; a clean shutdown.
#
# Usage: softhsm-setup/demo.sh            (work directory: a fresh temp dir)
#        RINGI_DEMO_DIR=DIR softhsm-setup/demo.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

step() { printf '\n== %s\n' "$*"; }

step "build (debug)"
"$here/install-deps.sh"
cargo build --quiet --manifest-path "$root/Cargo.toml" --bins
bin="$root/target/debug"

work=${RINGI_DEMO_DIR:-$(mktemp -d -t ringi-demo.XXXXXX)}
PIDS=()
trap stop_stack EXIT

step "tokens, signers and coordinator: one SoftHSM2 token per signer in $work"
start_stack "$bin" "$work" 3

step "DKG: key demo-hot, 2-of-3"
group_key=$("$bin/ringi" keygen --key-id demo-hot --threshold 2 --signers signer-1,signer-2,signer-3)
echo "group public key: $group_key"

step "sign: SHA-256 of a withdrawal description"
message=$(printf 'withdraw 1.5 BTC to bc1qexample' | sha256sum | cut -d' ' -f1)
signature=$("$bin/ringi" sign --key-id demo-hot --message-hex "$message")
echo "message:   $message"
echo "signature: $signature"

step "verify with an independent RFC 9591 verifier (Python, no shared code)"
python3 "$here/verify_frost_signature.py" "$group_key" "$message" "$signature"

step "stop signer-3; signing goes on with the other two"
kill -TERM "${SIGNER_PIDS[2]}"
wait "${SIGNER_PIDS[2]}" 2>/dev/null || true
signature2=$("$bin/ringi" sign --key-id demo-hot --message-hex "$message")
python3 "$here/verify_frost_signature.py" "$group_key" "$message" "$signature2"

step "the token holds no plaintext share (pkcs11-tool, an independent PKCS#11 client)"
(
  . "$work/signer-1/env"
  pkcs11-tool --module "$RINGI_PKCS11_MODULE" --token-label signer-1 --login --pin "$(cat "$RINGI_PKCS11_PIN_FILE")" --list-objects 2>/dev/null \
    | grep -iE 'object|label|access' | sed 's/^/  /'
)

step "shut down"
stop_stack
echo "demo finished: DKG, two signings (one with a signer down), both verified independently"
