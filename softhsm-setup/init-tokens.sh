#!/usr/bin/env bash
# Usage: softhsm-setup/init-tokens.sh DIR [COUNT]
#
# Creates COUNT (default 3) SoftHSM2 tokens, one per signer, under DIR:
#   DIR/signer-N/softhsm2.conf   SoftHSM config whose token directory is DIR/signer-N/tokens
#   DIR/signer-N/pin             the user PIN (random, mode 0600)
#   DIR/signer-N/so-pin          the security officer PIN (random, mode 0600)
#   DIR/signer-N/env             exports for ringi-signer: SOFTHSM2_CONF, RINGI_PKCS11_MODULE,
#                                RINGI_TOKEN_LABEL, RINGI_PKCS11_PIN_FILE (a path, never the PIN),
#                                RINGI_SIGNER_DATA_DIR (the node's spending ledger)
# Each signer gets its own SOFTHSM2_CONF, so no signer can see another's
# token. Installs SoftHSM2 and opensc first if missing. PINs are never printed.
#
# Test tokens only: softhsm2-util takes the PINs as arguments for the few
# milliseconds it runs. Production tokens are initialised by their owners.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

dir=${1:?usage: init-tokens.sh DIR [COUNT]}
count=${2:-3}
"$here/install-deps.sh"
module=$(softhsm_module)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

for ((i = 1; i <= count; i++)); do
  node="$dir/signer-$i"
  label="signer-$i"
  if [ -e "$node/tokens" ]; then
    echo "softhsm-setup: $node exists; leaving token $label as it is"
    continue
  fi
  softhsm_token "$node" "$label"
  cat > "$node/env" <<ENV
export SOFTHSM2_CONF='$node/softhsm2.conf'
export RINGI_PKCS11_MODULE='$module'
export RINGI_TOKEN_LABEL='$label'
export RINGI_PKCS11_PIN_FILE='$node/pin'
export RINGI_SIGNER_DATA_DIR='$node/data'
ENV
  echo "softhsm-setup: token '$label' initialised in $node/tokens (SOFTHSM2_CONF=$node/softhsm2.conf, PIN in $node/pin)"
done
echo "softhsm-setup: module $module"
