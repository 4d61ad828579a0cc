#!/usr/bin/env bash
# run.sh - conformance check of the omnifs GCS test server
# (tests/servers/gcs/server.js) against the official @google-cloud/storage
# client pinned in package-lock.json.
#
# Installs the client with `npm ci`, starts the server on a free port,
# runs conformance.mjs with STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT and
# stops the server on exit.  Works from any directory; exit status is
# non-zero when anything fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVER_JS="$(cd "$HERE/../../servers/gcs" && pwd)/server.js"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gcs-conformance.XXXXXX")"
SERVER_PID=""
CHECKS_PID=""

# stop_pid PID: SIGTERM, wait up to 5 s, then SIGKILL
stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    stop_pid "$CHECKS_PID"   # it stops the extra servers it started itself
    stop_pid "$SERVER_PID"
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v node >/dev/null || { echo "run.sh: node is not installed" >&2; exit 1; }
command -v npm >/dev/null || { echo "run.sh: npm is not installed" >&2; exit 1; }

# 1. the pinned client
cd "$HERE"
if ! npm ci --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1; then
    echo "run.sh: npm ci failed:" >&2
    cat "$WORK/npm.log" >&2
    exit 1
fi

# 2. the server, on a free port
node "$SERVER_JS" --port 0 --host 127.0.0.1 --port-file "$WORK/port" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
    [ -s "$WORK/port" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if [ ! -s "$WORK/port" ]; then
    echo "run.sh: the GCS test server did not start:" >&2
    cat "$WORK/server.log" >&2
    exit 1
fi
PORT="$(cat "$WORK/port")"

# 3. the checks (the scheme is required: without it the Node client
#    would use https:// for uploads)
#    (run in the background and waited for, so that a signal to this
#    script triggers the cleanup at once)
STORAGE_EMULATOR_HOST="http://127.0.0.1:$PORT" GCS_TEST_SERVER_JS="$SERVER_JS" \
    node "$HERE/conformance.mjs" &
CHECKS_PID=$!
rc=0
wait "$CHECKS_PID" || rc=$?
CHECKS_PID=""

if [ "$rc" -ne 0 ] && [ -s "$WORK/server.log" ]; then
    echo "--- server log ---" >&2
    cat "$WORK/server.log" >&2
fi
exit "$rc"
