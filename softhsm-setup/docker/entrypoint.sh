#!/usr/bin/env bash
# Entry point of the ringi-softhsm image. One image, one role per container:
#
#   signer        a ringi-signer node. On first start it creates its SoftHSM2
#                 token (random PINs, never printed) and ringi's keys inside
#                 it, then asks for a TLS certificate with a CSR its token
#                 signs; then it serves over mutual TLS.
#   setup         one-shot, idempotent: development approver keys, the
#                 approval policy, and a development CA that certifies the
#                 signers' token keys (from their CSRs), the coordinator and
#                 the clients. Does nothing once everything exists.
#   coordinator   the coordinator daemon, over mutual TLS, dialling the
#                 signers by name on the compose network.
#   cli ARGS...   the `ringi` CLI as the `operator` identity (add
#                 `--as wallet-service` first to act as the wallet service).
#   export-credentials
#                 a tar stream (stdout) of what a client on the host needs:
#                 CA certificate, operator and wallet-service certificates
#                 and keys, the development approver key files.
#   healthcheck   grpc.health.v1 over mutual TLS against this container's
#                 server (the compose health check).
#
# Layout (volumes, see compose.yaml):
#   /var/lib/ringi/token     a signer's SoftHSM2 token directory and its PIN files
#   /var/lib/ringi/data      a signer's ledger and audit log / the coordinator's database
#   /var/lib/ringi/public    CA certificate, signer certificates, probe identity, policy
#   /var/lib/ringi/csr       signers' CSRs, read by setup
#   /var/lib/ringi/ca        the CA's key and everything it issued (setup only)
#   /var/lib/ringi/secrets   the coordinator's TLS key (coordinator only)
#   /var/lib/ringi/clients   operator/wallet credentials and approver keys (cli only)
#   /var/lib/ringi/postgres  (compose.ha.yaml) PostgreSQL's TLS certificate and key
#                            and the ringi role's password (setup and postgres only)
#
# With RINGI_STORE=postgres (compose.ha.yaml) the coordinator keeps its state
# in the shared PostgreSQL at RINGI_POSTGRES_HOST (TLS, verified against the
# stack's CA; password from /var/lib/ringi/secrets/pg-password) and setup,
# with RINGI_POSTGRES=1, makes that password and the server's certificate.
set -euo pipefail

state=/var/lib/ringi
public=$state/public
port=${RINGI_PORT:-50051}
signers=${RINGI_SIGNERS:-signer-1,signer-2,signer-3}
key_id=${RINGI_KEY_ID:-demo-hot}

# softhsm_module, random_pin, softhsm_token, coordinator_config,
# signer_entry: the same helpers the host scripts use (softhsm-setup/lib.sh).
. /usr/local/lib/ringi/lib.sh

log() { printf 'ringi-entrypoint: %s\n' "$*" >&2; }

# wait_for FILE SECONDS WHAT
wait_for() {
  local i
  for ((i = 0; i < $2 * 2; i++)); do
    [ -s "$1" ] && return 0
    sleep 0.5
  done
  log "timed out after $2 s waiting for $3 ($1)"
  return 1
}

# put SRC DEST MODE: copies atomically (a reader never sees half a file).
put() {
  install -m "$3" "$1" "$2.tmp.$$"
  mv -f "$2.tmp.$$" "$2"
}

# The signer's token settings. With RINGI_PKCS11_MODULE set to another
# module, the tester provides RINGI_TOKEN_LABEL and RINGI_PKCS11_PIN_FILE for
# a token that exists; otherwise a SoftHSM2 token is created in the volume.
signer_token() {
  local name=$1
  if [ -n "${RINGI_PKCS11_MODULE:-}" ] && [[ "$RINGI_PKCS11_MODULE" != *libsofthsm2.so ]]; then
    : "${RINGI_TOKEN_LABEL:?RINGI_TOKEN_LABEL must name the token in $RINGI_PKCS11_MODULE}"
    : "${RINGI_PKCS11_PIN_FILE:?RINGI_PKCS11_PIN_FILE must name a file holding the token PIN}"
    log "using PKCS#11 module $RINGI_PKCS11_MODULE, token $RINGI_TOKEN_LABEL"
    return 0
  fi
  export RINGI_PKCS11_MODULE=${RINGI_PKCS11_MODULE:-$(softhsm_module)}
  export RINGI_TOKEN_LABEL=${RINGI_TOKEN_LABEL:-$name}
  export RINGI_PKCS11_PIN_FILE=$state/token/pin
  export SOFTHSM2_CONF=$state/token/softhsm2.conf
  if [ ! -s "$state/token/pin" ]; then
    log "first start: creating SoftHSM2 token $RINGI_TOKEN_LABEL (PINs in the token volume, never printed)"
    # Without the PIN file no token finished initialising: whatever an
    # interrupted first start left is unusable, so start over.
    rm -rf "$state/token/tokens" "$state/token/pin.tmp" "$state/token/so-pin.tmp"
    softhsm_token "$state/token" "$RINGI_TOKEN_LABEL"
  fi
}

run_signer() {
  local name=${RINGI_SIGNER_NAME:?RINGI_SIGNER_NAME must name this signer (e.g. signer-1)}
  signer_token "$name"
  export RINGI_SIGNER_DATA_DIR=$state/data
  # Idempotent: creates only the keys the token does not hold yet.
  ringi-signer init >&2
  if [ ! -s "$public/$name.pem" ]; then
    log "asking for a TLS certificate: CSR signed inside the token"
    ringi-signer tls-csr --name "$name" > "$state/csr/$name.csr.tmp"
    mv -f "$state/csr/$name.csr.tmp" "$state/csr/$name.csr"
  fi
  # ca.pem is the last file setup writes: once it is there, so are this
  # signer's certificate and the policy.
  wait_for "$public/ca.pem" 300 "certificates from setup"
  [ -s "$public/$name.pem" ] || { log "setup issued no certificate for $name (is it in RINGI_SIGNERS?)"; exit 1; }
  # DKG peers: exactly the stack's signers (see signer/src/dkg_peer.rs).
  export RINGI_TLS_CERT=$public/$name.pem RINGI_TLS_CA=$public/ca.pem RINGI_DKG_PEERS=$signers
  exec ringi-signer serve --listen "0.0.0.0:$port" --policy-file "$public/policy.toml"
}

run_setup() {
  local issued=$state/ca/issued name csrs=() clients=$state/clients
  mkdir -p "$state/ca/approvers"
  # Development approver keys (files): alice (treasury), carol (compliance),
  # erin (security). Production approvers keep theirs in tokens.
  for name in alice carol erin; do
    if [ ! -s "$state/ca/approvers/$name.pub" ]; then
      rm -f "$state/ca/approvers/$name.pem"
      ringi approver-key generate --out "$state/ca/approvers/$name.pem" 2>/dev/null \
        > "$state/ca/approvers/$name.pub.tmp"
      mv "$state/ca/approvers/$name.pub.tmp" "$state/ca/approvers/$name.pub"
    fi
  done
  if [ ! -s "$public/policy.toml" ]; then
    cat > "$public/policy.toml.tmp" <<TOML
# Generated by the ringi-softhsm setup container (development approver keys).
version = 1

[[departments]]
name = "treasury"
approvers = [{ name = "alice", key = "$(cat "$state/ca/approvers/alice.pub")" }]

[[departments]]
name = "compliance"
approvers = [{ name = "carol", key = "$(cat "$state/ca/approvers/carol.pub")" }]

[[departments]]
name = "security"
approvers = [{ name = "erin", key = "$(cat "$state/ca/approvers/erin.pub")" }]

[keys.$key_id]
request_ttl_secs = 3600
approval_ttl_secs = 600
require = { treasury = 1, compliance = 1 }
tiers = [{ above = 100000000, require = { treasury = 1, compliance = 1, security = 1 } }]

# A bitcoin-taproot key on regtest (softhsm-setup/docker/spend.sh): payments
# only to the listed address, fees at most 5000 sat and 50 sat/vB.
[keys.demo-btc]
request_ttl_secs = 3600
approval_ttl_secs = 600
require = { treasury = 1, compliance = 1 }
network = "regtest"
fees = { max_sats = 5000, max_sat_per_vbyte = 50 }
destinations = { allowed = ["bcrt1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqc8gma6"] }
TOML
    chmod 644 "$public/policy.toml.tmp"
    mv "$public/policy.toml.tmp" "$public/policy.toml"
    log "policy written: sha256 $(sha256sum "$public/policy.toml" | cut -d' ' -f1)"
  fi
  if [ -s "$public/ca.pem" ]; then
    log "certificates already issued; nothing to do"
    setup_postgres
    return 0
  fi
  IFS=, read -r -a names <<< "$signers"
  for name in "${names[@]}"; do
    wait_for "$state/csr/$name.csr" 300 "$name's CSR"
    csrs+=(--signer-csr "$state/csr/$name.csr")
  done
  rm -rf "$issued"
  ringi dev-certs --out "$issued" "${csrs[@]}" --clients operator,wallet-service,healthcheck >/dev/null
  mkdir -p "$state/secrets"
  put "$issued/coordinator.pem" "$state/secrets/coordinator.pem" 644
  put "$issued/coordinator.key" "$state/secrets/coordinator.key" 600
  for name in operator wallet-service; do
    put "$issued/$name.pem" "$clients/$name.pem" 644
    put "$issued/$name.key" "$clients/$name.key" 600
  done
  for name in alice carol erin; do
    put "$state/ca/approvers/$name.pem" "$clients/$name.pem" 600
  done
  put "$issued/ca.pem" "$clients/ca.pem" 644
  # The probe identity may only ask for health: no signer lets it call the
  # signer API and the coordinator gives it no role.
  put "$issued/healthcheck.pem" "$public/healthcheck.pem" 644
  put "$issued/healthcheck.key" "$public/healthcheck.key" 600
  for name in "${names[@]}"; do
    put "$issued/$name.pem" "$public/$name.pem" 644
  done
  # ca.pem last: its presence means everything is issued.
  put "$issued/ca.pem" "$public/ca.pem" 644
  log "certificates issued for ${names[*]}, coordinator, operator, wallet-service"
  setup_postgres
}

# setup_postgres (RINGI_POSTGRES=1): the ringi role's password (for the
# server and, in the coordinators' secrets, for them) and a TLS certificate
# for the name `postgres` from the development CA. Idempotent.
setup_postgres() {
  local out=$state/postgres issued=$state/ca/issued
  [ "${RINGI_POSTGRES:-0}" = 1 ] || return 0
  if [ ! -s "$state/secrets/pg-password" ]; then
    { random_pin; random_pin; } > "$state/ca/pg-password"
    put "$state/ca/pg-password" "$state/secrets/pg-password" 600
  fi
  if [ ! -s "$out/server.pem" ]; then
    openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null \
      | openssl pkcs8 -topk8 -nocrypt -out "$state/ca/pg-server.key"
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:postgres\n' \
      > "$state/ca/pg-server.ext"
    openssl req -new -key "$state/ca/pg-server.key" -subj /CN=postgres 2>/dev/null \
      | openssl x509 -req -CA "$issued/ca.pem" -CAkey "$issued/ca.key" -CAcreateserial \
          -days 825 -sha256 -extfile "$state/ca/pg-server.ext" -out "$state/ca/pg-server.pem" 2>/dev/null
    put "$state/ca/pg-server.key" "$out/server.key" 600
    put "$state/secrets/pg-password" "$out/password" 600
    put "$state/ca/pg-server.pem" "$out/server.pem" 644
    log "PostgreSQL: certificate for postgres issued, ringi role password made"
  fi
}

run_coordinator() {
  local config=/tmp/coordinator.toml name i=0
  wait_for "$public/ca.pem" 300 "certificates from setup"
  {
    if [ -n "${RINGI_SIGNING_LEASE_SECS:-}" ]; then
      printf 'signing_lease_secs = %d\n' "$RINGI_SIGNING_LEASE_SECS"
    fi
    coordinator_config "0.0.0.0:$port" "$state/data" "$public/policy.toml" \
      "$state/secrets/coordinator.pem" "$state/secrets/coordinator.key" "$public/ca.pem"
    IFS=, read -r -a names <<< "$signers"
    for name in "${names[@]}"; do
      i=$((i + 1))
      signer_entry "$name" "$name:$port" "$i"
    done
    if [ "${RINGI_STORE:-sqlite}" = postgres ]; then
      wait_for "$state/secrets/pg-password" 300 "the PostgreSQL password from setup"
      printf '\n[store]\nengine = "postgres"\nurl = "host=%s port=5432 dbname=ringi user=ringi"\n' \
        "${RINGI_POSTGRES_HOST:-postgres}"
      printf 'password_file = "%s"\nca = "%s"\n' "$state/secrets/pg-password" "$public/ca.pem"
    fi
  } > "$config"
  exec ringi serve --config "$config"
}

run_cli() {
  local who=operator
  if [ "${1:-}" = --as ]; then who=$2; shift 2; fi
  export RINGI_COORDINATOR=${RINGI_COORDINATOR:-coordinator:$port}
  export RINGI_TLS_CA=$state/clients/ca.pem
  export RINGI_TLS_CLIENT_CERT=$state/clients/$who.pem RINGI_TLS_CLIENT_KEY=$state/clients/$who.key
  exec ringi "$@"
}

healthcheck() {
  local name=${RINGI_SIGNER_NAME:-coordinator}
  RINGI_TLS_CA=$public/ca.pem RINGI_TLS_CLIENT_CERT=$public/healthcheck.pem \
    RINGI_TLS_CLIENT_KEY=$public/healthcheck.key \
    exec ringi health --address "127.0.0.1:$port" --server-name "$name"
}

role=${1:-}
[ $# -gt 0 ] && shift
case "$role" in
  signer) run_signer ;;
  setup) run_setup ;;
  coordinator) run_coordinator ;;
  cli) run_cli "$@" ;;
  export-credentials)
    tar -C "$state/clients" -cf - ca.pem operator.pem operator.key wallet-service.pem wallet-service.key \
      alice.pem carol.pem erin.pem ;;
  healthcheck) healthcheck ;;
  *)
    echo "usage: ringi-entrypoint signer|setup|coordinator|cli ARGS|export-credentials|healthcheck" >&2
    exit 2 ;;
esac
