#!/usr/bin/env bash
# dockerd-remote-stop.sh - stop the second dockerd of dockerd-remote-start.sh
# (SIGTERM, up to 30 s, then SIGKILL; its own containerd goes with it) and
# drop its data (containers, volumes, the loaded image), keeping the
# certificates. Does nothing when none runs. Runs as root.
#
# Environment: OMNI_DOCKERD_REMOTE_STATE as for the start script.
set -euo pipefail

STATE=${OMNI_DOCKERD_REMOTE_STATE:-/var/lib/omnifs-dockerd-remote}
PIDF=$STATE/dockerd.pid

say() { printf 'dockerd-remote-stop: %s\n' "$*"; }

pid=$(cat "$PIDF" 2>/dev/null || true)
if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" != dockerd ]; then
    say "no second dockerd runs"
    exit 0
fi
# Its containerd, to be sure it goes too.
cpid=$(pgrep -P "$pid" -x containerd 2>/dev/null | head -n 1 || true)
kill -TERM "$pid"
for _ in $(seq 1 300); do
    [ -d "/proc/$pid" ] || break
    sleep 0.1
done
if [ -d "/proc/$pid" ]; then
    say "dockerd pid $pid still runs after 30 s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
fi
if [ -n "$cpid" ] && [ -d "/proc/$cpid" ]; then
    sleep 1
    kill -TERM "$cpid" 2>/dev/null || true
fi
rm -f "$PIDF"
say "stopped dockerd pid $pid"
# Its data, unless something is still mounted there (then it stays for a
# later look).
if grep -qF " $STATE/" /proc/mounts; then
    say "mounts remain under $STATE; its data is kept"
else
    rm -rf "$STATE/data" "$STATE/exec"
fi
