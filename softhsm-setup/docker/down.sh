#!/usr/bin/env bash
# Usage: softhsm-setup/docker/down.sh [--volumes]
#
# Stops and removes the stack's containers and networks. The named volumes
# stay, so the tokens (and the key shares sealed in them), the ledgers, the
# audit logs, the certificates and the coordinator's database survive: the
# next up.sh serves the same key. --volumes removes them too: every token
# and share is gone for good.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
if [ "${1:-}" = --volumes ]; then
  compose --profile cli down --volumes --remove-orphans
else
  compose --profile cli down --remove-orphans
fi
