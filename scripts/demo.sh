#!/usr/bin/env bash
# demo.sh - the main job on the local backend, as a new user would run it:
# mount a session's workspace with omnifs, work in it with plain tools,
# run commands in the same session with omni-exec, unmount, and see the
# files kept in the data folder. Then the README's C example runs.
#
# Environment: BUILD (build directory, default build), OMNI_DEMO_DIR
# (where to put the mount and data; default a fresh temporary directory).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
bin="$here/$BUILD"
work=${OMNI_DEMO_DIR:-$(mktemp -d /tmp/omnifs-demo.XXXXXX)}
mnt="$work/demo"
data="$work/data"
export OMNI_RUNTIME_DIR="$work/run"
mkdir -p "$mnt" "$data"
mkdir -m 0700 -p "$OMNI_RUNTIME_DIR"

cleanup() {
	if mountpoint -q "$mnt" 2>/dev/null; then
		fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	fi
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step "omnifs --backend local --data-path $data $mnt"
"$bin/omnifs" --backend local --data-path "$data" "$mnt"
mount | grep -F " $mnt " || true

step "echo 'print(\"hello from the sandbox\")' > $mnt/hello.py; mkdir -p $mnt/src"
echo 'print("hello from the sandbox")' >"$mnt/hello.py"
mkdir -p "$mnt/src"
printf 'int main(void) { return 42; }\n' >"$mnt/src/main.c"

step "cd $mnt/src && omni-exec pwd"
(cd "$mnt/src" && "$bin/omni-exec" pwd)

step "cd $mnt && omni-exec -c 'ls -l; cat hello.py; echo made-by-a-command > created.txt'"
(cd "$mnt" && "$bin/omni-exec" -c 'ls -l; cat hello.py; echo made-by-a-command > created.txt')

step "cat $mnt/created.txt   # what the command wrote, seen through the mount at once"
cat "$mnt/created.txt"

step "cd $mnt && omni-exec -c 'exit 3'; echo \$?"
set +e
(cd "$mnt" && "$bin/omni-exec" -c 'exit 3')
echo "exit status: $?"
set -e

step "fusermount3 -u $mnt"
fusermount3 -u "$mnt"
sleep 0.2

step "ls -l $data/demo   # the workspace stays in the data folder"
ls -l "$data/demo"

step "the README's C example (LocalBackend: start, echo 'Hello', shutdown)"
ex="$work/example"
mkdir -p "$ex"
cc -std=c11 -I"$here/backends/include" "$here/tests/example/readme_example.c" \
	"$bin/libomni.a" $(pkg-config --libs libcurl libcjson libgit2 libarchive libcrypto sqlite3) \
	-pthread -o "$ex/readme_example"
(cd "$ex" && ./readme_example)

echo
echo "demo done; files are in $work"
