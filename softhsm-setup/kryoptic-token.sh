#!/usr/bin/env bash
# Usage: softhsm-setup/kryoptic-token.sh DIR LABEL
#
# Creates one signer token in kryoptic, the second PKCS#11 module ringi is
# tested on (built by softhsm-setup/build-kryoptic.sh; this script fails,
# naming it, when it is not built), and writes DIR/env for ringi-signer,
# like init-tokens.sh does for SoftHSM2:
#   DIR/kryoptic.conf   kryoptic's config: one slot whose token is stored in DIR/token.sql
#   DIR/pin, DIR/so-pin the user and SO PINs (random, mode 0600)
#   DIR/env             exports: KRYOPTIC_CONF, RINGI_PKCS11_MODULE, RINGI_TOKEN_LABEL,
#                       RINGI_PKCS11_PIN_FILE (a path, never the PIN), RINGI_SIGNER_DATA_DIR
# An existing DIR/env is replaced (a node moved from SoftHSM2 to kryoptic).
# PINs are never printed. Test tokens only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

dir=${1:?usage: kryoptic-token.sh DIR LABEL}
label=${2:?usage: kryoptic-token.sh DIR LABEL}
"$here/install-deps.sh"
module=$(kryoptic_module)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -f "$dir/token.sql" "$dir/pin" "$dir/so-pin"
kryoptic_token "$dir" "$label"
cat > "$dir/env" <<ENV
export KRYOPTIC_CONF='$dir/kryoptic.conf'
export RINGI_PKCS11_MODULE='$module'
export RINGI_TOKEN_LABEL='$label'
export RINGI_PKCS11_PIN_FILE='$dir/pin'
export RINGI_SIGNER_DATA_DIR='$dir/data'
ENV
echo "softhsm-setup: kryoptic token '$label' initialised in $dir/token.sql (KRYOPTIC_CONF=$dir/kryoptic.conf, PIN in $dir/pin)"
