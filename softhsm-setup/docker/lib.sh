# shellcheck shell=bash
# Shared helpers for the Docker scripts (sourced, not run).
#
# RINGI_COMPOSE_PROJECT   compose project name (default: ringi); volumes,
#                         networks and containers are prefixed with it
# RINGI_IMAGE             image the compose file runs (default: ringi-softhsm:dev)
# RINGI_POSTGRES_IMAGE    PostgreSQL image of compose.ha.yaml (default: ringi-postgres:dev)
# RINGI_COMPOSE_FILES     extra compose files (override files such as
#                         compose.other-module.yaml), space-separated, relative
#                         to softhsm-setup/docker/ or absolute

docker_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export docker_root
docker_root=$(cd "$docker_here/../.." && pwd)
export RINGI_COMPOSE_PROJECT=${RINGI_COMPOSE_PROJECT:-ringi}
export RINGI_IMAGE=${RINGI_IMAGE:-ringi-softhsm:dev}
export RINGI_POSTGRES_IMAGE=${RINGI_POSTGRES_IMAGE:-ringi-postgres:dev}

# ha_stack: true when the HA overlay (compose.ha.yaml: PostgreSQL and a
# second coordinator) is among RINGI_COMPOSE_FILES.
ha_stack() {
  case " ${RINGI_COMPOSE_FILES:-} " in
    *compose.ha.yaml\ *) return 0 ;;
    *) return 1 ;;
  esac
}

# compose ARGS: Compose v2 (`docker compose`) where installed, else v1.
compose() {
  local files=(-f "$docker_here/compose.yaml") extra
  for extra in ${RINGI_COMPOSE_FILES:-}; do
    case "$extra" in
      /*) files+=(-f "$extra") ;;
      *) files+=(-f "$docker_here/$extra") ;;
    esac
  done
  if docker compose version >/dev/null 2>&1; then
    docker compose -p "$RINGI_COMPOSE_PROJECT" "${files[@]}" "$@"
  else
    docker-compose -p "$RINGI_COMPOSE_PROJECT" "${files[@]}" "$@"
  fi
}

# ringi_cli ARGS: the ringi CLI in a throwaway container on the stack's
# network, as the operator (or `--as wallet-service ARGS`).
ringi_cli() {
  compose run --rm --no-deps -T cli "$@"
}

# wait_healthy SERVICE SECONDS: waits until the service's container reports healthy.
wait_healthy() {
  local service=$1 seconds=$2 id status i
  for ((i = 0; i < seconds; i++)); do
    id=$(compose ps -q "$service" 2>/dev/null || true)
    if [ -n "$id" ]; then
      status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || true)
      [ "$status" = healthy ] && return 0
    fi
    sleep 1
  done
  echo "docker: $service is not healthy after $seconds s (status: ${status:-no container}); its log:" >&2
  compose logs --tail 40 "$service" >&2 || true
  return 1
}

# docker_engine_answers: true when a Docker engine and Compose are usable.
docker_engine_answers() {
  docker info >/dev/null 2>&1 && { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; }
}

# cli_roles FROM_HOST: defines wallet, operator and keyfile for the sign and
# spend scripts. FROM_HOST=1: the host's ringi binary against the
# coordinator's published port, with credentials copied out of the stack
# into a temporary directory (removed on exit); otherwise the CLI in
# throwaway containers.
cli_roles() {
  if [ "$1" = 1 ]; then
    creds=$(mktemp -d -t ringi-creds.XXXXXX)
    trap 'rm -rf "$creds"' EXIT
    compose run --rm --no-deps -T --entrypoint ringi-entrypoint cli export-credentials | tar -x -C "$creds"
    port=$(compose port coordinator 50051)
    bin=${RINGI_DOCKER_BIN_DIR:-$docker_root/target/debug}
    as() {
      local who=$1; shift
      RINGI_COORDINATOR=$port RINGI_TLS_CA=$creds/ca.pem RINGI_TLS_CLIENT_CERT=$creds/$who.pem \
        RINGI_TLS_CLIENT_KEY=$creds/$who.key "$bin/ringi" "$@"
    }
    wallet() { as wallet-service "$@"; }
    operator() { as operator "$@"; }
    keyfile() { echo "$creds/$1.pem"; }
    echo "from the host: $bin/ringi -> coordinator at $port" >&2
  else
    wallet() { ringi_cli --as wallet-service "$@"; }
    operator() { ringi_cli "$@"; }
    keyfile() { echo "/var/lib/ringi/clients/$1.pem"; }
  fi
}

# compose_leftovers PROJECT: the ids of every container, network and volume
# compose project PROJECT left behind (none after a clean teardown).
compose_leftovers() {
  {
    docker ps -aq --filter "label=com.docker.compose.project=$1"
    docker network ls -q --filter "label=com.docker.compose.project=$1"
    docker volume ls -q --filter "label=com.docker.compose.project=$1"
  } | sort -u
}

# e2e_harness NAME WORK IMAGE...: what a Docker e2e test (test-e2e.sh,
# test-e2e-ha.sh) needs around its checks: `pass MESSAGE` (counted in
# $checks) and `fail MESSAGE` (exits), both prefixed with NAME, and a
# teardown on exit that shows the stack's last log lines if the test
# failed, takes the compose project down with its volumes, removes the
# test's images IMAGE... and its intermediate binaries stage, and the work
# directory WORK. Defined on call, so scripts that only source this file
# get no pass/fail of their own.
e2e_harness() {
  e2e_name=$1
  e2e_work=$2
  shift 2
  e2e_images=("$@")
  checks=0
  pass() { checks=$((checks + 1)); echo "$e2e_name: ok: $*"; }
  fail() { echo "$e2e_name: FAILED: $*" >&2; exit 1; }
  e2e_teardown() {
    local status=$?
    if [ "$status" != 0 ]; then
      echo "$e2e_name: failed; the stack's last log lines:" >&2
      compose logs --no-color --tail 30 >&2 2>/dev/null || true
    fi
    compose --profile cli down --volumes --remove-orphans >/dev/null 2>&1 || true
    docker rmi "${e2e_images[@]}" >/dev/null 2>&1 || true
    docker image prune -f --filter label=org.ringi.stage=binaries >/dev/null 2>&1 || true
    rm -rf "$e2e_work"
    exit "$status"
  }
  trap e2e_teardown EXIT
}
