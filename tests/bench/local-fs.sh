#!/usr/bin/env bash
# local-fs.sh - omnifs on the local backend against the native directory,
# a bindfs mount of it and, when PASSTHROUGH_HP names its binary, libfuse's
# passthrough_hp example (not part of the project), the same workloads in
# one run:
#
#   create   10 000 small files (100 bytes) in 100 directories
#   stat     stat(2) of all of them
#   ls -lR   of the whole tree
#   read     open + read + close of all of them
#   seqwrite 1 GiB, 1 MiB blocks, fsync at the end (dd conv=fsync)
#   seqread  the same file, page cache dropped first (cold)
#   reread   the same file again (warm: from the page cache)
#   git      `git status` on a committed tree of 3 000 files (warm)
#   remove   unlink all the small files and their directories
#   touch    `touch` of 100 000 new files in one directory (xargs)
#
# Every workload runs three times (OMNI_BENCH_ROUNDS) on each target in
# turn, and the median counts. Prints the time of each workload per target, then omnifs' speed relative
# to native (native time / omnifs time: 1.0 is native speed) and to bindfs
# (bindfs time / omnifs time: 3.0 means three times faster than bindfs).
#
# Usage: tests/bench/local-fs.sh [WORKDIR]   (root; BUILD=build by default,
# relative to the source tree or absolute; OMNI_BENCH_SEQ_MB=1024 sets the
# sequential size, OMNI_BENCH_TOUCH=100000 the touch count (0: skip it),
# OMNI_BENCH_OMNIFS_OPTS extra omnifs options, PASSTHROUGH_HP=/path adds a
# column)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) bin=$BUILD ;; *) bin="$here/$BUILD" ;; esac
touch_n=${OMNI_BENCH_TOUCH:-100000}
pthp=${PASSTHROUGH_HP:-}
# passthrough_hp holds a descriptor per inode the kernel keeps: past the
# descriptor limit its creates fail (EMFILE), so stay under it when it runs.
# (omnifs keeps descriptors of directories and open files only.)
fd_limit=$(ulimit -n)
if [ -n "$pthp" ] && [ "$fd_limit" != unlimited ] && [ "$touch_n" -gt $((fd_limit * 3 / 4)) ]; then
	touch_n=$((fd_limit * 3 / 4))
	echo "touch: $touch_n files (ulimit -n is $fd_limit, for passthrough_hp)" >&2
fi
seq_mb=${OMNI_BENCH_SEQ_MB:-1024}
work=${1:-$(mktemp -d /tmp/omnifs-bench.XXXXXX)}
mkdir -p "$work"
command -v bindfs >/dev/null || { echo "bindfs is needed (apt-get install bindfs)" >&2; exit 1; }
[ -x "$bin/omnifs" ] || { echo "build first: make" >&2; exit 1; }

cc -O2 -o "$work/fsbench" "$here/tests/bench/fsbench.c"
fsbench="$work/fsbench"

export OMNI_RUNTIME_DIR="$work/run"
mkdir -m 0700 -p "$OMNI_RUNTIME_DIR"
mkdir -p "$work/native" "$work/bind-src" "$work/bind" "$work/pthp-src" "$work/pthp" "$work/data/bench" "$work/omni/bench"

cleanup() {
	for d in "$work/bind" "$work/pthp" "$work/omni/bench"; do
		mountpoint -q "$d" && { fusermount3 -u "$d" 2>/dev/null || fusermount -u "$d" 2>/dev/null || umount -l "$d"; }
	done
	rm -rf "$work"
}
trap cleanup EXIT

bindfs "$work/bind-src" "$work/bind"
"$bin/omnifs" --data-path "$work/data" ${OMNI_BENCH_OMNIFS_OPTS:-} "$work/omni/bench"

targets=(native bindfs omnifs)
declare -A root=([native]="$work/native" [bindfs]="$work/bind" [omnifs]="$work/omni/bench")
declare -A backing=([native]="$work/native" [bindfs]="$work/bind-src" [omnifs]="$work/data/bench")
if [ -n "$pthp" ]; then
	"$pthp" "$work/pthp-src" "$work/pthp"
	targets=(native bindfs pthp omnifs)
	root[pthp]="$work/pthp" backing[pthp]="$work/pthp-src"
fi
declare -A result

timeit() { # prints seconds taken by "$@"
	local t0 t1
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>&1
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }


make_git_tree() { # a committed tree of 3 000 files, made natively
	local d=$1/repo
	mkdir -p "$d"
	(cd "$d" && git init -q && git config user.email b@b && git config user.name b &&
		"$fsbench" create . 30 100 200 >/dev/null &&
		# Files as old as a real checkout: not "racily clean" against
		# the index, which would make git re-read every one of them.
		find . -path ./.git -prune -o -type f -exec touch -d '2 minutes ago' {} + &&
		git add -A && git commit -qm tree)
}

# Each workload runs on the three targets in turn, after the disk has
# settled (sync), and three times; the median counts. The machine's own
# noise (a VM's disk) is large, so single runs mislead.
quiet() { sync; sleep 0.5; }
rounds=${OMNI_BENCH_ROUNDS:-3}
declare -A runs
for ((i = 0; i < rounds; i++)); do
	echo "== round $((i + 1)) of $rounds" >&2
	# Rotate the order: ext4 makes a create that follows many deletions
	# slower (it skips recently freed inodes), so no target may always
	# come after another one's removal.
	nt=${#targets[@]}
	order=("${targets[@]:i%nt}" "${targets[@]:0:i%nt}")
	for t in "${order[@]}"; do
		r=${root[$t]}
		mkdir -p "$r/small"
		quiet; runs[$t,create]+=" $("$fsbench" create "$r/small" 100 100 100)"
		quiet; runs[$t,stat]+=" $("$fsbench" stat "$r/small" 100 100)"
		quiet; runs[$t,lsR]+=" $(timeit ls -lR "$r/small")"
		quiet; runs[$t,read]+=" $("$fsbench" read "$r/small" 100 100)"
		quiet; runs[$t,seqwrite]+=" $(timeit dd if=/dev/zero of="$r/big" bs=1M count="$seq_mb" conv=fsync)"
		drop_caches; sleep 0.5
		runs[$t,seqread]+=" $(timeit dd if="$r/big" of=/dev/null bs=1M)"
		# Again, from the page cache (kept across opens: keep_cache).
		runs[$t,reread]+=" $(timeit dd if="$r/big" of=/dev/null bs=1M)"
		rm -f "$r/big"
		[ "$i" -eq 0 ] && make_git_tree "${backing[$t]}"
		# Warm: a run first (the page-cache drop above empties the
		# kernel's name cache too), then the timed one.
		quiet; runs[$t,git]+=" $(cd "$r/repo" && git status >/dev/null && timeit git status)"
		quiet; runs[$t,remove]+=" $("$fsbench" remove "$r/small" 100 100)"
		rmdir "$r/small" 2>/dev/null || true
		if [ "$touch_n" -gt 0 ]; then
			# A fresh directory each round; passthrough_hp's readdir
			# skips names while they are removed, so what is left
			# after removing through the mount goes from the backing
			# directory (the stale name is never used again).
			d=touch$i
			mkdir "$r/$d"
			quiet; runs[$t,touch]+=" $(cd "$r/$d" && timeit sh -c "seq -f f%.0f $touch_n | xargs touch")"
			for _ in 1 2 3; do rm -rf "${r:?}/$d" 2>/dev/null && break; done
			rm -rf "${backing[$t]:?}/$d"
		fi
	done
done
median() { printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for key in "${!runs[@]}"; do
	result[$key]=$(median "${runs[$key]}")
done

workloads=(create stat lsR read seqwrite seqread reread git remove)
[ "$touch_n" -gt 0 ] && workloads+=(touch)
# One column per target, then omnifs against native and bindfs (time
# ratios: 1.0 is native speed; 3.0 "vs bindfs" is three times faster).
[ "$touch_n" -gt 0 ] && printf '\ntouch: %d files\n' "$touch_n"
printf '\n%-10s' workload
for t in "${targets[@]}"; do printf ' %10s' "$t"; done
printf ' %10s %10s\n' "vs native" "vs bindfs"
for w in "${workloads[@]}"; do
	n=${result[native,$w]} b=${result[bindfs,$w]} o=${result[omnifs,$w]}
	printf '%-10s' "$w"
	for t in "${targets[@]}"; do printf ' %9.3fs' "${result[$t,$w]}"; done
	printf ' %9.2fx %9.2fx\n' "$(echo "$n / $o" | bc -l)" "$(echo "$b / $o" | bc -l)"
done
for t in "${targets[@]}"; do
	printf '%-8s seqwrite %7.0f MB/s  seqread %7.0f MB/s\n' "$t" \
		"$(echo "$seq_mb / ${result[$t,seqwrite]}" | bc -l)" \
		"$(echo "$seq_mb / ${result[$t,seqread]}" | bc -l)"
done
