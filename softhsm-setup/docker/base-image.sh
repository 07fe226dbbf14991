#!/usr/bin/env bash
# Usage: softhsm-setup/docker/base-image.sh
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
# Progress goes to stderr.
set -euo pipefail

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
