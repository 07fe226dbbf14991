#!/usr/bin/env bash
# The load and fault suite (docs/reliability.md): three signers on their own
# SoftHSM tokens and a coordinator, every hop on mutual TLS; a 2-of-3 key
# whose policy needs treasury and compliance; then ringi-soak makes N
# signing requests, CONCURRENCY in flight, both approvals of each sent at
# once, while signer-1 and the coordinator are each killed -9 KILLS times
# at random points and restarted. It exits non-zero, naming the check and
# the requests, unless every request ended SIGNED exactly once (driver, API,
# store and audit logs agree), every signature verifies, no R repeats, no
# acknowledged approval is lost and every audit chain verifies; it reports
# throughput, latency and each process's peak RSS.
#
# Usage: softhsm-setup/soak.sh N CONCURRENCY [KILLS]     (KILLS: default 2)
#   RINGI_SOAK_RELEASE=1          release build (the big run; debug figures mean little)
#   RINGI_SOAK_REQUEST_TIMEOUT=S  submission to terminal state, at most (default 60 s)
#   RINGI_SOAK_KILL=NAMES         the processes to kill, comma-separated (default
#                                 signer-1,coordinator; e.g. only signer-1 to tell faults apart)
#   RINGI_SOAK_KEEP=1             keep the work directory even when every check passed
#                                 (it is always kept when one failed)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

usage="usage: softhsm-setup/soak.sh N CONCURRENCY [KILLS]"
n=${1:?$usage}
concurrency=${2:?$usage}
kills=${3:-2}

"$here/install-deps.sh"
profile=debug
build=(cargo build --quiet --manifest-path "$root/Cargo.toml")
if [ "${RINGI_SOAK_RELEASE:-}" = 1 ]; then
  profile=release
  build+=(--release)
fi
# The binaries as shipped, then the driver (not a default member).
"${build[@]}" --bins
"${build[@]}" -p ringi-soak
bin="$root/target/$profile"

work=$(mktemp -d -t ringi-soak.XXXXXX)
PIDS=()
status=1
cleanup() {
  local f pid live=()
  # The instances the driver restarted are not this shell's children:
  # stopped by the pids their start scripts wrote.
  for f in "$work"/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null && live+=("$pid")
  done
  stop_stack
  for pid in "${live[@]}"; do
    for _ in $(seq 100); do
      case $(sed -n 's/^State:\s*\(.\).*/\1/p' "/proc/$pid/status" 2>/dev/null || true) in
        ''|Z|X) break ;;
      esac
      sleep 0.1
    done
  done
  if [ "$status" = 0 ] && [ "${RINGI_SOAK_KEEP:-}" != 1 ]; then
    rm -rf "$work"
  else
    echo "soak: logs, audit logs and records.jsonl kept in $work" >&2
  fi
}
trap cleanup EXIT

"$bin/ringi" approver-key generate --out "$work/alice.pem" > "$work/alice.pub" 2>/dev/null
"$bin/ringi" approver-key generate --out "$work/carol.pem" > "$work/carol.pub" 2>/dev/null
# Requests and approvals outlive any run (a day; approvals may last 7 days).
cat > "$work/policy.toml" <<TOML
version = 1
[[departments]]
name = "treasury"
approvers = [{ name = "alice", key = "$(cat "$work/alice.pub")" }]
[[departments]]
name = "compliance"
approvers = [{ name = "carol", key = "$(cat "$work/carol.pub")" }]
[keys.soak]
request_ttl_secs = 86400
approval_ttl_secs = 86400
require = { treasury = 1, compliance = 1 }
TOML

start_stack "$bin" "$work" 3 "$work/policy.toml" tls > "$work/setup.log" 2>&1
"$bin/ringi" keygen --key-id soak --threshold 2 --signers signer-1,signer-2,signer-3 >/dev/null 2>>"$work/setup.log"

# start_script NAME STDOUT STDERR SETUP COMMAND: writes $work/start-NAME.sh,
# what the driver runs to restart NAME: SETUP, then COMMAND in the
# background with its output appended to STDOUT and STDERR and its pid in
# $work/NAME.pid; it returns once COMMAND prints one more "listening on"
# line, and fails if it dies first or takes 30 s.
start_script() {
  local name=$1 out=$2 err=$3 setup=$4 command=$5
  cat > "$work/start-$name.sh" <<SCRIPT
#!/usr/bin/env bash
# Starts $name for the soak run (written by softhsm-setup/soak.sh).
set -euo pipefail
$setup
before=\$(grep -c 'listening on' '$out' 2>/dev/null || true)
$command >> '$out' 2>> '$err' &
pid=\$!
echo "\$pid" > '$work/$name.pid'
for _ in \$(seq 300); do
  [ "\$(grep -c 'listening on' '$out' || true)" -gt "\$before" ] && exit 0
  case \$(sed -n 's/^State:\s*\(.\).*/\1/p' "/proc/\$pid/status" 2>/dev/null || true) in
    ''|Z|X) echo "$name exited while starting; see $err" >&2; exit 1 ;;
  esac
  sleep 0.1
done
echo "$name not listening after 30 s; see $err" >&2
exit 1
SCRIPT
}

# Each process restarts as it first started, on the address it got then
# (the coordinator dials the signers there, the driver the coordinator).
peers=signer-1,signer-2,signer-3
for i in 1 2 3; do
  line=$(wait_for_line "$work/signer-$i/stdout" 'listening on' 1)
  start_script "signer-$i" "$work/signer-$i/stdout" "$work/signer-$i/log" \
    ". '$work/signer-$i/env'
export RINGI_TLS_CERT='$work/certs/signer-$i.pem' RINGI_TLS_CA='$work/certs/ca.pem' RINGI_DKG_PEERS=$peers" \
    "'$bin/ringi-signer' serve --listen '${line##* }' --policy-file '$work/policy.toml'"
  echo "${SIGNER_PIDS[$((i - 1))]}" > "$work/signer-$i.pid"
done
sed -i "s|^listen = .*|listen = \"$RINGI_COORDINATOR\"|" "$work/coordinator.toml"
start_script coordinator "$work/coordinator.stdout" "$work/coordinator.log" "" \
  "'$bin/ringi' serve --config '$work/coordinator.toml'"
echo "${PIDS[3]}" > "$work/coordinator.pid"
# From here on every process is known by its pid file; the shell forgets
# its jobs (it would report each one the driver kills).
disown -a
PIDS=()

echo "soak: stack up in $work ($profile build, $SECONDS s since the start)" >&2
set +e
"$bin/ringi-soak" --key-id soak --requests "$n" --concurrency "$concurrency" --kills "$kills" \
  --approver "treasury=$work/alice.pem" --approver "compliance=$work/carol.pem" \
  --work "$work" --process signer-1,signer-2,signer-3,coordinator --kill "${RINGI_SOAK_KILL:-signer-1,coordinator}" \
  --request-timeout-secs "${RINGI_SOAK_REQUEST_TIMEOUT:-60}" \
  --coordinator-audit "$work/coordinator/audit.jsonl" \
  --signer-audit "signer-1=$work/signer-1/data/audit.jsonl" \
  --signer-audit "signer-2=$work/signer-2/data/audit.jsonl" \
  --signer-audit "signer-3=$work/signer-3/data/audit.jsonl" \
  --records "$work/records.jsonl"
status=$?
set -e
exit "$status"
