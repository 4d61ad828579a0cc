#!/usr/bin/env bash
# journal.sh - what the journal costs: the mutating workloads of
# local-fs.sh on two local mounts side by side, one with the journal (the
# default) and one with -o journal=off, interleaved round by round so the
# machine's noise hits both alike; the median of OMNI_BENCH_ROUNDS (7)
# counts. Reads are not measured: the journal does nothing on them.
#
#   create    10 000 small files (100 bytes) in 100 directories
#   seqwrite  OMNI_BENCH_SEQ_MB (256) MiB in 1 MiB blocks, fsync at the end
#   remove    unlink all the small files
#
# Usage: tests/bench/journal.sh [WORKDIR]   (BUILD=build by default)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
bin="$here/$BUILD"
rounds=${OMNI_BENCH_ROUNDS:-7}
seq_mb=${OMNI_BENCH_SEQ_MB:-256}
work=${1:-$(mktemp -d /tmp/omnifs-jbench.XXXXXX)}
[ -x "$bin/omnifs" ] || { echo "build first: make" >&2; exit 1; }

cc -O2 -o "$work/fsbench" "$here/tests/bench/fsbench.c"
fsbench="$work/fsbench"
export OMNI_RUNTIME_DIR="$work/run"
mkdir -m 0700 -p "$OMNI_RUNTIME_DIR"
mkdir -p "$work/data" "$work/mnt/jon" "$work/mnt/joff"

cleanup() {
	for m in "$work/mnt/jon" "$work/mnt/joff"; do
		mountpoint -q "$m" && fusermount3 -u "$m"
	done
	rm -rf "$work"
}
trap cleanup EXIT

"$bin/omnifs" --data-path "$work/data" "$work/mnt/jon"
"$bin/omnifs" --data-path "$work/data" -o journal=off "$work/mnt/joff"

timeit() {
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>&1
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}
quiet() { sync; sleep 0.3; }

declare -A runs
targets=(on off)
for ((i = 0; i < rounds; i++)); do
	echo "== round $((i + 1)) of $rounds" >&2
	order=("${targets[@]:i%2}" "${targets[@]:0:i%2}")
	for t in "${order[@]}"; do
		r="$work/mnt/j$t"
		mkdir -p "$r/small"
		quiet; runs[$t,create]+=" $("$fsbench" create "$r/small" 100 100 100)"
		quiet; runs[$t,seqwrite]+=" $(timeit dd if=/dev/zero of="$r/big" bs=1M count="$seq_mb" conv=fsync)"
		rm -f "$r/big"
		quiet; runs[$t,remove]+=" $("$fsbench" remove "$r/small" 100 100)"
		rmdir "$r/small" 2>/dev/null || true
	done
done
median() { printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf '\n%-10s %12s %12s %10s\n' workload journal=on journal=off cost
for w in create seqwrite remove; do
	on=$(median "${runs[on,$w]}") off=$(median "${runs[off,$w]}")
	printf '%-10s %11.3fs %11.3fs %+9.1f%%\n' "$w" "$on" "$off" \
		"$(echo "($on - $off) * 100 / $off" | bc -l)"
done
sqlite3 "$work/data/.omnifs-journal/jon.sqlite" \
	'SELECT count(*) || " records in the journal" FROM ops' 2>/dev/null || true
