#!/usr/bin/env bash
# docker-agent.sh - the docker backend's agent mode against a daemon "on
# another machine": the second dockerd of scripts/dockerd-remote-start.sh
# (tcp:// with TLS, unable to see this machine's folders), reached through
# tests/support/delay_proxy.py, which adds a network round trip of 0 and 50
# ms (default) to every connection.
#
# Steps, on an agent-mode mount (--docker-files=agent):
#   rtt        GET /_ping on a kept connection through the proxy, median of
#              20 (the network round trip as the proxy makes it)
#   start      omnifs until the mount is ready (container, volume, omni-agent
#              put in, the exec stream)
#   exec true  `omni-exec -n true`, median of 20 (the mux: one round trip;
#              the check: what the round trip adds, against the 0 ms run,
#              is at most one measured round trip (rtt) + 3 ms)
#   exec out   `omni-exec sh -c 'head -c 8M /dev/zero'` (credit flow control)
# and, once the agent-mode file operations are built in (the mount's root
# can be listed), the agent workload of tests/bench/e2b-agent.sh: ls -lR of
# a tree of OMNI_BENCH_FILES (2 000, as e2b-agent.sh) files in 40
# directories made in the container, read all,
# write 100, an editor's save, git status twice (needs git on this machine).
#
# Usage: tests/bench/docker-agent.sh [RTT_MS...]   (root; BUILD=build)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
bin="$here/$BUILD"
files=${OMNI_BENCH_FILES:-2000}
dirs=40
per_dir=$(((files + dirs - 1) / dirs))
rtts=("$@")
[ ${#rtts[@]} -gt 0 ] || rtts=(0 50)
image=omnifs-test/busybox:latest

[ "$(id -u)" = 0 ] || { echo "run as root (the second dockerd)" >&2; exit 1; }
[ -x "$bin/omnifs" ] && [ -x "$bin/omni-exec" ] || { echo "build first: make" >&2; exit 1; }

work=$(mktemp -d /tmp/omnifs-agent-bench.XXXXXX)
proxy_pid=
mnt=
started_remote=0
cleanup() {
	if [ -n "$mnt" ] && mountpoint -q "$mnt" 2>/dev/null; then
		fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	fi
	[ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
	[ "$started_remote" = 1 ] && "$here/scripts/dockerd-remote-stop.sh" >/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

state=${OMNI_DOCKERD_REMOTE_STATE:-/var/lib/omnifs-dockerd-remote}
if ! [ -f "$state/dockerd.pid" ] || ! kill -0 "$(cat "$state/dockerd.pid")" 2>/dev/null; then
	started_remote=1
fi
"$here/scripts/dockerd-remote-start.sh" >"$work/remote.log"
# shellcheck disable=SC1091
. "$state/env"
target=${DOCKER_HOST#tcp://}
export DOCKER_TLS_VERIFY DOCKER_CERT_PATH
export OMNI_RUNTIME_DIR=$work/run
mkdir -m 0700 "$OMNI_RUNTIME_DIR"

now() { date +%s.%N; }
ms() { echo "($2 - $1) * 1000" | bc -l; }
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

declare -A T R C L U
steps=(rtt start exec out lsR read write100 save git1 git2 exec2)
declare -A label=([rtt]="rtt (ping)" [start]="start" [exec]="exec true" [out]="exec 8 MiB" [lsR]="ls -lR"
	[read]="read all" [write100]="write 100" [save]="save" [git1]="git st 1" [git2]="git st 2" [exec2]="exec after")
fail=0

stat_of() { # NAME: one counter of omni-exec --stats
	"$bin/omni-exec" -C "$mnt" --stats | awk -v k="$1" '$1 == k { print $2 + 0; f = 1 } END { if (!f) print 0 }'
}
run_step() { # KEY RTT COMMAND...
	local key=$1 d=$2 t0 t1 r0 f0 l0 u0
	shift 2
	r0=$(stat_of agent_file_requests)
	f0=$(stat_of cache.downloads)
	l0=$(stat_of cache.listings)
	u0=$(stat_of cache.uploads)
	t0=$(now)
	(cd "$mnt" && "$@") >/dev/null 2>&1 || { echo "step $key failed" >&2; exit 1; }
	t1=$(now)
	T[$key,$d]=$(ms "$t0" "$t1")
	R[$key,$d]=$(($(stat_of agent_file_requests) - r0))
	C[$key,$d]=$(($(stat_of cache.downloads) - f0))
	L[$key,$d]=$(($(stat_of cache.listings) - l0))
	U[$key,$d]=$(($(stat_of cache.uploads) - u0))
}
editor_save() {
	python3 - <<'EOF'
import os
fd = os.open(".notes.md.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"# notes\nsaved by the editor\n")
os.fsync(fd)
os.close(fd)
os.rename(".notes.md.tmp", "notes.md")
EOF
}
write_100() { mkdir -p out && for i in $(seq 100); do echo "result $i" >"out/r$i.txt"; done; }
read_all() { find tree -path tree/.git -prune -o -type f -print0 | xargs -0 cat >/dev/null; }

mkdir -p "$work/src/tree"
(cd "$work/src/tree" && for d in $(seq $dirs); do mkdir d$d; for f in $(seq $per_dir); do
	echo "file $f of directory $d" >d$d/f$f.txt; done; done
	if command -v git >/dev/null; then git init -q . && git add -A &&
		git -c user.email=b@b -c user.name=b commit -qm tree; fi)
echo line >"$work/src/notes.md"
tar -C "$work/src" -cf "$work/tree.tar" tree notes.md

for d in "${rtts[@]}"; do
	echo "== round trip $d ms" >&2
	rm -f "$work/port"
	python3 "$here/tests/support/delay_proxy.py" --target "$target" --rtt-ms "$d" \
		--port-file "$work/port" &
	proxy_pid=$!
	for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
	DOCKER_HOST=tcp://127.0.0.1:$(cat "$work/port")
	export DOCKER_HOST
	url=https://127.0.0.1:$(cat "$work/port")/_ping
	# shellcheck disable=SC2046 # 21 URLs on one kept connection
	curl -s --cacert "$DOCKER_CERT_PATH/ca.pem" --cert "$DOCKER_CERT_PATH/cert.pem" \
		--key "$DOCKER_CERT_PATH/key.pem" -w '\n%{time_total}\n' $(for _ in $(seq 21); do echo "$url"; done) |
		grep -E '^[0-9.]+$' | tail -n 20 | awk '{ print $1 * 1000 }' >"$work/rtt$d"
	T[rtt,$d]=$(median <"$work/rtt$d")
	project="agent$d"
	mnt="$work/mnt/$project"
	mkdir -p "$mnt"
	t0=$(now)
	"$bin/omnifs" --backend docker --docker-files=agent --image "$image" --network none \
		--data-path "$work/data" -q "$mnt"
	T[start,$d]=$(ms "$t0" "$(now)")
	x() { "$bin/omni-exec" --project "$project" "$@"; }
	x -n true # the first command after start
	for _ in $(seq 20); do
		t0=$(now)
		x -n true
		ms "$t0" "$(now)"
	done >"$work/exec$d"
	T[exec,$d]=$(median <"$work/exec$d")
	echo "exec true samples (ms): $(sort -n "$work/exec$d" | awk '{ printf "%.1f ", $1 }')" >&2
	t0=$(now)
	x -n sh -c 'head -c 8388608 /dev/zero' | wc -c >"$work/out$d"
	T[out,$d]=$(ms "$t0" "$(now)")
	[ "$(cat "$work/out$d")" = 8388608 ] || { echo "exec 8 MiB: short output" >&2; fail=1; }
	# The round trip's share: against the 0 ms run when there was one
	# (what omni-exec, the daemon and the command cost on this machine
	# whatever the network), else the whole time.
	base=0
	[ "$d" != 0 ] && [ -n "${T[exec,0]:-}" ] && base=${T[exec,0]}
	if [ "$d" != 0 ] && awk -v e="${T[exec,$d]}" -v b="$base" -v d="${T[rtt,$d]}" 'BEGIN { exit !(e - b > d + 3) }'; then
		echo "exec true: ${T[exec,$d]} ms (${base} ms at 0 ms) > one round trip (${T[rtt,$d]} ms) + 3 ms" >&2
		fail=1
	fi
	if ls "$mnt" >/dev/null 2>&1; then
		# The tree, a git repository as in e2b-agent.sh, made in the
		# container (busybox has no git: made here, carried in by tar on
		# the command's stdin), so the mount starts cold.
		x tar -xf - <"$work/tree.tar"
		sleep 1 # the watch's events of the tree's making have arrived
		run_step lsR "$d" ls -lR tree
		run_step read "$d" read_all
		run_step write100 "$d" write_100
		run_step save "$d" editor_save
		if [ -d "$work/src/tree/.git" ]; then
			run_step git1 "$d" git -C tree status --porcelain
			run_step git2 "$d" git -C tree status --porcelain
		fi
		t0=$(now)
		x -n true
		T[exec2,$d]=$(ms "$t0" "$(now)")
		"$bin/omni-exec" -C "$mnt" --stats >"$work/stats$d" || true
	else
		echo "(the mount has no file operations yet: workload skipped)" >&2
	fi
	fusermount3 -u "$mnt"
	for _ in $(seq 200); do pgrep -f "omnifs --backend docker --docker-files=agent .* $mnt" >/dev/null || break; sleep 0.1; done
	mnt=
	kill "$proxy_pid" 2>/dev/null || true
	wait "$proxy_pid" 2>/dev/null || true
	proxy_pid=
done

echo
echo "docker agent mode, TLS daemon behind a proxy adding a round trip, tree of $files files in $dirs"
echo "directories (ms of wall time; req = file requests to the agent; cache listings, downloads and"
echo "uploads; a step's requests include uploads the step before left to the background)"
printf '%-11s' step
for d in "${rtts[@]}"; do printf ' | %9s %5s %4s %4s %4s' "rtt ${d}ms" req ls dl up; done
echo
for k in "${steps[@]}"; do
	printf '%-11s' "${label[$k]}"
	for d in "${rtts[@]}"; do
		printf ' | %9s %5s %4s %4s %4s' "$(printf '%.1f' "${T[$k,$d]:-nan}" 2>/dev/null || echo -)" \
			"${R[$k,$d]:--}" "${L[$k,$d]:--}" "${C[$k,$d]:--}" "${U[$k,$d]:--}"
	done
	echo
done
for d in "${rtts[@]}"; do
	[ -s "$work/stats$d" ] && { echo "stats at ${d} ms:"; grep -E '^(cache\.|agent_)' "$work/stats$d" | tr '\n' ' '; echo; }
done
exit $fail
