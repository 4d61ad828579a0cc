#!/usr/bin/env bash
# docker-exec.sh - the round trip of a trivial command on the docker backend,
# against the ways Docker itself offers, in one run on one container:
#
#   omni-exec (docker)  `omni-exec true` in an omnifs mount on the docker
#                       backend: omni-exec -> omnifs control socket -> the
#                       container's omni-agent -> fork+exec of true
#   docker exec         `docker exec CONTAINER true` on that same container
#   Engine API exec     POST /containers/ID/exec, then POST /exec/ID/start
#                       with Detach=false (two `curl --unix-socket` calls,
#                       timed together) on that same container
#   omni-exec (local)   `omni-exec true` in a mount on the local backend:
#                       the floor (no container at all)
#
# Each is run RUNS times (default 30) after 3 warm-up runs; the script prints
# the median, min and max of each in milliseconds, and the ratios
# docker exec / omni-exec and Engine API / omni-exec (the issue's target:
# at least 10x).
#
# Usage: tests/bench/docker-exec.sh [RUNS]
#   BUILD=build (default; relative to the source tree, or absolute), IMAGE=omnifs-test/busybox:latest (default; see
#   scripts/make-test-images.sh). Needs a running dockerd, curl, the docker
#   CLI, fusermount3; bash 5 (EPOCHREALTIME) for the clock.
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) bin=$BUILD ;; *) bin="$here/$BUILD" ;; esac
IMAGE=${IMAGE:-omnifs-test/busybox:latest}
RUNS=${1:-30}
SOCK=/var/run/docker.sock
if [[ ${DOCKER_HOST:-} == unix://* ]]; then SOCK=${DOCKER_HOST#unix://}; fi

die() { echo "docker-exec.sh: $*" >&2; exit 1; }
for p in omnifs omni-exec omni-agent; do
	[ -x "$bin/$p" ] || die "$bin/$p is missing: run make"
done
command -v docker >/dev/null || die "the docker CLI is needed"
command -v curl >/dev/null || die "curl is needed"
[ -n "${EPOCHREALTIME:-}" ] || die "bash 5 is needed (EPOCHREALTIME)"
curl -sf --unix-socket "$SOCK" http://localhost/_ping >/dev/null ||
	die "no Docker daemon at $SOCK (scripts/dockerd-start.sh)"
curl -sf --unix-socket "$SOCK" "http://localhost/v1.41/images/$IMAGE/json" >/dev/null ||
	die "image $IMAGE is missing (scripts/make-test-images.sh)"

work=$(mktemp -d /tmp/omnifs-bench-exec.XXXXXX)
export OMNI_RUNTIME_DIR="$work/run"
mkdir -m 0700 -p "$OMNI_RUNTIME_DIR"
dk_project=omnibench-dk-$$
lo_project=omnibench-lo-$$
dk_mnt="$work/$dk_project"
lo_mnt="$work/$lo_project"
container=omniagents-$dk_project
mkdir -p "$dk_mnt" "$lo_mnt"

cleanup() {
	for d in "$dk_mnt" "$lo_mnt"; do
		if mountpoint -q "$d"; then
			fusermount3 -u "$d" 2>/dev/null || umount -l "$d" 2>/dev/null || true
		fi
	done
	# omnifs removes its container on unmount; make sure of it.
	for _ in $(seq 50); do
		docker inspect "$container" >/dev/null 2>&1 || break
		sleep 0.1
	done
	docker rm -f "$container" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bin/omnifs" --backend docker --image "$IMAGE" --network none -q \
	--data-path "$work/data" "$dk_mnt"
"$bin/omnifs" --data-path "$work/data" "$lo_mnt"
id=$(docker inspect -f '{{.Id}}' "$container")

# One round of the Engine API: create the exec, start it attached (the
# daemon streams until the process ends; no Upgrade header, so a plain 200).
api_exec() {
	local eid
	eid=$(curl -sf --unix-socket "$SOCK" -H 'Content-Type: application/json' \
		-d '{"Cmd":["true"],"AttachStdout":true,"AttachStderr":true}' \
		"http://localhost/v1.41/containers/$id/exec" | sed 's/.*"Id":"\([0-9a-f]*\)".*/\1/')
	curl -sf --unix-socket "$SOCK" -H 'Content-Type: application/json' \
		-d '{"Detach":false,"Tty":false}' \
		"http://localhost/v1.41/exec/$eid/start" >/dev/null
}
omni_dk() { (cd "$dk_mnt" && "$bin/omni-exec" true); }
omni_lo() { (cd "$lo_mnt" && "$bin/omni-exec" true); }
dock() { docker exec "$id" true; }

us() { local t=${1/./}; echo $((10#$t)); } # EPOCHREALTIME -> microseconds

# measure NAME FUNCTION: RUNS timed runs after 3 warm-ups; sets times[NAME]
# to the sorted list of microseconds.
declare -A times
measure() {
	local name=$1 fn=$2 i t0 t1 list=()
	for i in 1 2 3; do "$fn" >/dev/null; done
	for ((i = 0; i < RUNS; i++)); do
		t0=$EPOCHREALTIME
		"$fn" >/dev/null
		t1=$EPOCHREALTIME
		list+=($(($(us "$t1") - $(us "$t0"))))
	done
	times[$name]=$(printf '%s\n' "${list[@]}" | sort -n | tr '\n' ' ')
}
median() { local a=(${times[$1]}); local n=${#a[@]}; echo $(((a[(n - 1) / 2] + a[n / 2]) / 2)); }
minv() { local a=(${times[$1]}); echo "${a[0]}"; }
maxv() { local a=(${times[$1]}); echo "${a[-1]}"; }
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }

echo "docker-exec.sh: $RUNS runs each on container ${id:0:12} ($IMAGE)" >&2
measure "omni-exec (docker)" omni_dk
measure "docker exec" dock
measure "Engine API exec" api_exec
measure "omni-exec (local)" omni_lo

printf '%-20s %10s %10s %10s\n' "" "median ms" "min ms" "max ms"
for k in "omni-exec (docker)" "docker exec" "Engine API exec" "omni-exec (local)"; do
	printf '%-20s %10s %10s %10s\n' "$k" "$(ms "$(median "$k")")" \
		"$(ms "$(minv "$k")")" "$(ms "$(maxv "$k")")"
done
o=$(median "omni-exec (docker)")
awk -v d="$(median "docker exec")" -v a="$(median "Engine API exec")" -v o="$o" 'BEGIN {
	printf "docker exec / omni-exec:     %.1fx\n", d / o
	printf "Engine API exec / omni-exec: %.1fx\n", a / o
}'
