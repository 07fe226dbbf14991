#!/usr/bin/env bash
# Usage: softhsm-setup/approver-token.sh DIR NAME
#
# Creates a SoftHSM2 token standing in for approver NAME's smart card, under
# DIR/approver-NAME (its own SOFTHSM2_CONF, random PINs in files, never
# printed), and generates an EC P-256 key pair labelled NAME inside it with
# pkcs11-tool. Prints the token's environment file; source it before
# `ringi approve --pkcs11-module ... --token approver-NAME --key-label NAME`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

dir=${1:?usage: approver-token.sh DIR NAME}
name=${2:?usage: approver-token.sh DIR NAME}
"$here/install-deps.sh"
module=$(softhsm_module)
mkdir -p "$dir"
node=$(cd "$dir" && pwd)/approver-$name
label="approver-$name"
mkdir -p "$node/tokens"
chmod 700 "$node" "$node/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$node/tokens" > "$node/softhsm2.conf"
(umask 077; random_pin > "$node/pin"; random_pin > "$node/so-pin")
export SOFTHSM2_CONF="$node/softhsm2.conf"
softhsm2-util --init-token --free --label "$label" --pin "$(cat "$node/pin")" --so-pin "$(cat "$node/so-pin")" >/dev/null
pkcs11-tool --module "$module" --token-label "$label" --login --pin "$(cat "$node/pin")" \
  --keypairgen --key-type EC:prime256v1 --label "$name" --id 01 >/dev/null 2>&1
cat > "$node/env" <<ENV
export SOFTHSM2_CONF='$node/softhsm2.conf'
export RINGI_APPROVER_PKCS11_MODULE='$module'
export RINGI_APPROVER_PIN_FILE='$node/pin'
ENV
echo "softhsm-setup: approver token '$label' with EC P-256 key '$name' in $node/tokens (PIN in $node/pin)" >&2
echo "$node/env"
