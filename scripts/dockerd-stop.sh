#!/usr/bin/env bash
# dockerd-stop.sh - stop the dockerd that scripts/dockerd-start.sh started.
#
# Reads STATE/dockerd.pid; if nothing was recorded (e.g. dockerd-start.sh reused
# a daemon that was already running) it does nothing. Otherwise it sends SIGTERM
# to that dockerd (only if the pid still is a dockerd), waits up to 30 s, then
# SIGKILLs it, and removes the pid file. If dockerd had started its own
# containerd (STATE/containerd.pid) and that containerd, or container shims
# attached to it, outlive dockerd, they are stopped too (SIGTERM, then SIGKILL),
# as is the docker-init reaper dockerd-start.sh ran it under (STATE/reaper.pid).
#
# Runs as root; as another user it uses sudo.
#
# Environment:
#   OMNI_DOCKERD_STATE         state dir used by dockerd-start.sh (default /tmp/omnifs-dockerd)
#   OMNI_DOCKERD_STOP_TIMEOUT  seconds to wait after SIGTERM (default 30)
set -euo pipefail

STATE=${OMNI_DOCKERD_STATE:-/tmp/omnifs-dockerd}
PIDF=$STATE/dockerd.pid
CPIDF=$STATE/containerd.pid
RPIDF=$STATE/reaper.pid
TIMEOUT=${OMNI_DOCKERD_STOP_TIMEOUT:-30}
# socket of the containerd that dockerd manages itself (exec-root/containerd)
MANAGED_CTRD_SOCK=/var/run/docker/containerd/containerd.sock

say() { printf 'dockerd-stop: %s\n' "$*"; }
die() { printf 'dockerd-stop: error: %s\n' "$*" >&2; exit 1; }

# Root is only required once something has to be stopped (checked lazily).
SUDO=()
can_root=1
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        if sudo -n true 2>/dev/null; then SUDO=(sudo -n); else SUDO=(sudo); fi
    else
        can_root=0
    fi
fi
as_root() {
    [ "$can_root" = 1 ] || die "not root and sudo is not available (needed for: $1); run this script as root"
    "${SUDO[@]}" "$@"
}

proc_is() { # pid name: true if pid is alive (not a zombie) and its comm is name
    [ -n "$1" ] && [ -r "/proc/$1/comm" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] &&
        ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# stop_pid PID NAME TIMEOUT: TERM, wait, KILL; only while PID still is NAME.
stop_pid() {
    local pid=$1 name=$2 t=$3 i
    proc_is "$pid" "$name" || return 0
    say "sending SIGTERM to $name pid $pid"
    as_root kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < t * 10; i++)); do
        proc_is "$pid" "$name" || { say "$name pid $pid exited"; return 0; }
        sleep 0.1
    done
    say "$name pid $pid still running after ${t}s; sending SIGKILL"
    as_root kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        proc_is "$pid" "$name" || { say "$name pid $pid killed"; return 0; }
        sleep 0.1
    done
    die "$name pid $pid survived SIGKILL"
}

if [ ! -f "$PIDF" ]; then
    say "no dockerd recorded in $PIDF; nothing to stop"
    exit 0
fi

pid=$(cat "$PIDF" 2>/dev/null || true)
cpid=""
if [ -f "$CPIDF" ]; then cpid=$(cat "$CPIDF" 2>/dev/null || true); fi
rpid=""
if [ -f "$RPIDF" ]; then rpid=$(cat "$RPIDF" 2>/dev/null || true); fi

if proc_is "$pid" dockerd; then
    stop_pid "$pid" dockerd "$TIMEOUT"
else
    say "recorded pid '$pid' is not a running dockerd (already stopped)"
fi

if [ -n "$cpid" ]; then
    # dockerd normally stops its own containerd; give it a moment, then insist.
    for _ in $(seq 1 20); do proc_is "$cpid" containerd || break; sleep 0.1; done
    if proc_is "$cpid" containerd; then
        say "containerd pid $cpid (started by that dockerd) lingers"
        stop_pid "$cpid" containerd 10
    fi
    # Shims of containers of that containerd (they are reparented on exit).
    for d in /proc/[0-9]*; do
        p=${d#/proc/}
        case $(cat "$d/comm" 2>/dev/null || true) in
        containerd-shim*) ;;
        *) continue ;;
        esac
        if tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -qF -- "$MANAGED_CTRD_SOCK"; then
            comm=$(cat "$d/comm" 2>/dev/null || true)
            say "shim pid $p of that containerd lingers (dockerd did not stop its containers)"
            # Its children are the containers' init processes: killing a PID
            # namespace's init kills everything in that container.
            for c in $(pgrep -P "$p" 2>/dev/null || true); do
                say "killing container init pid $c ($(cat "/proc/$c/comm" 2>/dev/null || echo '?'))"
                as_root kill -KILL "$c" 2>/dev/null || true
            done
            stop_pid "$p" "$comm" 5
        fi
    done
fi

# The docker-init (tini) reaper exits by itself once dockerd has exited.
if [ -n "$rpid" ]; then
    rcomm=$(cat "/proc/$rpid/comm" 2>/dev/null || true)
    case $rcomm in
    docker-init | tini*)
        for _ in $(seq 1 20); do proc_is "$rpid" "$rcomm" || break; sleep 0.1; done
        stop_pid "$rpid" "$rcomm" 5
        ;;
    esac
fi

rm -f "$PIDF" "$CPIDF" "$RPIDF"
say "done"
