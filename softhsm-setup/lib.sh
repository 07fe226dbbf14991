# Shared helpers for the softhsm-setup scripts (sourced, not run).

# Path of the SoftHSM2 PKCS#11 module.
softhsm_module() {
  local candidate
  for candidate in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
                   /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    if [ -f "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  dpkg -L softhsm2 2>/dev/null | grep -m1 'libsofthsm2\.so$' && return 0
  echo "softhsm-setup: libsofthsm2.so not found; run softhsm-setup/install-deps.sh" >&2
  return 1
}

# A random PIN: 16 hex digits from the OS RNG.
random_pin() {
  od -An -N8 -tx1 /dev/urandom | tr -d ' \n'
}

# wait_for_line FILE PATTERN SECONDS: waits until FILE has a line matching
# PATTERN and prints it.
wait_for_line() {
  local file=$1 pattern=$2 seconds=$3 i line
  for ((i = 0; i < seconds * 10; i++)); do
    line=$(grep -m1 -E "$pattern" "$file" 2>/dev/null || true)
    if [ -n "$line" ]; then echo "$line"; return 0; fi
    sleep 0.1
  done
  echo "softhsm-setup: timed out waiting for '$pattern' in $file" >&2
  return 1
}

# start_stack BIN_DIR WORK_DIR COUNT POLICY_FILE: creates COUNT tokens under
# WORK_DIR, initialises and starts one ringi-signer per token, each pinned to
# POLICY_FILE, and a coordinator that knows them all, on loopback ports chosen
# by the OS. Sets:
#   PIDS (all started processes), SIGNER_PIDS, RINGI_COORDINATOR (exported).
start_stack() {
  local bin=$1 work=$2 count=$3 policy=$4 i line here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  PIDS=()
  "$here/init-tokens.sh" "$work" "$count"
  for ((i = 1; i <= count; i++)); do
    (. "$work/signer-$i/env"; "$bin/ringi-signer" init)
    (. "$work/signer-$i/env"; exec "$bin/ringi-signer" serve --listen 127.0.0.1:0 --policy-file "$policy") \
      > "$work/signer-$i/stdout" 2> "$work/signer-$i/log" &
    PIDS+=($!)
  done
  SIGNER_PIDS=("${PIDS[@]}")
  {
    printf 'listen = "127.0.0.1:0"\ndata_dir = "%s"\npolicy_file = "%s"\n' "$work/coordinator" "$policy"
    for ((i = 1; i <= count; i++)); do
      line=$(wait_for_line "$work/signer-$i/stdout" 'listening on' 20)
      printf '\n[[signers]]\nname = "signer-%d"\naddress = "%s"\nidentifier = %d\n' "$i" "${line##* }" "$i"
      echo "signer-$i listening on ${line##* }" >&2
    done
  } > "$work/coordinator.toml"
  "$bin/ringi" serve --config "$work/coordinator.toml" > "$work/coordinator.stdout" 2> "$work/coordinator.log" &
  PIDS+=($!)
  line=$(wait_for_line "$work/coordinator.stdout" 'listening on' 20)
  export RINGI_COORDINATOR="${line##* }"
  echo "coordinator listening on $RINGI_COORDINATOR (config $work/coordinator.toml)" >&2
}

# stop_stack: SIGTERM to every process in PIDS, then wait for them.
stop_stack() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
