#!/usr/bin/env bash
# Usage: softhsm-setup/docker/up.sh
#
# Brings the SoftHSM stack up in Docker (3 signers, each with its own token
# volume; a coordinator; every hop on mutual TLS; with
# RINGI_COMPOSE_FILES=compose.ha.yaml two coordinators on PostgreSQL) and runs a 2-of-3 DKG for
# the key demo-hot, unless the key exists already (after a down/up the tokens
# still hold their shares). Prints the group public key.
#
# Images: the base comes from base-image.sh (built locally with debootstrap
# when the engine has no Debian image). The ringi binaries are built on the
# host with cargo (debug, the same build the tests use) and copied into the
# image; RINGI_DOCKER_COMPILE=1 compiles inside Docker instead (needs the
# rust:1-bookworm image, or RINGI_RUST_IMAGE). RINGI_DOCKER_BIN_DIR=DIR uses
# binaries already built.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
key_id=${RINGI_KEY_ID:-demo-hot}

step() { printf '\n== %s\n' "$*" >&2; }

build_image() {
  local base ctx bin
  base=$("$here/base-image.sh")
  if [ "${RINGI_DOCKER_COMPILE:-0}" = 1 ]; then
    step "image $RINGI_IMAGE: compiling inside Docker on $base"
    docker build -q --build-arg BASE="$base" --build-arg RUST_IMAGE="${RINGI_RUST_IMAGE:-rust:1-bookworm}" \
      -t "$RINGI_IMAGE" -f "$here/Dockerfile" "$docker_root" >/dev/null
    return
  fi
  bin=${RINGI_DOCKER_BIN_DIR:-}
  if [ -z "$bin" ]; then
    step "build ringi and ringi-signer on the host (debug)"
    cargo build --quiet --manifest-path "$docker_root/Cargo.toml" --bins
    bin=$docker_root/target/debug
  fi
  step "image $RINGI_IMAGE on $base, with the host's binaries"
  ctx=$(mktemp -d -t ringi-docker-ctx.XXXXXX)
  mkdir -p "$ctx/bin" "$ctx/softhsm-setup/docker"
  # Debug symbols make up most of a debug binary; the image does not need them.
  strip --strip-debug -o "$ctx/bin/ringi" "$bin/ringi"
  strip --strip-debug -o "$ctx/bin/ringi-signer" "$bin/ringi-signer"
  cp "$here/entrypoint.sh" "$ctx/softhsm-setup/docker/"
  cp "$here/../lib.sh" "$ctx/softhsm-setup/"
  docker build -q --build-arg PREBUILT=1 --build-arg RUST_IMAGE="$base" --build-arg BASE="$base" \
    -t "$RINGI_IMAGE" -f "$here/Dockerfile" "$ctx" >/dev/null
  rm -rf "$ctx"
  # The binaries stage of a prebuilt image is no cache worth keeping.
  docker image prune -f --filter label=org.ringi.stage=binaries >/dev/null
}

# The HA overlay's PostgreSQL image: Debian's PostgreSQL 15 on the local
# base (base-image.sh --postgres, cached), with its entrypoint.
build_postgres_image() {
  local base ctx
  base=$("$here/base-image.sh" --postgres)
  step "image $RINGI_POSTGRES_IMAGE on $base"
  ctx=$(mktemp -d -t ringi-docker-pg.XXXXXX)
  mkdir -p "$ctx/softhsm-setup/docker"
  cp "$here/postgres-entrypoint.sh" "$ctx/softhsm-setup/docker/"
  docker build -q --build-arg BASE="$base" -t "$RINGI_POSTGRES_IMAGE" -f "$here/Dockerfile.postgres" "$ctx" >/dev/null
  rm -rf "$ctx"
}

if ! docker_engine_answers; then
  echo "docker: no Docker engine (or no Compose) answers; start the engine first" >&2
  exit 1
fi
build_image
services=(signer-1 signer-2 signer-3 coordinator)
if ha_stack; then
  build_postgres_image
  services+=(postgres coordinator-2)
fi

step "bring up: setup, signer-1..3 (tokens created on first start), ${services[*]:3} (project $RINGI_COMPOSE_PROJECT)"
compose up -d --no-build >&2
for service in "${services[@]}"; do
  wait_healthy "$service" 180
done
compose ps >&2

keys=$(ringi_cli keys)
if grep -qw -- "$key_id" <<< "$keys"; then
  step "key $key_id exists (its shares are in the signers' tokens)"
  ringi_cli pubkey --key-id "$key_id"
else
  step "DKG: key $key_id, 2-of-3 across signer-1, signer-2, signer-3"
  ringi_cli keygen --key-id "$key_id" --threshold 2 --signers signer-1,signer-2,signer-3
fi
