#!/usr/bin/env bash
# Usage: softhsm-setup/docker/test-e2e.sh
#
# End-to-end test of the Docker stack on a real engine (run by
# softhsm-setup/run-tests.sh, hence by .ci/run). In its own compose project
# (ringi-e2e-PID) with the coordinator on a free loopback port:
#   1. builds the image (locally built base, the binaries the test run built),
#      brings the stack up, runs a 2-of-3 DKG; signer-1 and signer-2 keep
#      their shares in SoftHSM2 tokens their entrypoints create in volumes,
#      signer-3 in a token of "another" PKCS#11 module, initialised
#      beforehand by its owner (SoftHSM2's library copied under another name
#      and mounted from the host, as compose.other-module.yaml documents);
#   2. signs a request approved by two departments, from a CLI container and
#      from the host; every signature goes through an independent verifier;
#      creates a bitcoin-taproot key and signs a PSBT spending its coin,
#      checked by Bitcoin Core's consensus code (spend.sh);
#   3. stops signer-1 and signs with the other two; restarts it and signs with
#      signer-1 and signer-2;
#   4. `down` without --volumes and up again: the same key, from the same
#      tokens, signs (with signer-1 and signer-3);
#   5. checks that the signers are unreachable from outside the private
#      network, that no log line holds a token PIN, and that SIGHUP (through
#      the containers' init) makes a signer and the coordinator reload their
#      certificates;
#   6. tears down and checks that no container, network or volume is left
#      (and removes its image; the base image stays, a cache for the next run).
# Skipped, saying so, only when no Docker engine answers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

if ! docker_engine_answers; then
  echo "docker e2e: SKIPPED: no Docker engine (or Compose) answers here ('docker info' failed)"
  exit 0
fi

export RINGI_COMPOSE_PROJECT=ringi-e2e-$$
export RINGI_COORDINATOR_PUBLISH=127.0.0.1:
export RINGI_IMAGE=ringi-softhsm:e2e-$$
export RINGI_DOCKER_BIN_DIR=${RINGI_DOCKER_BIN_DIR:-$docker_root/target/debug}
project=$RINGI_COMPOSE_PROJECT
work=$(mktemp -d -t ringi-docker-e2e.XXXXXX)
e2e_harness "docker e2e" "$work" "$RINGI_IMAGE"

if [ ! -x "$RINGI_DOCKER_BIN_DIR/ringi" ] || [ ! -x "$RINGI_DOCKER_BIN_DIR/ringi-signer" ]; then
  cargo build --quiet --manifest-path "$docker_root/Cargo.toml" --bins
fi

# signer-3's module: a token initialised on the host by its "owner", the
# module under a vendor-like name, the PIN as a compose secret.
. "$here/../lib.sh"
"$here/../install-deps.sh" >/dev/null
other=$work/other-module
softhsm_token "$other" vendor-signer-3
mv "$other/pin" "$work/signer-3.pin"
mv "$other/so-pin" "$work/signer-3.so-pin"
mv "$other/softhsm2.conf" "$work/host-softhsm2.conf"
cp "$(softhsm_module)" "$other/libvendor-pkcs11.so"
printf 'directories.tokendir = /opt/pkcs11/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' > "$other/softhsm2.conf"
echo "SOFTHSM2_CONF=/opt/pkcs11/softhsm2.conf" > "$work/signer-3-module.env"
# The image's user (uid 10001) reads the PIN and writes the token files.
chown -R 10001:10001 "$other" "$work/signer-3.pin" 2>/dev/null \
  || chmod -R a+rwX "$other" "$work/signer-3.pin"
export SIGNER3_PKCS11_DIR=$other SIGNER3_PKCS11_MODULE=/opt/pkcs11/libvendor-pkcs11.so \
  SIGNER3_TOKEN_LABEL=vendor-signer-3 SIGNER3_PIN_FILE=$work/signer-3.pin \
  SIGNER3_MODULE_ENV=$work/signer-3-module.env RINGI_COMPOSE_FILES=compose.other-module.yaml

# sign LABEL [sign.sh args]: a signed request, verified against the group key.
sign() {
  local label=$1 text signature
  shift
  text="docker e2e $label $(date +%s%N)"
  signature=$("$here/sign.sh" "$@" "$text" 2> "$work/sign.err") \
    || { cat "$work/sign.err" >&2; fail "$label: no signature"; }
  python3 "$here/../verify_frost_signature.py" "$group_key" \
    "$(printf '%s' "$text" | sha256sum | cut -d' ' -f1)" "$signature" >/dev/null \
    || fail "$label: signature does not verify under $group_key"
  pass "$label: signature verifies under the group key"
}

running() {
  docker inspect -f '{{.State.Running}}' "$(compose ps -q "$1")" 2>/dev/null
}

echo "docker e2e: project $project"
group_key=$("$here/up.sh" 2> "$work/up.err" | tail -n1) || { cat "$work/up.err" >&2; fail "up.sh"; }
[[ "$group_key" =~ ^0[23][0-9a-f]{64}$ ]] || { cat "$work/up.err" >&2; fail "up.sh printed no group key: '$group_key'"; }
pass "stack up over mutual TLS, 2-of-3 DKG, group key $group_key"
# (Output is captured before grep reads it: with pipefail, `grep -q` quitting
# early would fail the pipeline with SIGPIPE.)
compose logs --no-color signer-3 > "$work/signer-3.log" 2>&1
grep -qF "using PKCS#11 module /opt/pkcs11/libvendor-pkcs11.so, token vendor-signer-3" "$work/signer-3.log" \
  || fail "signer-3 did not use the other module"
SOFTHSM2_CONF=$work/host-softhsm2.conf pkcs11-tool --module "$(softhsm_module)" --token-label vendor-signer-3 \
  --login --pin "$(cat "$work/signer-3.pin")" --list-objects > "$work/signer-3.objects" 2>/dev/null
grep -q "ringi-share-kek" "$work/signer-3.objects" || fail "no ringi key in signer-3's token of the other module"
grep -qF 'DKG peers must attest their transport keys name=signer-3 peers=Only(["signer-1", "signer-2", "signer-3"])' \
  "$work/signer-3.log" || fail "signer-3 does not pin its DKG peers"
pass "signer-3 serves from a token of another PKCS#11 module (mounted, PIN as a secret)"

sign "approved by treasury and compliance, from a CLI container"
sign "from the host over the published port" --from-host

# A Bitcoin Taproot key and a PSBT spend, checked by Bitcoin Core's
# consensus code on the host.
"$here/spend.sh" > "$work/spend.tx" 2> "$work/spend.err" \
  || { cat "$work/spend.err" >&2; fail "taproot PSBT spend"; }
grep -q "^consensus: valid (1 inputs" "$work/spend.err" || { cat "$work/spend.err" >&2; fail "spend not checked by consensus"; }
pass "a Taproot PSBT spend, approved and signed, is valid under Bitcoin Core's consensus code"

compose stop signer-1 >/dev/null 2>&1
[ "$(running signer-1)" = false ] || fail "signer-1 still running after stop"
sign "signer-1 stopped, signed by signer-2 and signer-3"

compose start signer-1 >/dev/null 2>&1
wait_healthy signer-1 120 || fail "signer-1 not healthy after restart"
RINGI_SIGN_SIGNERS=signer-1,signer-2 sign "signer-1 restarted, signed by signer-1 and signer-2"

compose --profile cli down >/dev/null 2>&1
[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")" ] || fail "containers left after down"
[ -n "$(docker volume ls -q --filter "label=com.docker.compose.project=$project")" ] || fail "volumes gone after down"
again=$("$here/up.sh" 2> "$work/up.err" | tail -n1) || { cat "$work/up.err" >&2; fail "up.sh after down"; }
grep -q "key demo-hot exists" "$work/up.err" || fail "up.sh ran a new DKG after down/up"
[ "$again" = "$group_key" ] || fail "group key changed across down/up: $again"
RINGI_SIGN_SIGNERS=signer-1,signer-3 sign "after down and up, the same tokens sign (signer-1 and signer-3)"
RINGI_SIGN_SIGNERS=signer-2,signer-3 sign "after down and up, signer-2 and signer-3 sign too"

# The signers are on an internal network: a container outside it (the CLI's)
# reaches the coordinator but cannot even resolve them.
ringi_cli health >/dev/null 2>&1 || fail "the coordinator's health check fails from the CLI container"
if ringi_cli health --address signer-1:50051 --server-name signer-1 >/dev/null 2>&1; then
  fail "signer-1 answered from outside the private network"
fi
pass "signers unreachable from outside the private network"

compose logs --no-color > "$work/logs" 2>&1
pins=("$(cat "$work/signer-3.pin")" "$(cat "$work/signer-3.so-pin")")
for i in 1 2; do
  for pin_file in pin so-pin; do
    pins+=("$(compose exec -T "signer-$i" cat "/var/lib/ringi/token/$pin_file")")
  done
done
for pin in "${pins[@]}"; do
  [ ${#pin} -ge 16 ] || fail "a PIN file is missing or short"
  if grep -qF -- "$pin" "$work/logs"; then fail "a token PIN appears in the logs"; fi
done
pass "no token PIN in any container's log"

# SIGHUP reaches the servers through the container's init: they re-read
# their certificates.
compose kill -s HUP signer-2 coordinator >/dev/null 2>&1
for service in signer-2 coordinator; do
  reloaded=0
  for _ in $(seq 50); do
    compose logs --no-color "$service" > "$work/$service.log" 2>&1
    if grep -q "TLS certificates reloaded" "$work/$service.log"; then reloaded=1; break; fi
    sleep 0.2
  done
  [ "$reloaded" = 1 ] || fail "$service did not reload its certificates on SIGHUP"
done
pass "SIGHUP reloads the certificates of a signer and the coordinator"

compose --profile cli down --volumes --remove-orphans >/dev/null 2>&1
left=$(compose_leftovers "$project")
[ -z "$left" ] || fail "left behind after teardown: $left"
pass "teardown left no container, network or volume"

echo "docker e2e: $checks checks passed"
