#!/usr/bin/env bash
# Runs ringi's whole test suite: installs SoftHSM2 and opensc from Debian's
# packages if missing, builds every binary (the integration tests start the
# real ringi-signer and ringi processes), then runs every test, unit and
# integration, plus formatting and lint checks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

"$here/install-deps.sh"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo build --workspace --bins --quiet
cargo test --workspace
