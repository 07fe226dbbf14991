#!/usr/bin/env bash
# Throughput of the whole stack under load (issue 13), release build: three
# signer processes on their own SoftHSM tokens and a coordinator, every hop
# on mutual TLS, as softhsm-setup/bench.sh starts them; a 2-of-3 key whose
# policy needs one treasury and one compliance approval. Then, N requests
# with C in flight each time, through the public API only:
#   1. `ringi bench-load --mode flow`: submit (as wallet-service), both
#      approvals (as operator), watch until signed;
#   2. `ringi bench-load --mode signing`: the treasury approval of every
#      request recorded first (not timed), then the compliance approvals
#      sent and each request watched until signed;
#   3. examples/python/load_client.py: the flow of 1 from an independent
#      grpcio asyncio client.
# Each prints requests (or signatures) per second and latency percentiles;
# 1 and 2 also the CPU milliseconds per request of the coordinator and of
# each signer and their peak RSS, and this script prints the same CPU
# figures for 3 (read from /proc around it). Every CPU figure is also given
# as a multiple of the in-process FROST floor of a 2-of-3 key, measured on
# the idle stack just before and just after each part (the machine's speed
# is in every figure; docs/bench.md; the lower of the two is used), and
# each server process's write calls and bytes written per request (from
# /proc/PID/io, which do not depend on the machine's speed). Every
# signature is verified under the key's group key; the script exits
# non-zero if any request of any part did not end SIGNED with a valid
# signature.
#
# Usage: [RINGI_BENCH_BIN=DIR] softhsm-setup/bench-load.sh [N] [C]     (default 1000 64)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

n=${1:-1000}
c=${2:-64}
"$here/install-deps.sh"
# RINGI_BENCH_BIN: a directory of release binaries to run instead of this
# tree's (an A/B comparison of two builds, docs/bench.md), not rebuilt.
if [ -n "${RINGI_BENCH_BIN:-}" ]; then
  bin=$RINGI_BENCH_BIN
else
  cargo build --quiet --release --manifest-path "$root/Cargo.toml" --bins
  bin="$root/target/release"
fi
# The Python client's packages, in the virtualenv run-tests.sh keeps.
py="$root/target/python/bin/python"
if [ ! -x "$py" ] || ! "$py" -c 'import grpc, grpc_tools, cryptography' 2>/dev/null; then
  python3 -m venv "$root/target/python"
  "$root/target/python/bin/pip" install --quiet -r "$root/examples/python/requirements.txt"
fi

work=$(mktemp -d -t ringi-bench-load.XXXXXX)
PIDS=()
trap 'stop_stack; rm -rf "$work"' EXIT
bench_policy "$bin" "$work" load
start_stack "$bin" "$work" 3 "$work/policy.toml" tls 2>/dev/null >/dev/null
coordinator_pid=${PIDS[-1]}
"$bin/ringi" keygen --key-id load --threshold 2 --signers signer-1,signer-2,signer-3 >/dev/null 2>&1

approvers=(--approver "treasury=$work/alice.pem" --approver "compliance=$work/carol.pem")
wallet=(--wallet-tls-cert "$work/certs/wallet-service.pem" --wallet-tls-key "$work/certs/wallet-service.key")
pids=(--coordinator-pid "$coordinator_pid")
for i in "${!SIGNER_PIDS[@]}"; do
  pids+=(--signer-pid "signer-$((i + 1))=${SIGNER_PIDS[$i]}")
done

# cpu_ticks PID: utime + stime of PID so far, in clock ticks (fields 14 and
# 15 of /proc/PID/stat, counted after the command name's closing paren).
cpu_ticks() {
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
# io_counters PID: write calls, bytes handed to them, bytes written to
# storage so far (syscw, wchar, write_bytes of /proc/PID/io), as ringi
# bench-load reads them.
io_counters() {
  awk -F': ' '/^syscw/ { c = $2 } /^wchar/ { w = $2 } /^write_bytes/ { d = $2 } END { print c, w, d }' "/proc/$1/io"
}
# peak_rss_mib PID: VmHWM, MiB.
peak_rss_mib() {
  awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# floor_ms: the in-process FROST floor's p50 (ms), measured now by the CLI.
floor_ms() {
  RUST_LOG=error "$bin/ringi" bench-load --floor-only --key-id load "${approvers[@]}" "${wallet[@]}" |
    sed -n 's/^in-process FROST floor.*: \([0-9.]*\) ms before.*/\1/p'
}

status=0
echo "== 1. ringi bench-load --mode flow: $n requests, $c in flight"
RUST_LOG=error "$bin/ringi" bench-load --mode flow --key-id load -n "$n" -c "$c" \
  "${approvers[@]}" "${wallet[@]}" "${pids[@]}" | tee "$work/flow.out" || status=1
echo
echo "== 2. ringi bench-load --mode signing: $n requests, $c in flight"
RUST_LOG=error "$bin/ringi" bench-load --mode signing --key-id load -n "$n" -c "$c" \
  "${approvers[@]}" "${wallet[@]}" "${pids[@]}" | tee "$work/signing.out" || status=1
echo
echo "== 3. examples/python/load_client.py (flow): $n requests, $c in flight"
watched=("$coordinator_pid" "${SIGNER_PIDS[@]}")
names=(coordinator)
for i in "${!SIGNER_PIDS[@]}"; do names+=("signer-$((i + 1))"); done
floor_before=$(floor_ms || true)
before=()
io_before=()
for pid in "${watched[@]}"; do
  before+=("$(cpu_ticks "$pid")")
  io_before+=("$(io_counters "$pid")")
done
"$py" "$root/examples/python/load_client.py" --key-id load -n "$n" -c "$c" \
  "${approvers[@]}" "${wallet[@]}" | tee "$work/python.out" || status=1
after=()
io_after=()
for pid in "${watched[@]}"; do
  after+=("$(cpu_ticks "$pid")")
  io_after+=("$(io_counters "$pid")")
done
# The lower of the two (as ringi bench-load takes it): the signers refill
# their nonce pools after a burst, which can only slow a measurement down.
floor_after=$(floor_ms || true)
floor=$(awk -v a="${floor_before:-0}" -v b="${floor_after:-0}" \
  'BEGIN { if (a > 0 && b > 0) print (a < b ? a : b); else print (a > b ? a : b) }')
hz=$(getconf CLK_TCK)
# cpu_row NAME PID TICKS RSS: one row of the CPU table (PID and RSS may be
# empty, as for the totals).
cpu_row() {
  awk -v name="$1" -v pid="$2" -v t="$3" -v rss="$4" -v hz="$hz" -v n="$n" -v f="$floor" 'BEGIN {
    ms = t / hz * 1000 / n
    printf "%-20s %8s %10.2f %12.2f %14s %10s\n", name, pid, t / hz, ms, rss, (f > 0 ? sprintf("%.2f", ms / f) : "?") }'
}
{
printf '%-20s %8s %10s %12s %14s %10s\n' process pid "cpu s" "cpu ms/req" "peak RSS MiB" floors/req
server=0
signers=0
for i in "${!watched[@]}"; do
  pid=${watched[$i]}
  used=$(( after[i] - before[i] ))
  server=$((server + used))
  [ "$i" -gt 0 ] && signers=$((signers + used))
  cpu_row "${names[$i]}" "$pid" "$used" "$(peak_rss_mib "$pid")"
done
cpu_row "signers total" "" "$signers" ""
cpu_row "server total" "" "$server" ""
echo "in-process FROST floor 2-of-3 (p50, stack idle): ${floor_before:-?} ms before, ${floor_after:-?} ms after"
printf '%-20s %12s %14s %14s\n' "I/O per request" "write calls" "written KiB" "to disk KiB"
for i in "${!watched[@]}"; do
  awk -v name="${names[$i]}" -v b="${io_before[$i]}" -v a="${io_after[$i]}" -v n="$n" 'BEGIN {
    split(b, x, " "); split(a, y, " ")
    printf "%-20s %12.1f %14.2f %14.2f\n", name, (y[1] - x[1]) / n, (y[2] - x[2]) / n / 1024, (y[3] - x[3]) / n / 1024 }'
done
} | tee "$work/python-cpu.out"

echo
echo "== summary ($n requests, $c in flight, 2-of-3, mutual TLS, SoftHSM, release)"
for part in flow signing python; do
  printf '%-8s %s\n' "$part" "$(grep -m1 '^throughput' "$work/$part.out" || echo 'no figure')"
done
# Per request of each part: CPU in ms and in floors of the same part, and
# the coordinator's write calls and bytes written to storage.
for part in flow:flow.out signing:signing.out python:python-cpu.out; do
  awk -v part="${part%%:*}" '/^I\/O per request/ { io = 1 }
    /^coordinator / && !io { co = $4 " ms = " $6 " floors" }
    /^coordinator / && io { w = $2 " write calls, " $4 " KiB to disk" }
    /^server total/ { sv = $4 " ms = " $5 " floors" }
    END { printf "%-8s coordinator %s (%s); server %s\n", part, co, w, sv }' "$work/${part##*:}"
done
exit "$status"
