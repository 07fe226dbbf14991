#!/usr/bin/env bash
# Runs README.md's "## Running by hand" section as written, so the README
# cannot drift from what works: every ```sh fence between that heading and
# the next "## " heading, in order, in one bash process (set -euo pipefail,
# plus -E so a failure inside a subshell is reported too) from the
# repository root. Other fences in the section are not run (the README's
# convention: a file the flow needs is written by a heredoc inside an sh
# fence). Fails on the first failing command, naming its README line; gives
# up after RINGI_BY_HAND_TIMEOUT seconds (default 120); on exit, stops every
# process the section started and removes everything it wrote (its
# `mktemp -d` lands in a directory of this script's own). On failure it
# prints the end of each daemon's log.
#
# Before running anything it checks the whole README's fences the way a
# Markdown renderer reads them: a fence never closed, a fence opening
# inside another, or a "## " heading inside a fence (a section swallowed
# by an unclosed fence) is an error.
#
# Usage: softhsm-setup/by-hand.sh [README]   (default: the repository's)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
readme=$(realpath "${1:-$root/README.md}")
limit=${RINGI_BY_HAND_TIMEOUT:-120}
section='## Running by hand'

tmp=$(mktemp -d -t ringi-by-hand.XXXXXX)
pgid=""
watchdog=""
cleanup() {
  if [ -n "$watchdog" ]; then kill "$watchdog" 2>/dev/null || true; fi
  if [ -n "$pgid" ] && kill -0 -- "-$pgid" 2>/dev/null; then
    kill -TERM -- "-$pgid" 2>/dev/null || true
    sleep 2
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# The script: README line N is script line N (every line that is not in
# one of the section's sh fences is left blank), so bash's own messages
# and the ERR trap name README lines. Line 1 (the README's title) holds
# the shell options and the trap; each sh fence's opening line prints
# where the fence is, so the output reads against the README.
header='set -Eeuo pipefail; trap '"'"'echo "by-hand: README line $LINENO: exit status $? from: $BASH_COMMAND" >&2'"'"' ERR'
awk -v section="$section" -v readme="$readme" -v header="$header" '
  function fail(msg) { printf "by-hand: %s:%d: %s\n", readme, NR, msg | "cat >&2"; failed = 1; exit 2 }
  NR == 1 { print header; next }
  fence {
    if ($0 ~ /^```[ \t]*$/) { fence = 0; print ""; next }
    if ($0 ~ /^```/) fail("a fence opens inside the fence opened at line " fence " (" info "): is that one closed?")
    if ($0 ~ /^## /) fail("a \"## \" heading inside the fence opened at line " fence " (" info "): is that fence closed?")
    print (run ? $0 : "")
    next
  }
  /^```/ {
    fence = NR
    info = substr($0, 4); gsub(/^[ \t]+|[ \t]+$/, "", info)
    run = (inside && info == "sh")
    if (run) { fences++; printf "echo \"== README line %d\" >&2\n", NR } else print ""
    next
  }
  /^## / { inside = ($0 == section); if (inside) found = 1 }
  { print "" }
  END {
    if (failed) exit 2
    if (fence) { NR = fence; fail("this fence (" info ") is never closed") }
    if (!found) { printf "by-hand: %s: no \"%s\" section\n", readme, section | "cat >&2"; exit 2 }
    if (!fences) { printf "by-hand: %s: no sh fence in \"%s\"\n", readme, section | "cat >&2"; exit 2 }
  }
' "$readme" > "$tmp/section.sh"

# The section uses fixed loopback ports: a port already taken would fail it
# with a less clear message.
for port in $(grep -o '127\.0\.0\.1:[0-9]\+' "$tmp/section.sh" | cut -d: -f2 | sort -u); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "by-hand: port $port on 127.0.0.1 is in use; the README's section needs it free" >&2
    exit 1
  fi
done

# The build is not what this checks: done first, so the time limit covers
# the section alone (its own `cargo build --bins` is then a no-op).
(cd "$root" && cargo build --bins --quiet)

echo "by-hand: running the sh fences of \"$section\" in $readme (time limit ${limit} s)" >&2
mkdir -p "$tmp/run"
started=$(date +%s)
# Its own process group, so every daemon the section starts can be stopped
# with it (job control is off here: background jobs stay in the group).
(cd "$root" && TMPDIR="$tmp/run" NO_COLOR=1 exec setsid bash "$tmp/section.sh") &
pgid=$!
(sleep "$limit"; echo "by-hand: time limit of $limit s reached; stopping the section" >&2; kill -TERM -- "-$pgid" 2>/dev/null) &
watchdog=$!
status=0
wait "$pgid" || status=$?
kill "$watchdog" 2>/dev/null || true
watchdog=""
if [ "$status" != 0 ]; then
  for log in $(find "$tmp/run" -name log -o -name '*.log' | sort); do
    echo "by-hand: --- last lines of ${log#"$tmp/run/"}" >&2
    tail -n 15 "$log" >&2
  done
  echo "by-hand: FAILED (exit status $status): the README's \"$section\" does not run as written" >&2
  exit "$status"
fi
echo "by-hand: passed in $(($(date +%s) - started)) s" >&2
