#!/usr/bin/env bash
# docker-restart.sh - the docker backend finds its container again after
# the Docker daemon restarted (as after a reboot): a session is started and
# crashes (kill -9, so its container stays), dockerd is restarted (which
# stops every container), and a new session of the same project must
# reuse that very container, with the workspace as it was.
#
# It restarts dockerd, so scripts/run-tests.sh runs it after the parallel
# suites, and only when the daemon is one that scripts/dockerd-start.sh
# manages. Prints "1 passed, 0 failed" or "0 passed, 1 failed".
#
# Environment: BUILD (default build), IMAGE (default omnifs-test/busybox:latest).
set -uo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) bin=$BUILD ;; *) bin="$here/$BUILD" ;; esac
IMAGE=${IMAGE:-omnifs-test/busybox:latest}
sock=/var/run/docker.sock
tmp=$(mktemp -d /tmp/omnifs-restart.XXXXXX)
project="restart-$$"
mnt="$tmp/$project"
export OMNI_RUNTIME_DIR="$tmp/run"
mkdir -p "$mnt" && mkdir -m 0700 "$OMNI_RUNTIME_DIR"

api() { curl -s --unix-socket "$sock" "$@"; }
container_id() {
	api "http://localhost/containers/omniagents-$project/json" |
		sed -n 's/^{"Id":"\([0-9a-f]*\)".*/\1/p'
}
cleanup() {
	mountpoint -q "$mnt" && fusermount3 -u "$mnt" 2>/dev/null
	pkill -KILL -f -- "--data-path $tmp/data" 2>/dev/null
	api -X DELETE "http://localhost/containers/omniagents-$project?force=true" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
	echo "docker-restart: FAIL: $*" >&2
	echo "0 passed, 1 failed"
	exit 1
}
mount_session() {
	"$bin/omnifs" --backend docker --image "$IMAGE" --data-path "$tmp/data" "$mnt" ||
		fail "omnifs did not start"
}

mount_session
"$bin/omni-exec" --project "$project" -c 'echo before > f' || fail "first command"
id1=$(container_id)
[ -n "$id1" ] || fail "no container after the first mount"

# Crash the session: the container stays behind.
pkill -KILL -f -- "--data-path $tmp/data" || fail "cannot find the daemon"
sleep 0.5
fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null

# Restart the Docker daemon; it stops every container on the way down.
"$here/scripts/dockerd-stop.sh" >/dev/null || fail "dockerd-stop.sh"
"$here/scripts/dockerd-start.sh" >/dev/null || fail "dockerd-start.sh"
state=$(api "http://localhost/containers/omniagents-$project/json" |
	sed -n 's/.*"Status":"\([a-z]*\)".*/\1/p')
[ "$state" != running ] || fail "the container still runs after the restart"

mount_session
id2=$(container_id)
[ "$id1" = "$id2" ] || fail "a new container ($id2) instead of the old one ($id1)"
out=$("$bin/omni-exec" --project "$project" cat f) || fail "command after the restart"
[ "$out" = before ] || fail "the workspace changed: '$out'"
fusermount3 -u "$mnt" || fail "unmount"
for _ in $(seq 100); do
	[ -z "$(container_id)" ] && break
	sleep 0.1
done
[ -z "$(container_id)" ] || fail "the container was not removed on unmount"
echo "docker-restart: container ${id1:0:12} reused after a daemon restart"
echo "1 passed, 0 failed"
