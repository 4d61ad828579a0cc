#!/usr/bin/env bash
# e2b-agent.sh - an agent-like workload on an e2b mount against the local
# E2B server (tests/servers/e2b), with 0 ms and 50 ms added to every request
# (POST /_test/delay) to stand in for the network:
#
#   ls -lR     of a tree of 2 000 files in 40 directories (a git repository,
#              made in the sandbox, so the mount starts cold)
#   read all   cat of every file of the tree (not of its .git)
#   write 100  100 new small files
#   save       an editor's atomic save (write a temporary file, fsync,
#              rename it over the original)
#   git st 1   `git status` (cold for git's own files)
#   git st 2   `git status` again, unchanged tree
#   exec true  `omni-exec true`
#   cp -a      `cp -a` of 200 files (modes and times kept) onto the mount,
#              then `omni-exec --sync` (until the sandbox has all of it)
#   git clone  `git clone` of a repository of 1 000 files onto the mount,
#              then `omni-exec --sync`
#
# For each step it prints the wall time, the requests the server counted
# (GET /_test/stats), and a naive count: one request per FUSE operation
# the daemon received (the fuse.* counters of `omni-exec --stats`, forget
# excluded), which is what a file system without caches would send.
#
# Usage: tests/bench/e2b-agent.sh [DELAY_MS...]   (root, node; default 0 50;
# BUILD=build by default; OMNI_BENCH_FILES=2000 sets the tree size)
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
bin="$here/$BUILD"
files=${OMNI_BENCH_FILES:-2000}
dirs=40
per_dir=$(( (files + dirs - 1) / dirs ))
delays=("$@")
[ ${#delays[@]} -gt 0 ] || delays=(0 50)

[ "$(id -u)" = 0 ] || { echo "run as root (the E2B test server chroots)" >&2; exit 1; }
command -v node >/dev/null || { echo "node is needed" >&2; exit 1; }
[ -x "$bin/omnifs" ] && [ -x "$bin/omni-exec" ] || { echo "build first: make" >&2; exit 1; }

work=$(mktemp -d /tmp/omnifs-e2b-bench.XXXXXX)
server_pid=
mnt=

cleanup() {
	if [ -n "$mnt" ] && mountpoint -q "$mnt"; then
		fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	fi
	if [ -n "$server_pid" ]; then
		kill "$server_pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -rf "$work"
}
trap cleanup EXIT

node "$here/tests/servers/e2b/server.js" --port 0 --port-file "$work/port" \
	--state-dir "$work/state" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 150); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { cat "$work/server.log" >&2; echo "the server did not start" >&2; exit 1; }
url="http://127.0.0.1:$(cat "$work/port")"
export E2B_API_KEY=e2b_0123456789abcdef0123456789abcdef01234567
export E2B_API_URL=$url E2B_SANDBOX_URL=$url
export OMNI_RUNTIME_DIR=$work/run
mkdir -m 0700 -p "$OMNI_RUNTIME_DIR"

api() { # METHOD PATH [JSON]
	if [ $# -gt 2 ]; then
		curl -sf -X "$1" -H 'Content-Type: application/json' -d "$3" "$url$2"
	else
		curl -sf -X "$1" "$url$2"
	fi
}
requests() { api GET /_test/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }
by_method() { api GET /_test/stats | python3 -c '
import json,sys
r=json.load(sys.stdin)["requests"]
print(" ".join("%s=%d" % (k.replace("filesystem.Filesystem/","").replace("process.Process/",""), v) for k,v in sorted(r.items())))'; }
fuse_ops() { # FUSE operations the daemon has received, forget excluded
	"$bin/omni-exec" -C "$mnt" --stats | awk '/^fuse\./ && $1 != "fuse.forget" { n += $2 } END { print n + 0 }'
}
sandbox_sh() { # run a command in the sandbox behind the mount's back
	python3 -c 'import json,sys; print(json.dumps({"cmd": sys.argv[1], "user": "user", "timeoutMs": 600000}))' "$1" |
		curl -sf -X POST -H 'Content-Type: application/json' -d @- "$url/_test/exec" >/dev/null
}
now() { date +%s.%N; }

declare -A T R N M
steps=(lsR read write100 save git1 git2 exec cpa clone)
declare -A label=([lsR]="ls -lR" [read]="read all" [write100]="write 100" [save]="save"
	[git1]="git st 1" [git2]="git st 2" [exec]="exec true" [cpa]="cp -a 200"
	[clone]="git clone")

run_step() { # KEY DELAY COMMAND...
	local key=$1 d=$2 t0 t1 f0 f1
	shift 2
	f0=$(fuse_ops)
	api POST /_test/reset >/dev/null
	t0=$(now)
	(cd "$mnt" && "$@") >/dev/null 2>&1 || { echo "step $key failed" >&2; exit 1; }
	t1=$(now)
	R[$key,$d]=$(requests)
	M[$key,$d]=$(by_method)
	f1=$(fuse_ops)
	N[$key,$d]=$((f1 - f0))
	T[$key,$d]=$(echo "$t1 - $t0" | bc -l)
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
# Host-side sources for cp -a and git clone.
mkdir -p "$work/cpsrc/s"
for i in $(seq 200); do echo "copied $i" > "$work/cpsrc/s/c$i.txt"; done
chmod 755 "$work"/cpsrc/s/c1*.txt
touch -d 2001-02-03T04:05:06 "$work"/cpsrc/s/*
mkdir -p "$work/repo"
(cd "$work/repo" && git init -q . && git config user.email b@b && git config user.name b &&
	for d in $(seq 20); do mkdir d$d; for f in $(seq 50); do
		echo "file $f of directory $d" > d$d/f$f.txt; done; done &&
	git add -A && git commit -qm repo)
copy_200() { cp -a "$work/cpsrc/s" cpa && "$bin/omni-exec" --sync; }
git_clone() { git clone -q "file://$work/repo" clone && "$bin/omni-exec" --sync; }
write_100() { mkdir -p out && for i in $(seq 100); do echo "result $i" > "out/r$i.txt"; done; }
read_all() { find tree -path tree/.git -prune -o -type f -print0 | xargs -0 cat > /dev/null; }

for d in "${delays[@]}"; do
	echo "== delay $d ms" >&2
	project="bench$d"
	mnt="$work/mnt/$project"
	mkdir -p "$mnt"
	api POST /_test/delay '{"ms":0}' >/dev/null
	"$bin/omnifs" --backend e2b --data-path "$work/data" "$mnt"
	# The tree, made in the sandbox: the mount knows nothing of it.
	sandbox_sh "set -e; mkdir -p /tmp/workspace/tree; cd /tmp/workspace/tree; git init -q .
		git config user.email b@b; git config user.name b
		for d in \$(seq $dirs); do mkdir d\$d; for f in \$(seq $per_dir); do
			echo \"file \$f of directory \$d\" > d\$d/f\$f.txt; done; done
		echo 'line' > ../notes.md; git add -A; git commit -qm tree"
	sleep 1
	api POST /_test/delay "{\"ms\":$d}" >/dev/null
	run_step lsR "$d" ls -lR tree
	run_step read "$d" read_all
	run_step write100 "$d" write_100
	run_step save "$d" editor_save
	run_step git1 "$d" git -C tree status --porcelain
	run_step git2 "$d" git -C tree status --porcelain
	run_step exec "$d" "$bin/omni-exec" -n true
	run_step cpa "$d" copy_200
	run_step clone "$d" git_clone
	api POST /_test/delay '{"ms":0}' >/dev/null
	fusermount3 -u "$mnt"
	for _ in $(seq 100); do pgrep -f "omnifs --backend e2b --data-path $work/data $mnt" >/dev/null || break; sleep 0.1; done
done

echo
echo "e2b mount, local E2B server, tree of $files files in $dirs directories"
printf '%-10s' step
for d in "${delays[@]}"; do printf ' | %7s %8s %8s' "${d}ms s" requests naive; done
echo
for k in "${steps[@]}"; do
	printf '%-10s' "${label[$k]}"
	for d in "${delays[@]}"; do
		printf ' | %7.2f %8s %8s' "${T[$k,$d]}" "${R[$k,$d]}" "${N[$k,$d]}"
	done
	echo
done
echo
echo "requests by method:"
for d in "${delays[@]}"; do
	for k in "${steps[@]}"; do
		printf '  %3sms %-10s %s\n' "$d" "${label[$k]}" "${M[$k,$d]}"
	done
done
