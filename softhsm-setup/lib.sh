# Shared helpers for the softhsm-setup scripts (sourced, not run).

# Path of the SoftHSM2 PKCS#11 module.
softhsm_module() {
  local candidate
  for candidate in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
                   /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    if [ -f "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  dpkg -L softhsm2 2>/dev/null | grep -m1 'libsofthsm2\.so$' && return 0
  echo "softhsm-setup: libsofthsm2.so not found; run softhsm-setup/install-deps.sh" >&2
  return 1
}

# A random PIN: 16 hex digits from the OS RNG.
random_pin() {
  od -An -N8 -tx1 /dev/urandom | tr -d ' \n'
}

# wait_for_line FILE PATTERN SECONDS: waits until FILE has a line matching
# PATTERN and prints it.
wait_for_line() {
  local file=$1 pattern=$2 seconds=$3 i line
  for ((i = 0; i < seconds * 10; i++)); do
    line=$(grep -m1 -E "$pattern" "$file" 2>/dev/null || true)
    if [ -n "$line" ]; then echo "$line"; return 0; fi
    sleep 0.1
  done
  echo "softhsm-setup: timed out waiting for '$pattern' in $file" >&2
  return 1
}
