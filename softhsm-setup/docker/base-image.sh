#!/usr/bin/env bash
# Usage: softhsm-setup/docker/base-image.sh [--postgres]
#
# Prints the name of the Debian bookworm image to build ringi's image on,
# making one when the engine has none:
#   1. RINGI_DOCKER_BASE, when set (an image the engine has or can pull);
#   2. debian:bookworm-slim, when the engine already has it;
#   3. otherwise a minimal bookworm made here with debootstrap (from Debian's
#      package mirror, no container registry needed) with SoftHSM2, opensc and
#      ca-certificates preinstalled, imported as ringi-local/bookworm-softhsm.
#      Needs root (debootstrap); installs debootstrap with apt-get if missing.
#      About 90 s once; the image then stays in the engine.
# --postgres: prints ringi-local/bookworm-postgres:1 instead, that base with
# Debian's PostgreSQL 15 installed (for Dockerfile.postgres), building it
# when missing (apt-get inside a build, from Debian's mirror; about 40 s
# once, then kept as a cache like the base).
# Progress goes to stderr.
set -euo pipefail

if [ "${1:-}" = --postgres ]; then
  pg_base=ringi-local/bookworm-postgres:1
  if docker image inspect "$pg_base" >/dev/null 2>&1; then echo "$pg_base"; exit 0; fi
  base=$("$0")
  echo "docker: building $pg_base on $base (postgresql-15 from Debian's mirror)" >&2
  ctx=$(mktemp -d -t ringi-pg-base.XXXXXX)
  trap 'rm -rf "$ctx"' EXIT
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM $base
RUN mkdir -p /etc/postgresql-common/createcluster.d \\
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/ringi.conf \\
    && apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \\
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
DOCKERFILE
  docker build -q -t "$pg_base" "$ctx" >&2
  echo "$pg_base"
  exit 0
fi

local_base=ringi-local/bookworm-softhsm:1
if [ -n "${RINGI_DOCKER_BASE:-}" ]; then echo "$RINGI_DOCKER_BASE"; exit 0; fi
for image in debian:bookworm-slim "$local_base"; do
  if docker image inspect "$image" >/dev/null 2>&1; then echo "$image"; exit 0; fi
done

echo "docker: no debian:bookworm-slim in the engine and no registry assumed; building $local_base with debootstrap" >&2
if [ "$(id -u)" != 0 ]; then
  echo "docker: debootstrap needs root; run as root, or 'docker pull debian:bookworm-slim' where a registry is reachable" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2 \
    || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2; }
fi
rootfs=$(mktemp -d -t ringi-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
mirror=${RINGI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
debootstrap --variant=minbase --include=softhsm2,opensc,ca-certificates bookworm "$rootfs" "$mirror" >&2
# What a slim image leaves out: package caches, lists, documentation.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' - "$local_base" >&2
echo "docker: imported $local_base" >&2
echo "$local_base"
