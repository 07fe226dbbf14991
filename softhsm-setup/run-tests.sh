#!/usr/bin/env bash
# Runs ringi's whole test suite: installs SoftHSM2 and opensc from Debian's
# packages if missing, builds kryoptic (the second PKCS#11 module,
# softhsm-setup/build-kryoptic.sh), grpcio for the Python example client (from PyPI, into
# a virtualenv under target/), builds every binary (the integration tests start the
# real ringi-signer and ringi processes), then runs every test, unit and
# integration, plus formatting and lint checks, a small run of the load
# and fault suite (softhsm-setup/soak.sh), and README.md's "Running by
# hand" section run as written (softhsm-setup/by-hand.sh), then the Docker end-to-end
# test (softhsm-setup/docker/test-e2e.sh: the compose stack on the real
# engine) and its HA test (test-e2e-ha.sh: two coordinators on PostgreSQL,
# one killed mid-run); both skipped, saying so, only when no engine answers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

"$here/install-deps.sh"
# The second PKCS#11 module the tests run a signer on (kryoptic, from
# crates.io; skipped when built): its tests fail without it.
"$here/build-kryoptic.sh" >/dev/null
# The Python example client's test needs grpcio, its PSBT builder embit, the
# load client cryptography (approval signatures): a virtualenv under target/.
if [ ! -x target/python/bin/python ] || ! target/python/bin/python -c 'import grpc, grpc_tools, embit, cryptography' 2>/dev/null; then
  python3 -m venv target/python
  target/python/bin/pip install --quiet -r examples/python/requirements.txt
fi
export RINGI_PYTHON="$root/target/python/bin/python"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The binaries exactly as shipped (the default members: without the fuzz
# harnesses, whose test-doubles feature must not reach ringi-signer).
cargo build --bins --quiet

# Run every test, then print one total line ("N passed, N failed") so the
# summary does not depend on which test binary happens to run last. The
# system tests run against the shipped binaries; the fuzz seed replays run
# after them, on their own (they build ringi-signer's library with its
# test doubles).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --exclude ringi-fuzz --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
cargo test -p ringi-fuzz 2>&1 | tee -a "$log"
fuzz_status=${PIPESTATUS[0]}
[ "$status" = 0 ] && status=$fuzz_status
# The load and fault suite, small (docs/reliability.md): 60 requests, 16 in
# flight, signer-1 and the coordinator each killed -9 once and restarted;
# each of its checks counts as a test.
"$here/soak.sh" 60 16 1 2>&1 | tee -a "$log"
soak_status=${PIPESTATUS[0]}
[ "$status" = 0 ] && status=$soak_status
# The Python example's unit tests (its PSBT builder; no cluster needed).
(cd examples/python && "$RINGI_PYTHON" -m unittest discover -v -p 'test_*.py') 2>&1 | tee -a "$log"
py_status=${PIPESTATUS[0]}
[ "$status" = 0 ] && status=$py_status
# The README's "Running by hand" section, every sh fence run as written
# against the binaries built above.
"$here/by-hand.sh"
by_hand_status=$?
[ "$status" = 0 ] && status=$by_hand_status
set -e
awk '/^test result:/ { passed += $4; failed += $6 }
     /^soak: [0-9]+ checks: / { passed += $4; failed += $6 }
     /^Ran [0-9]+ tests? in/ { py_ran = $2 }
     /^FAILED \(/ { n = split($0, parts, /[=,)]/)
                    for (i = 2; i <= n; i += 2) if (parts[i - 1] ~ /(failures|errors)$/) py_failed += parts[i] }
     END { passed += py_ran - py_failed; failed += py_failed
           printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
[ "$status" = 0 ] || exit "$status"

"$here/docker/test-e2e.sh"
"$here/docker/test-e2e-ha.sh"
