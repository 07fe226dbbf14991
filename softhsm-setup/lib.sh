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

# softhsm_token DIR LABEL: creates SoftHSM2 token LABEL with its files in
# DIR/tokens, DIR/softhsm2.conf pointing there, and random user and SO PINs
# in DIR/pin and DIR/so-pin (mode 0600, never printed). DIR/pin appears last:
# once it exists, so does the token. Test tokens only: softhsm2-util takes
# the PINs as arguments for the few milliseconds it runs.
softhsm_token() {
  local dir=$1 label=$2
  mkdir -p "$dir/tokens"
  chmod 700 "$dir" "$dir/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir/tokens" > "$dir/softhsm2.conf"
  (umask 077; random_pin > "$dir/so-pin.tmp"; random_pin > "$dir/pin.tmp")
  SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free --label "$label" \
    --pin "$(cat "$dir/pin.tmp")" --so-pin "$(cat "$dir/so-pin.tmp")" >/dev/null
  mv "$dir/so-pin.tmp" "$dir/so-pin"
  mv "$dir/pin.tmp" "$dir/pin"
}

# Path of the kryoptic PKCS#11 module that build-kryoptic.sh builds; fails,
# naming the script, when it is not built.
kryoptic_module() {
  local here lib
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  lib="$(cd "$here/.." && pwd)/target/kryoptic/libkryoptic_pkcs11.so"
  if [ ! -f "$lib" ]; then
    echo "softhsm-setup: $lib is missing; build it with softhsm-setup/build-kryoptic.sh" >&2
    return 1
  fi
  echo "$lib"
}

# kryoptic_token DIR LABEL: creates kryoptic token LABEL stored in
# DIR/token.sql, DIR/kryoptic.conf (its one slot) pointing there, and
# random user and SO PINs in DIR/pin and DIR/so-pin (mode 0600, never
# printed), initialised through pkcs11-tool (opensc). DIR/pin appears last.
# Test tokens only: pkcs11-tool takes the PINs as arguments for the few
# milliseconds it runs.
kryoptic_token() {
  local dir=$1 label=$2 module
  module=$(kryoptic_module)
  mkdir -p "$dir"
  chmod 700 "$dir"
  printf '[[slots]]\nslot = 1\ndbtype = "sqlite"\ndbargs = "%s"\n' "$dir/token.sql" > "$dir/kryoptic.conf"
  (umask 077; random_pin > "$dir/so-pin.tmp"; random_pin > "$dir/pin.tmp")
  KRYOPTIC_CONF="$dir/kryoptic.conf" pkcs11-tool --module "$module" --slot 1 --init-token \
    --label "$label" --so-pin "$(cat "$dir/so-pin.tmp")" >/dev/null
  KRYOPTIC_CONF="$dir/kryoptic.conf" pkcs11-tool --module "$module" --slot 1 --login --login-type so \
    --so-pin "$(cat "$dir/so-pin.tmp")" --init-pin --pin "$(cat "$dir/pin.tmp")" >/dev/null
  mv "$dir/so-pin.tmp" "$dir/so-pin"
  mv "$dir/pin.tmp" "$dir/pin"
}

# coordinator_config LISTEN DATA_DIR POLICY [CERT KEY CA]: prints a
# coordinator config without its signers; with CERT KEY CA, mutual TLS and
# two clients: `operator` (admin, wallet, approver) and `wallet-service`.
# An empty KEY leaves the key out: it is the coordinator's token's
# ([pkcs11], see coordinator_token).
coordinator_config() {
  printf 'listen = "%s"\ndata_dir = "%s"\npolicy_file = "%s"\n' "$1" "$2" "$3"
  if [ $# -ge 6 ]; then
    printf '\n[tls]\ncert = "%s"\n' "$4"
    if [ -n "$5" ]; then printf 'key = "%s"\n' "$5"; fi
    printf 'ca = "%s"\n' "$6"
    printf '\n[[clients]]\nname = "operator"\nroles = ["admin", "wallet", "approver"]\nkey_ids = ["*"]\n'
    printf '\n[[clients]]\nname = "wallet-service"\nroles = ["wallet"]\nkey_ids = ["*"]\n'
  fi
}

# signer_entry NAME ADDRESS IDENTIFIER: a [[signers]] entry of that config.
signer_entry() {
  printf '\n[[signers]]\nname = "%s"\naddress = "%s"\nidentifier = %d\n' "$1" "$2" "$3"
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

# coordinator_token BIN_DIR DIR: a SoftHSM2 token `coordinator` in DIR
# holding the coordinator's TLS and audit keys (`ringi token init`), its
# [pkcs11] table in DIR/pkcs11.toml and a CSR for its TLS key, made inside
# the token, in DIR/coordinator.csr.
coordinator_token() {
  local bin=$1 dir=$2
  softhsm_token "$dir" coordinator
  printf '\n[pkcs11]\nmodule = "%s"\ntoken_label = "coordinator"\npin_file = "%s"\n' \
    "$(softhsm_module)" "$dir/pin" > "$dir/pkcs11.toml"
  SOFTHSM2_CONF="$dir/softhsm2.conf" "$bin/ringi" token init --config "$dir/pkcs11.toml" >/dev/null
  SOFTHSM2_CONF="$dir/softhsm2.conf" "$bin/ringi" token tls-csr --config "$dir/pkcs11.toml" > "$dir/coordinator.csr"
}

# start_stack BIN_DIR WORK_DIR COUNT POLICY_FILE [tls]: creates COUNT tokens
# under WORK_DIR, initialises and starts one ringi-signer per token, each
# pinned to POLICY_FILE, and a coordinator that knows them all, on ports
# chosen by the OS. With "tls": every hop runs mutual TLS; each signer's TLS
# key (and the coordinator's, in its own token: WORK_DIR/coordinator-token)
# is generated in its token and certified from a CSR the token signs
# (`ringi dev-certs` in WORK_DIR/certs); the CLI presents the `operator`
# identity and wallets `wallet-service`. Sets:
#   PIDS (all started processes), SIGNER_PIDS, RINGI_COORDINATOR (exported),
#   and under TLS the RINGI_TLS_CLIENT_* variables for `operator` and
#   SOFTHSM2_CONF for the coordinator's token (exported).
start_stack() {
  local bin=$1 work=$2 count=$3 policy=$4 tls=${5:-} i line here listen csrs=()
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  PIDS=()
  "$here/init-tokens.sh" "$work" "$count"
  for ((i = 1; i <= count; i++)); do
    (. "$work/signer-$i/env"; "$bin/ringi-signer" init)
    if [ "$tls" = tls ]; then
      (. "$work/signer-$i/env"; "$bin/ringi-signer" tls-csr --name "signer-$i") > "$work/signer-$i/tls.csr"
      csrs+=(--signer-csr "$work/signer-$i/tls.csr")
    fi
  done
  if [ "$tls" = tls ]; then
    # The coordinator's TLS and audit keys in its own token, too. Exported:
    # the coordinator and every tool reading its config (benches, a
    # restart) find that token; each signer sets its own.
    coordinator_token "$bin" "$work/coordinator-token"
    export SOFTHSM2_CONF="$work/coordinator-token/softhsm2.conf"
    "$bin/ringi" dev-certs --out "$work/certs" "${csrs[@]}" \
      --coordinator-csr "$work/coordinator-token/coordinator.csr" --clients operator,wallet-service >/dev/null 2>&1
    echo "certificates: $work/certs (CA; coordinator and signers from their token CSRs; operator, wallet-service)" >&2
  fi
  for ((i = 1; i <= count; i++)); do
    (
      . "$work/signer-$i/env"
      if [ "$tls" = tls ]; then
        export RINGI_TLS_CERT="$work/certs/signer-$i.pem" RINGI_TLS_CA="$work/certs/ca.pem"
        # The only identities this signer runs a DKG with.
        RINGI_DKG_PEERS=$(seq -f 'signer-%g' -s, 1 "$count")
        export RINGI_DKG_PEERS
      fi
      exec "$bin/ringi-signer" serve --listen 127.0.0.1:0 --policy-file "$policy"
    ) > "$work/signer-$i/stdout" 2> "$work/signer-$i/log" &
    PIDS+=($!)
  done
  SIGNER_PIDS=("${PIDS[@]}")
  {
    if [ "$tls" = tls ]; then
      coordinator_config 127.0.0.1:0 "$work/coordinator" "$policy" \
        "$work/certs/coordinator.pem" "" "$work/certs/ca.pem"
    else
      coordinator_config 127.0.0.1:0 "$work/coordinator" "$policy"
    fi
    for ((i = 1; i <= count; i++)); do
      line=$(wait_for_line "$work/signer-$i/stdout" 'listening on' 20)
      listen=${line##* }
      signer_entry "signer-$i" "$listen" "$i"
      echo "signer-$i listening on $listen" >&2
    done
    if [ "$tls" = tls ]; then cat "$work/coordinator-token/pkcs11.toml"; fi
  } > "$work/coordinator.toml"
  "$bin/ringi" serve --config "$work/coordinator.toml" > "$work/coordinator.stdout" 2> "$work/coordinator.log" &
  PIDS+=($!)
  line=$(wait_for_line "$work/coordinator.stdout" 'listening on' 20)
  export RINGI_COORDINATOR="${line##* }"
  if [ "$tls" = tls ]; then
    export RINGI_TLS_CLIENT_CERT="$work/certs/operator.pem" RINGI_TLS_CLIENT_KEY="$work/certs/operator.key" \
           RINGI_TLS_CA="$work/certs/ca.pem"
    echo "coordinator listening on $RINGI_COORDINATOR over mutual TLS (config $work/coordinator.toml)" >&2
  else
    echo "coordinator listening on $RINGI_COORDINATOR (config $work/coordinator.toml)" >&2
  fi
}

# stop_stack: SIGTERM to every process in PIDS, then wait for them.
stop_stack() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}

# bench_policy BIN_DIR WORK_DIR KEY[:regtest]...: the benches' approvers and
# policy. Writes WORK_DIR/alice.pem (treasury) and WORK_DIR/carol.pem
# (compliance) and WORK_DIR/policy.toml, where each KEY needs one approval
# of each department; a KEY ending in ":regtest" is a Bitcoin key on regtest.
# alice and carol are also the policy's admins, both needed for a key order
# (bench-lifecycle.sh's repairs); the signing benches never use that. The
# policy is checked (`ringi policy check`) before anything runs on it.
bench_policy() {
  local bin=$1 work=$2 alice carol key out
  shift 2
  alice=$("$bin/ringi" approver-key generate --out "$work/alice.pem" 2>/dev/null)
  carol=$("$bin/ringi" approver-key generate --out "$work/carol.pem" 2>/dev/null)
  {
    printf 'version = 1\n[[departments]]\nname = "treasury"\napprovers = [{ name = "alice", key = "%s" }]\n' "$alice"
    printf '[[departments]]\nname = "compliance"\napprovers = [{ name = "carol", key = "%s" }]\n' "$carol"
    for key in "$@"; do
      printf '[keys.%s]\nrequest_ttl_secs = 3600\napproval_ttl_secs = 600\nrequire = { treasury = 1, compliance = 1 }\n' "${key%:regtest}"
      [ "$key" = "${key%:regtest}" ] || printf 'network = "regtest"\n'
      # RINGI_BENCH_WINDOW_SECS: a rolling-window cap on every key, never
      # reached (what a window cap costs per request, docs/bench.md).
      if [ -n "${RINGI_BENCH_WINDOW_SECS:-}" ]; then
        printf '[keys.%s.limits]\nwindow_secs = %s\nmax_requests_per_window = 1000000000\n' \
          "${key%:regtest}" "$RINGI_BENCH_WINDOW_SECS"
      fi
    done
    printf '[governance]\nadmins = ["alice", "carol"]\nadmin_quorum = 2\n'
  } > "$work/policy.toml"
  if ! out=$("$bin/ringi" policy check "$work/policy.toml" 2>&1); then
    echo "$out" >&2
    return 1
  fi
}

# start_postgres DIR: a private PostgreSQL cluster (Debian's server, as the
# tests start one) in DIR/pg, on a Unix socket in DIR/pg only, with its WAL
# synced to disk as in production; sets PG_URL to a connection string for
# its database `ringi` and PG_DATA for stop_postgres. As root, initdb and the
# server run as the `postgres` system user (they refuse root).
start_postgres() {
  local dir=$1/pg bin as=()
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  printf "\nlisten_addresses = ''\nunix_socket_directories = '%s'\n" "$dir" >>"$dir/data/postgresql.conf"
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
  "${as[@]}" "$bin/createdb" -h "$dir" -U postgres ringi
  PG_URL="host=$dir user=postgres dbname=ringi"
  PG_DATA="$dir/data"
  PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop)
}

# stop_postgres: stops what start_postgres started, if it did.
stop_postgres() {
  if [ -n "${PG_DATA:-}" ]; then
    "${PG_STOP[@]}" >/dev/null 2>&1 || true
    PG_DATA=""
  fi
}
