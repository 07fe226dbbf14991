#!/usr/bin/env bash
# The whole flow on SoftHSM, on loopback, every hop on mutual TLS (each
# signer's TLS key inside its token): 3 signer nodes, each with its own
# token; a coordinator; an approval policy with three departments; a 2-of-3
# DKG; a withdrawal request approved by treasury (key file) and compliance
# (key in a SoftHSM token, like a smart card), signed, and verified by an
# independent RFC 9591 verifier; a request vetoed by security; a Bitcoin
# Taproot key and a PSBT spending its coin, whose payment, change and fee
# every signer derives itself, signed into a transaction that Bitcoin Core's
# consensus code accepts; a signing with one signer stopped; a clean
# shutdown.
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
mkdir -p "$work"
PIDS=()
trap stop_stack EXIT

step "approvers: alice (treasury, key file), carol (compliance, SoftHSM token), erin (security, key file)"
alice=$("$bin/ringi" approver-key generate --out "$work/alice.pem" 2>/dev/null)
erin=$("$bin/ringi" approver-key generate --out "$work/erin.pem" 2>/dev/null)
carol_env=$("$here/approver-token.sh" "$work" carol)
carol=$(. "$carol_env"; "$bin/ringi" approver-key show --pkcs11-module "$RINGI_APPROVER_PKCS11_MODULE" --token approver-carol --key-label carol)
echo "alice $alice"
echo "carol $carol"
echo "erin  $erin"

step "policy: demo-hot needs treasury 1 and compliance 1; above 1 BTC also security"
cat > "$work/policy.toml" <<TOML
version = 1

[[departments]]
name = "treasury"
approvers = [{ name = "alice", key = "$alice" }]

[[departments]]
name = "compliance"
approvers = [{ name = "carol", key = "$carol" }]

[[departments]]
name = "security"
approvers = [{ name = "erin", key = "$erin" }]

[keys.demo-hot]
request_ttl_secs = 3600
approval_ttl_secs = 600
require = { treasury = 1, compliance = 1 }
tiers = [{ above = 100000000, require = { treasury = 1, compliance = 1, security = 1 } }]

# A Bitcoin Taproot key on regtest: payments only to the listed address, at
# most 0.01 BTC a request, fees at most 5000 sat and 50 sat/vB.
[keys.demo-btc]
request_ttl_secs = 3600
approval_ttl_secs = 600
require = { treasury = 1, compliance = 1 }
network = "regtest"
fees = { max_sats = 5000, max_sat_per_vbyte = 50 }
limits = { max_amount_per_request = 1000000 }
destinations = { allowed = ["bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6"] }
TOML
echo "policy sha256 $(sha256sum "$work/policy.toml" | cut -d' ' -f1)"

step "tokens, signers and coordinator over mutual TLS: one SoftHSM2 token per signer in $work"
start_stack "$bin" "$work" 3 "$work/policy.toml" tls

step "DKG: key demo-hot, 2-of-3"
group_key=$("$bin/ringi" keygen --key-id demo-hot --threshold 2 --signers signer-1,signer-2,signer-3)
echo "group public key: $group_key"

approve_carol() {
  (. "$carol_env"; "$bin/ringi" approve "$1" --department compliance --yes \
     --pkcs11-module "$RINGI_APPROVER_PKCS11_MODULE" --token approver-carol --key-label carol)
}

step "request: withdraw 0.5 BTC (the message is the transaction's sighash)"
message=$(printf 'withdraw 0.5 BTC to bc1qexample' | sha256sum | cut -d' ' -f1)
as_wallet() {
  RINGI_TLS_CLIENT_CERT="$work/certs/wallet-service.pem" RINGI_TLS_CLIENT_KEY="$work/certs/wallet-service.key" "$bin/ringi" "$@"
}
id=$(as_wallet requests submit --key-id demo-hot --message-hex "$message" --asset BTC \
      --amount 50000000 --destination bc1qexample --memo "exchange rebalance")
"$bin/ringi" requests show "$id"

step "treasury approves (alice, key file), checking the request against her own copy of the policy"
# --yes: a script confirms with the flag (at a terminal, approve asks "Approve? [y/N]").
"$bin/ringi" approve "$id" --department treasury --key-file "$work/alice.pem" \
  --policy "$work/policy.toml" --yes 2>&1 | grep -v WARNING

step "compliance approves (carol, key inside her token); the quorum is met and signing starts"
approve_carol "$id"
signature=$("$bin/ringi" requests wait "$id")
echo "signature: $signature"

step "verify with an independent RFC 9591 verifier (Python, no shared code)"
python3 "$here/verify_frost_signature.py" "$group_key" "$message" "$signature"

step "request above 1 BTC, vetoed by security (erin), her rejection also sent to every signer directly: no signer will sign it, whatever a coordinator does"
id2=$(as_wallet requests submit --key-id demo-hot --message-hex "$(printf 'withdraw 5 BTC' | sha256sum | cut -d' ' -f1)" \
       --asset BTC --amount 500000000 --destination bc1qunknown)
"$bin/ringi" approve "$id2" --department treasury --key-file "$work/alice.pem" --yes 2>/dev/null
# The approver's own list of signers (NAME=ADDRESS), never asked of the coordinator.
signers=""
for i in 1 2 3; do
  line=$(grep -m1 'listening on' "$work/signer-$i/stdout")
  signers+="${signers:+,}signer-$i=${line##* }"
done
"$bin/ringi" reject "$id2" --department security --reason "destination not on the allowlist" --key-file "$work/erin.pem" --yes --signer "$signers" 2>&1 \
  | grep -E 'in force at|signer-[0-9]:' || true
"$bin/ringi" requests show "$id2" | grep -E '^(state|decision)'
"$bin/ringi" holds --signer "$signers"

step "Bitcoin: a bitcoin-taproot key (2-of-3, BIP-340 under its BIP-341 output key)"
"$bin/ringi" keygen --key-id demo-btc --threshold 2 --signers signer-1,signer-2,signer-3 --kind bitcoin-taproot >/dev/null
"$bin/ringi" pubkey --key-id demo-btc
internal_key=$("$bin/ringi" pubkey --key-id demo-btc | sed -n 's/^internal key *//p')
output_key=$("$bin/ringi" pubkey --key-id demo-btc | sed -n 's/^output key *//p')

step "a PSBT spending a (synthetic) 0.001 BTC coin of the key: 0.0006 BTC to an allowlisted address, change back, 1000 sat fee"
cargo build --quiet --manifest-path "$root/Cargo.toml" -p ringi-psbt --examples
coin=$(printf 'demo funding' | sha256sum | cut -d' ' -f1):0:100000
psbt=$("$root/target/debug/examples/create_spend" "$internal_key" "$output_key" regtest 1000 \
        --coin "$coin" --pay bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6:60000 2>"$work/spent")
id4=$(as_wallet requests submit --key-id demo-btc --psbt "$psbt" --memo "cold storage top-up")
echo "approvers see what the transaction pays, derived from it (not declared by the wallet):"
"$bin/ringi" requests show "$id4"

step "treasury and compliance approve; every signer derives the payments and sighashes itself and signs each input"
"$bin/ringi" approve "$id4" --department treasury --key-file "$work/alice.pem" --yes >/dev/null 2>&1
approve_carol "$id4" >/dev/null 2>&1
tx=$("$bin/ringi" requests wait "$id4" --output tx)
echo "signed transaction (for bitcoin-cli sendrawtransaction): $tx"

step "Bitcoin Core 26's consensus code (libbitcoinconsensus, taproot flags) accepts it"
"$root/target/debug/examples/verify_spend" "$tx" $(cat "$work/spent")

step "a PSBT paying an address not on the allowlist is refused at submission (and would be by every signer)"
stranger=$("$root/target/debug/examples/create_spend" "$internal_key" "$output_key" regtest 1000 \
        --coin "$coin" --pay bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080:60000 2>/dev/null)
as_wallet requests submit --key-id demo-btc --psbt "$stranger" 2>&1 | sed 's/^/  /' || true

step "refresh demo-hot's shares (a refresh DKG among its signers): same group key, every share new, the old ones destroyed in the tokens"
refreshed=$("$bin/ringi" keys refresh demo-hot)
[ "$refreshed" = "$group_key" ] || { echo "demo: the refresh changed the group key" >&2; exit 1; }
echo "group public key unchanged: $refreshed"

step "stop signer-3; an approved request is still signed by the other two (with their refreshed shares)"
kill -TERM "${SIGNER_PIDS[2]}"
wait "${SIGNER_PIDS[2]}" 2>/dev/null || true
message3=$(printf 'withdraw 0.1 BTC' | sha256sum | cut -d' ' -f1)
id3=$(as_wallet requests submit --key-id demo-hot --message-hex "$message3" --asset BTC \
       --amount 10000000 --destination bc1qexample)
"$bin/ringi" approve "$id3" --department treasury --key-file "$work/alice.pem" --yes 2>/dev/null
approve_carol "$id3" 2>/dev/null
signature3=$("$bin/ringi" requests wait "$id3")
python3 "$here/verify_frost_signature.py" "$group_key" "$message3" "$signature3"

step "the token holds no plaintext share (pkcs11-tool, an independent PKCS#11 client)"
(
  . "$work/signer-1/env"
  pkcs11-tool --module "$RINGI_PKCS11_MODULE" --token-label signer-1 --login --pin "$(cat "$RINGI_PKCS11_PIN_FILE")" --list-objects 2>/dev/null \
    | grep -iE 'object|label|access' | sed 's/^/  /'
)

step "audit: each signer's hash-chained log, checkpoints signed by its token"
stop_stack
audit_key=$(. "$work/signer-1/env"; "$bin/ringi-signer" info | sed -n 's/^audit_key //p')
"$bin/ringi" audit verify "$work/signer-1/data/audit.jsonl" --checkpoint-key "$audit_key"
"$bin/ringi" audit verify "$work/coordinator/audit.jsonl"

step "shut down"
echo "demo finished over mutual TLS: DKG, approvals by two departments (one on a token), a veto held by every signer, a Taproot PSBT spend valid under Bitcoin Core's consensus code, a share refresh, signing with a signer down, signatures verified independently, audit logs verified"
