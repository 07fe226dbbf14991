#!/usr/bin/env bash
# Installs what ringi needs at run and test time, from Debian's packages,
# when it is missing: SoftHSM2 (the PKCS#11 token used in tests and the demo),
# opensc (pkcs11-tool, an independent PKCS#11 client the tests use to
# inspect tokens) and PostgreSQL's server (the coordinator's shared store:
# its tests start private clusters with initdb, never the system's). Safe
# to run again.
set -euo pipefail

missing=()
command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "softhsm-setup: installing ${missing[*]} from Debian's packages" >&2
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "softhsm-setup: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
