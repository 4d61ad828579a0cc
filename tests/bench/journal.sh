#!/usr/bin/env bash
# journal.sh - what the journal costs: the mutating workloads of
# local-fs.sh on two local mounts side by side, one with the journal (the
# default) and one with -o journal=off; the median of OMNI_BENCH_ROUNDS (7)
# counts. Reads are not measured: the journal does nothing on them.
#
#   create    10 000 small files (100 bytes) in 100 directories
#   seqwrite  OMNI_BENCH_SEQ_MB (256) MiB in 1 MiB blocks, fsync at the end
#   remove    unlink all the small files
#
# The two mounts take turns as finely as the workloads allow, so that the
# noise of a shared machine (other jobs, and ext4's inode allocator, whose
# cost depends on how many inodes were freed in the last seconds) hits
# both alike: each round runs every workload on one mount and then on the
# other, create and remove in OMNI_BENCH_SLICES (10) slices of the
# directories, the first mount alternating from slice to slice and round
# to round; seqwrite runs twice on each, in the order A B B A, after an
# untimed one. Each pause
# after a run outlasts the journal's commit interval, so a commit made for
# one mount does not land in the other's time. Prints every round, then
# the medians and the cost (on / off - 1); "paired" is the median of the
# rounds' own costs. A second table gives the CPU time of each daemon
# (all its threads, the journal's writer included, pauses included) over
# the same runs: less exposed to other jobs than elapsed time.
# OMNI_BENCH_CALIBRATE=1 mounts both with -o journal=off: the cost it
# shows is the noise of the machine. Last, journal-record.c's figures:
# the CPU time one record costs, measured without FUSE.
#
# Usage: tests/bench/journal.sh [WORKDIR]   (BUILD=build by default)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) bin=$BUILD ;; *) bin="$here/$BUILD" ;; esac
rounds=${OMNI_BENCH_ROUNDS:-7}
seq_mb=${OMNI_BENCH_SEQ_MB:-256}
slices=${OMNI_BENCH_SLICES:-10}
work=${1:-$(mktemp -d /tmp/omnifs-jbench.XXXXXX)}
[ -x "$bin/omnifs" ] || { echo "build first: make" >&2; exit 1; }
[ $((100 % slices)) -eq 0 ] || { echo "OMNI_BENCH_SLICES must divide 100" >&2; exit 2; }
per=$((100 / slices))

cleanup() {
	for m in "$work/mnt/jon" "$work/mnt/joff"; do
		if mountpoint -q "$m"; then fusermount3 -u "$m"; fi
	done
	rm -rf "$work"
}
trap cleanup EXIT

cc -O2 -o "$work/fsbench" "$here/tests/bench/fsbench.c"
fsbench="$work/fsbench"
# shellcheck disable=SC2046 # the libraries are words
cc -O2 -I"$here/backends/include" -I"$here/backends" -o "$work/jrecord" \
	"$here/tests/bench/journal-record.c" "$bin/libomni.a" \
	$(sed -n 's/^Libs.private: //p' "$bin/omni.pc")
mkdir -p "$work/jrecord-data"
record_cost=$("$work/jrecord" "$work/jrecord-data")
export OMNI_RUNTIME_DIR="$work/run"
mkdir -m 0700 -p "$OMNI_RUNTIME_DIR"
mkdir -p "$work/data" "$work/mnt/jon" "$work/mnt/joff"

on_opts=()
[ "${OMNI_BENCH_CALIBRATE:-0}" = 1 ] && on_opts=(-o journal=off)
"$bin/omnifs" --data-path "$work/data" "${on_opts[@]}" "$work/mnt/jon"
"$bin/omnifs" --data-path "$work/data" -o journal=off "$work/mnt/joff"
declare -A pid
pid[on]=$(pgrep -f -- "omnifs --data-path .* $work/mnt/jon\$")
pid[off]=$(pgrep -f -- "omnifs --data-path .* $work/mnt/joff\$")
# CPU seconds a daemon has used (user and system, every thread).
cpu() { awk '{ print ($14 + $15) / 100 }' "/proc/${pid[$1]}/stat"; }

timeit() {
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>&1
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}
quiet() { sync; sleep 0.3; }
# The two mounts, the first one alternating with n.
pair() { if (($1 % 2)); then echo off on; else echo on off; fi; }

# One run on mount m: add its seconds to t[m], its daemon's CPU seconds
# (the pause after it included) to c[m].
declare -A t c
run() {
	local m=$1 c0 s
	shift
	c0=$(cpu "$m")
	s=$("$@")
	sleep 0.6
	t[$m]=$(echo "${t[$m]} + $s" | bc -l)
	c[$m]=$(echo "${c[$m]} + $(cpu "$m") - $c0" | bc -l)
}

# One sliced workload (create or remove) on both mounts.
sliced() {
	local w=$1 i=$2 s m r
	t[on]=0 t[off]=0 c[on]=0 c[off]=0
	quiet
	for ((s = 0; s < slices; s++)); do
		for m in $(pair $((i + s))); do
			r="$work/mnt/j$m/small/s$s"
			if [ "$w" = create ]; then
				mkdir -p "$r"
				run "$m" "$fsbench" create "$r" "$per" 100 100
			else
				run "$m" "$fsbench" remove "$r" "$per" 100
				rmdir "$r"
			fi
		done
	done
	runs[on,$w]+=" ${t[on]}" runs[off,$w]+=" ${t[off]}"
	cpus[on,$w]+=" ${c[on]}" cpus[off,$w]+=" ${c[off]}"
}

declare -A runs cpus
last() { local a=($1); echo "${a[-1]}"; }
for ((i = 0; i < rounds; i++)); do
	sliced create "$i"
	# seqwrite: on this VM the first large write after other work lands
	# on memory the host took back and is 2 to 3 times slower, whichever
	# mount makes it; an untimed write takes that, then the order
	# A B B A (the time of each mount the mean of its two) evens out
	# the rest.
	t[on]=0 t[off]=0 c[on]=0 c[off]=0
	quiet
	first=$(pair "$i" | cut -d' ' -f1)
	dd if=/dev/zero of="$work/mnt/j$first/big" bs=1M count="$seq_mb" conv=fsync 2>/dev/null
	rm -f "$work/mnt/j$first/big"
	for m in $(pair "$i") $(pair $((i + 1))); do
		quiet
		run "$m" timeit dd if=/dev/zero of="$work/mnt/j$m/big" bs=1M count="$seq_mb" conv=fsync
		rm -f "$work/mnt/j$m/big"
	done
	for m in on off; do
		t[$m]=$(echo "${t[$m]} / 2" | bc -l) c[$m]=$(echo "${c[$m]} / 2" | bc -l)
	done
	runs[on,seqwrite]+=" ${t[on]}" runs[off,seqwrite]+=" ${t[off]}"
	cpus[on,seqwrite]+=" ${c[on]}" cpus[off,seqwrite]+=" ${c[off]}"
	sliced remove "$i"
	printf 'round %d of %d  on/off:' $((i + 1)) "$rounds" >&2
	for w in create seqwrite remove; do
		printf '  %s %.3f/%.3f s (cpu %.2f/%.2f)' "$w" \
			"$(last "${runs[on,$w]}")" "$(last "${runs[off,$w]}")" \
			"$(last "${cpus[on,$w]}")" "$(last "${cpus[off,$w]}")" >&2
	done
	echo >&2
done

median() { printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
costs() { paste -d' ' <(printf '%s\n' $1) <(printf '%s\n' $2) | awk '{ print ($1 - $2) * 100 / $2 }'; }
table() {
	local -n v=$1
	local w on off paired
	printf '\n%-10s %12s %12s %10s %10s\n' "$2" journal=on journal=off cost paired
	for w in create seqwrite remove; do
		on=$(median "${v[on,$w]}") off=$(median "${v[off,$w]}")
		paired=$(median "$(costs "${v[on,$w]}" "${v[off,$w]}")")
		printf '%-10s %11.3fs %11.3fs %+9.1f%% %+9.1f%%\n' "$w" "$on" "$off" \
			"$(echo "($on - $off) * 100 / $off" | bc -l)" "$paired"
	done
}
table runs elapsed
table cpus "daemon cpu"
echo "$record_cost (journal-record.c, best of 5)"
sqlite3 "$work/data/.omnifs-journal/jon.sqlite" \
	'SELECT count(*) || " records in the journal" FROM ops' 2>/dev/null || true
