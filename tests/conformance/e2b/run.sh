#!/usr/bin/env bash
# Runs the e2b SDK conformance checks against the local E2B test server.
#
#   bash tests/conformance/e2b/run.sh      (from any directory; needs root)
#
# Installs the pinned SDK with `npm ci`, starts tests/servers/e2b/server.js on
# a free port with a temporary state dir and a random API key, runs
# conformance.mjs against it, and always stops the server again (trap). Exits
# non-zero if any check fails or the server cannot be started.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
SERVER="$REPO/tests/servers/e2b/server.js"

if [ "$(id -u)" != 0 ]; then
  echo "run.sh: the E2B test server needs root (bind mounts, chroot)" >&2
  exit 1
fi

cd "$HERE"
npm ci --silent --no-audit --no-fund >/dev/null

WORK="$(mktemp -d "${TMPDIR:-/tmp}/e2b-conformance.XXXXXX")"
SERVER_PID=""

cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "e2b server did not stop; killing it" >&2
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
  fi
  # Safety net: nothing may stay mounted under our state dir.
  if grep -q " $WORK/" /proc/self/mountinfo 2>/dev/null; then
    echo "leftover mounts under $WORK; unmounting" >&2
    grep " $WORK/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r mp; do
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
    done
    rc=1
  fi
  if ! grep -q " $WORK/" /proc/self/mountinfo 2>/dev/null; then
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

API_KEY="e2b_$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')"
node "$SERVER" --port 0 --host 127.0.0.1 --port-file "$WORK/port" \
  --state-dir "$WORK/state" --api-key "$API_KEY" >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!

for _ in $(seq 1 100); do
  [ -s "$WORK/port" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ ! -s "$WORK/port" ]; then
  echo "e2b test server did not start:" >&2
  cat "$WORK/server.err" >&2
  exit 1
fi
PORT="$(cat "$WORK/port")"

set +e
E2B_API_KEY="$API_KEY" \
E2B_API_URL="http://127.0.0.1:$PORT" \
E2B_SANDBOX_URL="http://127.0.0.1:$PORT" \
  node "$HERE/conformance.mjs"
status=$?
set -e

if [ -s "$WORK/server.err" ]; then
  echo "--- e2b server stderr ---" >&2
  cat "$WORK/server.err" >&2
fi
exit "$status"
