#!/usr/bin/env bash
# Builds kryoptic, the second PKCS#11 module ringi is tested on (an
# independently written soft token, in Rust over OpenSSL, storing its
# objects in SQLite), into target/kryoptic/libkryoptic_pkcs11.so.
#
# Debian ships no kryoptic package, so its pinned release is taken from
# crates.io (the `kryoptic` crate, whose library is the cdylib) and built
# with the Cargo.lock it ships (`--locked`): nothing but Debian's packages
# and crates.io is needed. It links Debian's OpenSSL 3.0 dynamically, so
# only the features that run on 3.0 are built (`minimal`: AES, ECDSA and
# ECDH on the NIST curves, hashes and HMAC, RSA, SQLite storage); EdDSA
# and the post-quantum mechanisms need OpenSSL 3.2 and later and ringi
# uses none of them. Build deps from Debian when missing: libssl-dev,
# pkg-config, libclang-dev (bindgen), libsqlite3-dev.
#
# Skips the build when the library of this version is there already.
# Prints the library's path. Safe to run again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

version=1.5.4
out="$root/target/kryoptic"
lib="$out/libkryoptic_pkcs11.so"
stamp="$out/version"

if [ -f "$lib" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  echo "$lib"
  exit 0
fi

missing=()
for pkg in libssl-dev pkg-config libclang-dev libsqlite3-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-kryoptic: installing ${missing[*]} from Debian's packages" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "build-kryoptic: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

start=$(date +%s)
mkdir -p "$out/fetch/src"
# A throwaway package whose only purpose is to have cargo download the
# pinned crate (its own [workspace]: it is not part of ringi's).
cat > "$out/fetch/Cargo.toml" <<EOF
[package]
name = "ringi-kryoptic-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
kryoptic = { version = "=$version", default-features = false }

[workspace]
EOF
: > "$out/fetch/src/lib.rs"
cargo fetch --quiet --manifest-path "$out/fetch/Cargo.toml"
manifest=$(cargo metadata --quiet --format-version 1 --manifest-path "$out/fetch/Cargo.toml" |
  python3 -c 'import json, sys
m = json.load(sys.stdin)
print(next(p["manifest_path"] for p in m["packages"] if p["name"] == "kryoptic"))')

# Build a copy (cargo writes next to the manifest), made its own
# workspace so that ringi's workspace above it does not claim it.
src="$out/src-$version"
rm -rf "$src"
cp -r "$(dirname "$manifest")" "$src"
chmod -R u+w "$src"
printf '\n[workspace]\n' >> "$src/Cargo.toml"
echo "build-kryoptic: building kryoptic $version (debug, OpenSSL $(pkg-config --modversion openssl) from Debian)" >&2
cargo build --quiet --locked --manifest-path "$src/Cargo.toml" --target-dir "$out/build" \
  --no-default-features --features minimal,kryoptic-lib/dynamic
cp "$out/build/debug/libkryoptic_pkcs11.so" "$lib.tmp"
mv "$lib.tmp" "$lib"
echo "$version" > "$stamp"
echo "build-kryoptic: built $lib in $(( $(date +%s) - start )) s" >&2
echo "$lib"
