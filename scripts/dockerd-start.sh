#!/usr/bin/env bash
# dockerd-start.sh - make sure a Docker daemon answers on /var/run/docker.sock.
#
# Idempotent:
#   * If a daemon already answers on the socket, say it is being reused and
#     exit 0 WITHOUT recording anything (dockerd-stop.sh will then leave it alone).
#   * If a dockerd that this script started earlier is still starting up, wait for it.
#   * Otherwise (installing Debian's docker.io with apt-get if dockerd is missing)
#     start `dockerd --bridge=none --iptables=false --ip6tables=false
#     --storage-driver=DRIVER` in the background (own session, log in the state
#     dir), wait until it answers /_ping and record its pid in STATE/dockerd.pid
#     (and the pid of the containerd it spawned, if any, in STATE/containerd.pid)
#     so that scripts/dockerd-stop.sh stops only what was started here.
#
# Runs as root; as another user it uses sudo (non-interactive if possible) and
# fails clearly if sudo is not available.
#
# Environment:
#   OMNI_DOCKERD_STATE           state dir: dockerd.log, dockerd.pid, containerd.pid
#                                (default /tmp/omnifs-dockerd)
#   OMNI_DOCKERD_STORAGE_DRIVER  overlay2 | vfs | auto (default auto: keep the driver
#                                that already holds data under the data root, else
#                                overlay2 if a test overlay mount works there, else vfs)
#   OMNI_DOCKERD_DATA_ROOT       passed as --data-root if set (default: dockerd's
#                                own default, /var/lib/docker)
#   OMNI_DOCKERD_TIMEOUT         seconds to wait for the daemon to answer (default 60)
#   OMNI_DOCKERD_EXTRA_ARGS      extra dockerd arguments, split on whitespace
#   OMNI_DOCKERD_REAPER          auto (default) | none. auto runs dockerd under
#                                `docker-init -s` (tini as a child subreaper) when
#                                docker-init/tini is installed, so exited container
#                                shims are reaped even where PID 1 does not reap
#                                orphans (as on this project's Firecracker VMs).
set -euo pipefail

STATE=${OMNI_DOCKERD_STATE:-/tmp/omnifs-dockerd}
SOCK=/var/run/docker.sock
DAEMON_PIDFILE=/var/run/docker.pid # dockerd's own default --pidfile (its lock)
TIMEOUT=${OMNI_DOCKERD_TIMEOUT:-60}
DRIVER=${OMNI_DOCKERD_STORAGE_DRIVER:-auto}
DATA_ROOT_ARG=${OMNI_DOCKERD_DATA_ROOT:-}
DATA_ROOT=${DATA_ROOT_ARG:-/var/lib/docker}
LOG=$STATE/dockerd.log
PIDF=$STATE/dockerd.pid
CPIDF=$STATE/containerd.pid
RPIDF=$STATE/reaper.pid
REAPER_MODE=${OMNI_DOCKERD_REAPER:-auto}

say() { printf 'dockerd-start: %s\n' "$*"; }
die() { printf 'dockerd-start: error: %s\n' "$*" >&2; exit 1; }

# --- privileges ------------------------------------------------------------
# Root is only required once something has to be done (checked lazily, so that a
# non-root user with access to a running daemon needs neither root nor sudo).
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

# --- is a daemon answering? ------------------------------------------------
ping_daemon() {
    local out
    if command -v curl >/dev/null 2>&1; then
        if [ -S "$SOCK" ] && [ ! -w "$SOCK" ] && [ "${#SUDO[@]}" -gt 0 ] && [ "$can_root" = 1 ]; then
            # root-owned socket we cannot open: ask as root, never prompt here
            out=$(sudo -n curl -s --max-time 3 --unix-socket "$SOCK" http://localhost/_ping 2>/dev/null) || return 1
        else
            out=$(curl -s --max-time 3 --unix-socket "$SOCK" http://localhost/_ping 2>/dev/null) || return 1
        fi
        [ "$out" = OK ]
    elif [ "$can_root" = 1 ]; then
        "${SUDO[@]}" docker -H "unix://$SOCK" info >/dev/null 2>&1
    else
        docker -H "unix://$SOCK" info >/dev/null 2>&1
    fi
}

proc_is() { # pid name: true if pid is alive (not a zombie) and its comm is name
    [ -n "$1" ] && [ -r "/proc/$1/comm" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] &&
        ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

print_log_tail() {
    if [ -f "$LOG" ]; then
        printf 'dockerd-start: last lines of %s:\n' "$LOG" >&2
        tail -n 30 "$LOG" | sed 's/^/    /' >&2
    fi
}

if ping_daemon; then
    if [ -f "$PIDF" ] && proc_is "$(cat "$PIDF" 2>/dev/null || true)" dockerd; then
        say "dockerd pid $(cat "$PIDF") started earlier by this script answers on $SOCK; reusing it"
    else
        say "a Docker daemon already answers on $SOCK; reusing it (nothing recorded)"
    fi
    exit 0
fi

if [ "$can_root" != 1 ]; then
    if [ -S "$SOCK" ] && [ ! -w "$SOCK" ]; then
        die "$SOCK exists but $(id -un) cannot use it (not in group docker?), and sudo is not available"
    fi
    die "no Docker daemon answers on $SOCK; starting one needs root and sudo is not available: run this script as root"
fi

mkdir -p "$STATE"

# A dockerd we started earlier that is alive but not answering yet: wait for it.
started_pid=""
if [ -f "$PIDF" ]; then
    old=$(cat "$PIDF" 2>/dev/null || true)
    if proc_is "$old" dockerd; then
        say "dockerd pid $old (started earlier by this script) is alive but not answering yet; waiting"
        started_pid=$old
    else
        say "removing stale $PIDF (pid '${old}' is not a running dockerd)"
        rm -f "$PIDF" "$CPIDF" "$RPIDF"
    fi
fi

if [ -z "$started_pid" ]; then
    # --- make sure dockerd exists ------------------------------------------
    if ! command -v dockerd >/dev/null 2>&1 && [ ! -x /usr/sbin/dockerd ]; then
        command -v apt-get >/dev/null 2>&1 || die "dockerd is missing and apt-get is not available to install docker.io"
        say "dockerd not found; installing docker.io with apt-get"
        if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io; then
            as_root apt-get update
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io ||
                die "apt-get install docker.io failed"
        fi
    fi
    DOCKERD=$(command -v dockerd 2>/dev/null || echo /usr/sbin/dockerd)
    [ -x "$DOCKERD" ] || die "dockerd not found after installing docker.io"

    # Another dockerd holding the lock but not answering on our socket?
    if [ -r "$DAEMON_PIDFILE" ]; then
        lockpid=$(cat "$DAEMON_PIDFILE" 2>/dev/null || true)
        if proc_is "$lockpid" dockerd; then
            die "a dockerd (pid $lockpid, see $DAEMON_PIDFILE) is running but does not answer on $SOCK; not starting a second one"
        fi
        # Stale (e.g. after SIGKILL). Remove it: dockerd refuses to start while
        # the pid in it exists, and a zombie dockerd still "exists".
        say "removing stale $DAEMON_PIDFILE (pid '${lockpid}')"
        as_root rm -f "$DAEMON_PIDFILE"
    fi

    # --- choose a storage driver -------------------------------------------
    probe_overlay() { # can an overlay mount be made on the data root's filesystem?
        local base=$DATA_ROOT d rc=1
        while [ ! -d "$base" ]; do base=$(dirname "$base"); done
        d=$(as_root mktemp -d "$base/.omnifs-overlay-probe.XXXXXX") || return 1
        if as_root mkdir "$d/l" "$d/u" "$d/w" "$d/m" &&
            as_root mount -t overlay overlay -o "lowerdir=$d/l,upperdir=$d/u,workdir=$d/w" "$d/m" 2>/dev/null; then
            as_root umount "$d/m" && rc=0
        fi
        as_root rm -rf "$d"
        return $rc
    }
    # shellcheck disable=SC2016 # $1 is expanded by the inner sh
    has_data() { as_root sh -c '[ -d "$1" ] && [ -n "$(ls -A "$1" 2>/dev/null)" ]' sh "$1"; }
    case $DRIVER in
    auto)
        if has_data "$DATA_ROOT/overlay2" && ! has_data "$DATA_ROOT/vfs"; then
            DRIVER=overlay2
            why="existing overlay2 data in $DATA_ROOT"
        elif has_data "$DATA_ROOT/vfs" && ! has_data "$DATA_ROOT/overlay2"; then
            DRIVER=vfs
            why="existing vfs data in $DATA_ROOT"
        elif probe_overlay; then
            DRIVER=overlay2
            why="a test overlay mount next to $DATA_ROOT works"
        else
            DRIVER=vfs
            why="overlay mounts do not work next to $DATA_ROOT"
        fi
        ;;
    overlay2 | vfs) why="OMNI_DOCKERD_STORAGE_DRIVER" ;;
    *) why="OMNI_DOCKERD_STORAGE_DRIVER (not overlay2/vfs, passed as is)" ;;
    esac

    args=(--bridge=none --iptables=false --storage-driver="$DRIVER")
    if "$DOCKERD" --help 2>&1 | grep -q -- '--ip6tables'; then
        args+=(--ip6tables=false)
    fi
    if [ -n "$DATA_ROOT_ARG" ]; then args+=(--data-root="$DATA_ROOT_ARG"); fi
    if [ -n "${OMNI_DOCKERD_EXTRA_ARGS:-}" ]; then
        read -r -a extra <<<"$OMNI_DOCKERD_EXTRA_ARGS"
        args+=("${extra[@]}")
    fi

    reaper=()
    if [ "$REAPER_MODE" != none ]; then
        for r in docker-init tini-static tini; do
            if command -v "$r" >/dev/null 2>&1; then
                reaper=("$(command -v "$r")" -s --)
                break
            fi
        done
    fi

    say "storage driver: $DRIVER ($why)"
    say "starting: ${reaper[*]}${reaper[*]:+ }$DOCKERD ${args[*]}  (log: $LOG)"
    printf '==== %s dockerd-start: %s\n' "$(date '+%F %T')" "${reaper[*]} $DOCKERD ${args[*]}" >>"$LOG"
    # setsid: own session, so the caller's job control / Ctrl-C does not hit it.
    # Not through the as_root function: a backgrounded function would leave a
    # bash subshell behind as dockerd's parent.
    "${SUDO[@]}" setsid "${reaper[@]}" "$DOCKERD" "${args[@]}" </dev/null >>"$LOG" 2>&1 &
    launcher=$!
fi

# --- wait until it answers -------------------------------------------------
deadline=$((SECONDS + TIMEOUT))
until ping_daemon; do
    if [ -z "$started_pid" ] && ! kill -0 "$launcher" 2>/dev/null; then
        wait "$launcher" 2>/dev/null && rc=0 || rc=$?
        print_log_tail
        die "dockerd exited during startup (status $rc)"
    fi
    if [ -n "$started_pid" ] && ! proc_is "$started_pid" dockerd; then
        print_log_tail
        rm -f "$PIDF" "$CPIDF" "$RPIDF"
        die "dockerd pid $started_pid exited while starting"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        print_log_tail
        pid=${started_pid:-$(cat "$DAEMON_PIDFILE" 2>/dev/null || true)}
        if proc_is "$pid" dockerd; then
            say "stopping the dockerd (pid $pid) that did not answer in time"
            as_root kill -TERM "$pid" 2>/dev/null || true
        fi
        rm -f "$PIDF" "$CPIDF" "$RPIDF"
        die "dockerd did not answer on $SOCK within ${TIMEOUT}s"
    fi
    sleep 0.5
done

if [ -n "$started_pid" ]; then
    say "dockerd pid $started_pid answers on $SOCK"
    exit 0
fi

# --- record what we started -----------------------------------------------
pid=$(cat "$DAEMON_PIDFILE" 2>/dev/null || true)
if ! proc_is "$pid" dockerd; then
    # as root, setsid execs in place (we are not a group leader): $launcher is
    # dockerd itself, or the reaper whose child dockerd is
    pid=$launcher
    proc_is "$pid" dockerd || pid=$(pgrep -P "$launcher" -x dockerd 2>/dev/null | head -n 1 || true)
fi
proc_is "$pid" dockerd || die "dockerd answers but its pid could not be determined"
echo "$pid" >"$PIDF"
rm -f "$RPIDF"
ppid=$(awk '$1 == "PPid:" { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
if [ "${#reaper[@]}" -gt 0 ] && [ -n "$ppid" ] && [ "$ppid" != 1 ]; then
    rcomm=$(cat "/proc/$ppid/comm" 2>/dev/null || true)
    case $rcomm in
    docker-init | tini*) echo "$ppid" >"$RPIDF" ;;
    esac
fi

# dockerd starts its own containerd when no system containerd is running.
cpid=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
    cpid=$(pgrep -P "$pid" -x containerd 2>/dev/null | head -n 1 || true)
    [ -n "$cpid" ] && break
    sleep 0.2
done
if [ -n "$cpid" ]; then
    echo "$cpid" >"$CPIDF"
    say "dockerd pid $pid is up (own containerd pid $cpid); recorded in $STATE"
else
    rm -f "$CPIDF"
    say "dockerd pid $pid is up (using an existing containerd); recorded in $PIDF"
fi
if [ "${#SUDO[@]}" -gt 0 ] && [ ! -w "$SOCK" ]; then
    say "note: $SOCK is not writable by $(id -un); use sudo docker or join the 'docker' group"
fi
