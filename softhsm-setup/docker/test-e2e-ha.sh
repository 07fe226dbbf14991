#!/usr/bin/env bash
# Usage: softhsm-setup/docker/test-e2e-ha.sh
#
# End-to-end test of the HA stack (compose.ha.yaml) on a real engine, run by
# softhsm-setup/run-tests.sh after test-e2e.sh. In its own compose project
# (ringi-e2e-ha-PID), coordinators on free loopback ports:
#   1. builds the images (ringi's and PostgreSQL's, both on the locally built
#      base), brings up three signers, PostgreSQL (TLS only, certificate from
#      the stack's CA) and two coordinators on it, runs a 2-of-3 DKG;
#   2. submits RINGI_HA_REQUESTS (40) requests, alternately to each
#      coordinator, and approves them (treasury, then compliance) from the
#      host; the final (compliance) approvals of the first 25% (signed by
#      both coordinators), then of the next 35%, half through
#      each coordinator, while signer-2 and signer-3 are frozen (docker
#      pause), so both coordinators hold signings in flight; SIGKILLs
#      `coordinator`, thaws the signers, approves the rest through
#      coordinator-2;
#   3. reads everything back through the survivor: every request SIGNED,
#      exactly one SIGNED transition each, each signature verified by an
#      independent RFC 9591 verifier, and across both coordinators' logs each
#      request signed exactly once;
#   4. tears down and checks that no container, network or volume is left
#      (and removes its images; the base images stay, caches for the next run).
# Skipped, saying so, only when no Docker engine answers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

if ! docker_engine_answers; then
  echo "docker ha e2e: SKIPPED: no Docker engine (or Compose) answers here ('docker info' failed)"
  exit 0
fi

export RINGI_COMPOSE_PROJECT=ringi-e2e-ha-$$
export RINGI_COMPOSE_FILES=compose.ha.yaml
export RINGI_COORDINATOR_PUBLISH=127.0.0.1: RINGI_COORDINATOR2_PUBLISH=127.0.0.1:
export RINGI_IMAGE=ringi-softhsm:e2e-ha-$$ RINGI_POSTGRES_IMAGE=ringi-postgres:e2e-ha-$$
export RINGI_SIGNING_LEASE_SECS=${RINGI_SIGNING_LEASE_SECS:-10}
export RINGI_DOCKER_BIN_DIR=${RINGI_DOCKER_BIN_DIR:-$docker_root/target/debug}
project=$RINGI_COMPOSE_PROJECT
total=${RINGI_HA_REQUESTS:-40}
work=$(mktemp -d -t ringi-docker-ha.XXXXXX)
e2e_harness "docker ha e2e" "$work" "$RINGI_IMAGE" "$RINGI_POSTGRES_IMAGE"
started=$(date +%s)

if [ ! -x "$RINGI_DOCKER_BIN_DIR/ringi" ] || [ ! -x "$RINGI_DOCKER_BIN_DIR/ringi-signer" ]; then
  cargo build --quiet --manifest-path "$docker_root/Cargo.toml" --bins
fi

echo "docker ha e2e: project $project"
group_key=$("$here/up.sh" 2> "$work/up.err" | tail -n1) || { cat "$work/up.err" >&2; fail "up.sh"; }
[[ "$group_key" =~ ^0[23][0-9a-f]{64}$ ]] || { cat "$work/up.err" >&2; fail "up.sh printed no group key: '$group_key'"; }
for service in coordinator coordinator-2; do
  compose logs --no-color "$service" > "$work/$service.log" 2>&1
  grep -q "coordinator state ready .*database=postgresql host=postgres .*tls=on shared=true" "$work/$service.log" \
    || fail "$service is not on the shared PostgreSQL over TLS"
done
pass "PostgreSQL (TLS, the stack's CA) and two coordinators on it, 2-of-3 DKG, group key $group_key"

# The host's CLI against both published ports.
creds=$work/creds
mkdir -p "$creds"
compose run --rm --no-deps -T --entrypoint ringi-entrypoint cli export-credentials | tar -x -C "$creds"
ports=("$(compose port coordinator 50051)" "$(compose port coordinator-2 50051)")
# as WHO COORDINATOR(0|1) ARGS...
as() {
  local who=$1 c=$2
  shift 2
  RINGI_COORDINATOR=${ports[$c]} RINGI_TLS_CA=$creds/ca.pem RINGI_TLS_CLIENT_CERT=$creds/$who.pem \
    RINGI_TLS_CLIENT_KEY=$creds/$who.key "$RINGI_DOCKER_BIN_DIR/ringi" "$@"
}
# approve I DEPARTMENT KEYFILE COORDINATOR: retried on the other coordinator
# when the call fails (a client whose coordinator died sends it again).
approve() {
  local i=$1 department=$2 approver=$3 c=$4
  as operator "$c" approve "${ids[$i]}" --department "$department" --key-file "$creds/$approver.pem" --yes \
      > "$work/approve-$i-$department.out" 2>&1 \
    || as operator 1 approve "${ids[$i]}" --department "$department" --key-file "$creds/$approver.pem" --yes \
      >> "$work/approve-$i-$department.out" 2>&1 \
    || { cat "$work/approve-$i-$department.out" >&2; return 1; }
}

ids=()
for ((i = 0; i < total; i++)); do
  message=$(printf 'docker ha e2e %s %s' "$i" "$$" | sha256sum | cut -d' ' -f1)
  ids[i]=$(as wallet-service $((i % 2)) requests submit --key-id demo-hot --message-hex "$message" \
             --asset BTC --amount 50000000 --destination bc1qexample --memo "ha $i" 2> "$work/submit.err") \
    || { cat "$work/submit.err" >&2; fail "submit $i to coordinator $((i % 2 + 1))"; }
done
for ((i = 0; i < total; i++)); do
  approve "$i" treasury alice $((i % 2)) || fail "treasury approval of request $i"
done
pass "$total requests submitted and approved by treasury, alternately through each coordinator"

# The first 25% reach their quorum and are signed, by both coordinators. The
# next 35% reach theirs together, half on each coordinator, while
# signer-2 and signer-3 are frozen (docker pause): a signing cannot finish
# (one signer of the 2-of-3 answers), so both coordinators hold signings in
# flight. Then `coordinator` is SIGKILLed and the signers thawed: the
# survivor must finish its own signings and, once their lease lapses, the
# dead one's.
burst=$((total * 6 / 10))
first=$((total / 4))
pids=()
for ((i = 0; i < first; i++)); do
  approve "$i" compliance carol $((i % 2)) &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || fail "a compliance approval failed"; done
compose pause signer-2 signer-3 >/dev/null 2>&1
pids=()
for ((i = first; i < burst; i++)); do
  approve "$i" compliance carol $((i % 2)) &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || fail "a compliance approval failed"; done
sleep 1
as operator 1 requests list --key-id demo-hot --output json > "$work/at-kill.json"
docker kill -s KILL "$(compose ps -q coordinator)" >/dev/null
killed_at=$(date +%s)
compose unpause signer-2 signer-3 >/dev/null 2>&1
[ "$(docker inspect -f '{{.State.Running}}' "$(compose ps -q coordinator)")" = false ] \
  || fail "coordinator running again after SIGKILL"
in_flight=$(python3 -c '
import json, sys
ids = set(sys.argv[2:])
print(sum(1 for r in json.load(open(sys.argv[1])) if r["request_id"] in ids and r["state"] in ("APPROVED", "SIGNING")))
' "$work/at-kill.json" "${ids[@]:first:burst-first}")
[ "$in_flight" -gt 0 ] || fail "no signing in flight when the coordinator was killed"
for ((i = burst; i < total; i++)); do
  approve "$i" compliance carol 1 || fail "compliance approval of request $i through coordinator-2"
done
pass "coordinator SIGKILLed with $in_flight of $((burst - first)) approved requests in flight (signer-2, signer-3 frozen, then thawed); the other $((total - burst)) approved through coordinator-2"

# Everything through the survivor: all SIGNED within the lease and a few
# sweeps, once each, every signature verified.
deadline=$((SECONDS + RINGI_SIGNING_LEASE_SECS + 120))
while :; do
  as operator 1 requests list --key-id demo-hot --output json > "$work/final.json"
  left=$(python3 -c '
import json, sys
ids = set(sys.argv[2:])
views = {r["request_id"]: r for r in json.load(open(sys.argv[1])) if r["request_id"] in ids}
bad = [(i, v["state"]) for i, v in views.items() if v["state"] not in ("PENDING_APPROVAL", "APPROVED", "SIGNING", "SIGNED")]
if bad or len(views) != len(ids):
    sys.exit(f"ended without a signature or missing: {bad} ({len(views)} of {len(ids)} listed)")
print(sum(1 for v in views.values() if v["state"] != "SIGNED"))
' "$work/final.json" "${ids[@]}") || fail "$left"
  [ "$left" = 0 ] && break
  [ "$SECONDS" -lt "$deadline" ] || fail "$left requests not SIGNED $((RINGI_SIGNING_LEASE_SECS + 120)) s after the kill"
  sleep 1
done
all_signed=$(($(date +%s) - killed_at))
python3 - "$work/final.json" "$group_key" "$here/../verify_frost_signature.py" "${ids[@]}" <<'PY' || fail "a request was not signed exactly once with a valid signature"
import importlib.util, json, sys
path, group_key, verifier, ids = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
spec = importlib.util.spec_from_file_location("verifier", verifier)
v = importlib.util.module_from_spec(spec)
spec.loader.exec_module(v)
views = {r["request_id"]: r for r in json.load(open(path))}
for i, rid in enumerate(ids):
    r = views[rid]
    signed = [t for t in r["transitions"] if t["to"] == "SIGNED"]
    signing = [t for t in r["transitions"] if t["to"] == "SIGNING"]
    if len(signed) != 1 or len(signing) != 1:
        sys.exit(f"request {i} ({rid}): transitions {r['transitions']}")
    if not v.verify(bytes.fromhex(group_key), bytes.fromhex(r["message_hex"]), bytes.fromhex(r["signature"])):
        sys.exit(f"request {i} ({rid}): signature does not verify")
PY
pass "all $total SIGNED through the survivor ${all_signed} s after the kill: one SIGNED transition each, every signature verifies"

compose logs --no-color coordinator > "$work/coordinator.log" 2>&1
compose logs --no-color coordinator-2 > "$work/coordinator-2.log" 2>&1
counts=$(python3 - "$work/coordinator.log" "$work/coordinator-2.log" "${ids[@]}" <<'PY'
import re, sys
ids = set(sys.argv[3:])
by = []
seen = {}
for log in sys.argv[1:3]:
    n = 0
    for line in open(log, errors="replace"):
        m = re.search(r"request signed request_id=([0-9a-f]+)", line)
        if m and m.group(1) in ids:
            seen[m.group(1)] = seen.get(m.group(1), 0) + 1
            n += 1
    by.append(n)
twice = [i for i, n in seen.items() if n > 1]
if twice:
    sys.exit(f"signed twice: {twice}")
# (A coordinator killed between recording a signature and logging it leaves
# no line: counted, not a failure; the store's transitions are the record.)
print(by[0], by[1], len(ids) - len(seen))
PY
) || fail "the coordinators' logs do not show each request signed once: $counts"
read -r by_killed by_survivor unlogged <<< "$counts"
pass "no request signed by both coordinators ($by_killed by the killed one before it died, $by_survivor by the survivor, $unlogged unlogged)"

compose --profile cli down --volumes --remove-orphans >/dev/null 2>&1
left=$(compose_leftovers "$project")
[ -z "$left" ] || fail "left behind after teardown: $left"
pass "teardown left no container, network or volume"

echo "docker ha e2e: $checks checks passed in $(($(date +%s) - started)) s"
