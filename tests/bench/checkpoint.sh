#!/usr/bin/env bash
# checkpoint.sh - the time of a checkpoint and of a rollback on the local
# backend, against the targets of issue 15:
#
#   checkpoint  10 000 files in 100 directories, 10 of them changed since
#               the last checkpoint: under 0.5 s
#   rollback    100 files changed since a checkpoint, back to it: under 1 s
#
# Each is timed OMNI_BENCH_ROUNDS times (3); the median counts. Exit 1
# when a target is missed.
#
# Usage: tests/bench/checkpoint.sh [WORKDIR]   (BUILD=build by default)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
bin="$here/$BUILD"
rounds=${OMNI_BENCH_ROUNDS:-3}
work=${1:-$(mktemp -d /tmp/omnifs-cpbench.XXXXXX)}
[ -x "$bin/omnifs" ] || { echo "build first: make" >&2; exit 1; }

export OMNI_RUNTIME_DIR="$work/run"
mkdir -m 0700 -p "$OMNI_RUNTIME_DIR"
mkdir -p "$work/data" "$work/mnt/cpbench"
mnt="$work/mnt/cpbench"

cleanup() {
	mountpoint -q "$mnt" && fusermount3 -u "$mnt"
	rm -rf "$work"
}
trap cleanup EXIT

"$bin/omnifs" --data-path "$work/data" "$mnt"
ox() { "$bin/omni-exec" --project cpbench "$@"; }

now() { date +%s.%N; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# The tree, written on the host side (the workspace) to be quick.
for d in $(seq 0 99); do
	mkdir -p "$work/data/cpbench/d$d"
	for f in $(seq 0 99); do
		printf 'file %d %d\n' "$d" "$f" > "$work/data/cpbench/d$d/f$f"
	done
done
ox --checkpoint base >/dev/null

cp_times=()
rb_times=()
for r in $(seq 1 "$rounds"); do
	for i in $(seq 0 9); do echo "round $r" >> "$mnt/d$i/f$r"; done
	t0=$(now)
	id=$(ox --checkpoint "ten changed, round $r")
	t1=$(now)
	cp_times+=("$(echo "$t1 - $t0" | bc -l)")

	for i in $(seq 0 99); do echo "changed $r" >> "$mnt/d$i/f$((r + 10))"; done
	t0=$(now)
	ox --rollback "$id" >/dev/null
	t1=$(now)
	rb_times+=("$(echo "$t1 - $t0" | bc -l)")
	grep -q "changed $r" "$mnt/d5/f$((r + 10))" && { echo "rollback did not restore" >&2; exit 1; }
done

cp=$(printf '%s\n' "${cp_times[@]}" | median)
rb=$(printf '%s\n' "${rb_times[@]}" | median)
printf 'checkpoint (10 000 files, 10 changed): %.3fs (target 0.5s)\n' "$cp"
printf 'rollback (100 files changed):          %.3fs (target 1s)\n' "$rb"
ok=0
[ "$(echo "$cp < 0.5" | bc -l)" = 1 ] || ok=1
[ "$(echo "$rb < 1.0" | bc -l)" = 1 ] || ok=1
exit $ok
