#!/usr/bin/env bash
# tests/packaging/run.sh - what make install gives a user, checked as a user
# would meet it. Run by scripts/run-tests.sh against an existing build
# (BUILD, default build); ends with an "N passed, M failed" line.
#
#   man pages    each man/*.scd is rendered (make man) and groff -man -ww -z
#                prints no warning for it; every long option (--name) and
#                -o name that "omnifs --help" and "omni-exec --help" print
#                appears in omnifs(1) and omni-exec(1)
#   install      make install DESTDIR=$tmp PREFIX=/usr puts the programs,
#                libomni.a, libomni.so.0 (soname, dev symlink), the headers,
#                omni.pc, the man pages and the completions in place
#   libomni.so   exports omni_* and nothing else (no omni__*)
#   pkg-config   the README example builds with
#                cc $(pkg-config --cflags --libs omni), runs against the
#                installed libomni.so.0 and prints Hello; statically with
#                pkg-config --static as well
#   completion   each completion file loads in bash, registers its command,
#                and completes options and values (omnifs --back -> --backend)
#
# A sanitizer build (make asan) has a sanitized libomni.so: the example is
# then compiled with the same sanitizers.
set -uo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
BUILD=${BUILD:-build}
CC=${CC:-cc}
passed=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() {
	passed=$((passed + 1))
	echo "ok   $1"
}
fail() {
	failed=$((failed + 1))
	echo "FAIL $1${2:+: $2}"
}
# check NAME COMMAND...: one test, passed when COMMAND succeeds.
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$name"
	else
		fail "$name" "$out"
	fi
}

# --- man pages -------------------------------------------------------------

# The options a program's --help prints: --long and "-o name" forms.
help_options() {
	"$1" --help 2>/dev/null |
		grep -oE -- '(--[a-z][a-z-]*[a-z]|-o [a-z][a-z_]*)' | sort -u
}

# Every option of $1's --help appears in the rendered page $2.
page_has_options() {
	local prog=$1 page=$2 text missing="" opt n=0
	text=$(groff -man -Tascii -P-cbou -rLL=10000n -rHY=0 "$page" 2>&1)
	while IFS= read -r opt; do
		n=$((n + 1))
		grep -qF -- "$opt" <<<"$text" || missing="$missing '$opt'"
	done < <(help_options "$prog")
	[ "$n" -gt 0 ] || {
		echo "$prog --help printed no options"
		return 1
	}
	[ -z "$missing" ] || {
		echo "not in $page:$missing"
		return 1
	}
}

# groff -ww -z: any output is a warning.
groff_clean() {
	local out
	out=$(groff -man -ww -z "$1" 2>&1) && [ -z "$out" ] || {
		echo "$out"
		return 1
	}
}

if ! command -v scdoc >/dev/null || ! command -v groff >/dev/null; then
	fail "man pages" "scdoc and groff are needed (scripts/install-deps.sh)"
else
	check "make man" make --no-print-directory -s BUILD="$BUILD" man
	for src in man/*.scd; do
		page=$BUILD/man/$(basename "$src" .scd)
		check "groff -man -ww -z $page: no warnings" groff_clean "$page"
	done
	check "omnifs(1) has every option of omnifs --help" \
		page_has_options "$BUILD/omnifs" "$BUILD/man/omnifs.1"
	check "omni-exec(1) has every option of omni-exec --help" \
		page_has_options "$BUILD/omni-exec" "$BUILD/man/omni-exec.1"
fi

# --- make install into a DESTDIR ------------------------------------------

dest=$tmp/root
check "make install DESTDIR=... PREFIX=/usr" \
	make --no-print-directory -s BUILD="$BUILD" install DESTDIR="$dest" \
	PREFIX=/usr
lib=$dest/usr/lib
installed() {
	local f
	for f in "$@"; do
		[ -e "$dest/$f" ] || {
			echo "missing: $f"
			return 1
		}
	done
}
check "programs installed" installed usr/bin/omnifs usr/bin/omni-exec
check "libraries installed" installed usr/lib/libomni.a usr/lib/libomni.so \
	usr/lib/libomni.so.0
check "headers installed" installed usr/include/omni/omni.h \
	usr/include/omni/backend.h usr/include/omni/sys/backend_impl.h
check "omni.pc installed" installed usr/lib/pkgconfig/omni.pc
check "bash completions installed" installed \
	usr/share/bash-completion/completions/omnifs \
	usr/share/bash-completion/completions/omni-exec
if command -v scdoc >/dev/null; then
	check "man pages installed" installed usr/share/man/man1/omnifs.1 \
		usr/share/man/man1/omni-exec.1 usr/share/man/man3/libomni.3
fi

soname() {
	[[ $(readelf -d "$lib/libomni.so") == *"Library soname: [libomni.so.0]"* ]] &&
		[ "$(readlink "$lib/libomni.so")" = libomni.so.0 ] &&
		[[ $(readlink "$lib/libomni.so.0") == libomni.so.0.* ]]
}
check "soname libomni.so.0, libomni.so -> libomni.so.0 -> file" soname

# Defined dynamic symbols other than omni_*: none, apart from what the
# toolchain adds and the version node.
only_omni_exported() {
	local extra
	extra=$(nm -D --defined-only "$lib/libomni.so.0" | awk '{ print $NF }' |
		sed 's/@.*//' | grep -vE '^omni_[^_]' |
		grep -vxE '_init|_fini|_edata|_end|__bss_start|OMNI_0')
	[ -z "$extra" ] || {
		echo "exported beyond omni_*: $extra"
		return 1
	}
	[[ $(nm -D --defined-only "$lib/libomni.so.0") == *" omni_backend_start@"* ]] || {
		echo "omni_backend_start is not exported"
		return 1
	}
}
check "libomni.so exports omni_* only" only_omni_exported

# --- the README example through pkg-config --------------------------------

san=""
if [[ $(nm -D "$lib/libomni.so.0" 2>/dev/null) == *__asan_* ]]; then
	san="-fsanitize=address,undefined -fno-omit-frame-pointer"
fi
pc() {
	PKG_CONFIG_PATH=$lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest \
		pkg-config "$@" omni
}

# Build $1 with "cc ... $flags" in $tmp/$1 and run it there; Hello expected.
build_and_run() {
	local name=$1 flags=$2 dir=$tmp/$1 out
	mkdir -p "$dir" || return 1
	# shellcheck disable=SC2086 # flags are words
	(cd "$dir" && $CC -Wall -Wextra -Werror "$here/tests/example/readme_example.c" \
		$flags $san -o example) || return 1
	out=$(cd "$dir" && env -u OMNI_DATA_PATH LD_LIBRARY_PATH="$lib" \
		./example) || {
		echo "$name exited $?: $out"
		return 1
	}
	[ "$out" = Hello ] || {
		echo "$name printed '$out'"
		return 1
	}
}

shared_example() {
	local flags
	flags=$(pc --cflags --libs) || return 1
	build_and_run shared "$flags" || return 1
	# It really ran against the installed shared library.
	[[ $(LD_LIBRARY_PATH="$lib" ldd "$tmp/shared/example") == \
		*"libomni.so.0 => $lib/libomni.so.0 "* ]] || {
		echo "the example does not load $lib/libomni.so.0:"
		LD_LIBRARY_PATH="$lib" ldd "$tmp/shared/example"
		return 1
	}
}
check "README example: cc \$(pkg-config --cflags --libs omni), runs on libomni.so.0" \
	shared_example

static_example() {
	local flags
	flags=$(pc --static --cflags --libs) || return 1
	flags=${flags/-lomni/$lib/libomni.a}
	build_and_run static "$flags" || return 1
	[[ $(readelf -d "$tmp/static/example") != *libomni.so* ]] || {
		echo "the static example needs libomni.so"
		return 1
	}
}
check "README example: libomni.a with pkg-config --static" static_example

# --- bash completion ------------------------------------------------------

# complete FILE WANT WORD...: load FILE in a clean bash, complete the
# words (the last one is the cursor's) and expect WANT among the answers.
complete_has() {
	local file=$1 want=$2
	shift 2
	PATH="$here/$BUILD:$PATH" bash --norc --noprofile -c '
		file=$1 want=$2
		shift 2
		. "$file" || exit 1
		cmd=$1
		complete -p "$cmd" >/dev/null || { echo "no complete -p $cmd"; exit 1; }
		fn=$(complete -p "$cmd" | sed -n "s/.*-F \([^ ]*\) .*/\1/p")
		COMP_WORDS=("$@")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMP_LINE="$*"
		COMP_POINT=${#COMP_LINE}
		COMPREPLY=()
		"$fn" "$cmd" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
		for r in "${COMPREPLY[@]}"; do
			[ "$r" = "$want" ] && exit 0
		done
		echo "completing [$*] gave [${COMPREPLY[*]}], not $want"
		exit 1
	' complete_has "$file" "$want" "$@"
}
comp=completions
check "completion: omnifs --back -> --backend" \
	complete_has $comp/omnifs.bash --backend omnifs --back
check "completion: omnifs --backend d -> docker" \
	complete_has $comp/omnifs.bash docker omnifs --backend d
check "completion: omnifs --state=g -> --state=git" \
	complete_has $comp/omnifs.bash --state=git omnifs --state=g
check "completion: omnifs -o backend=e2b,temp -> ...,template=" \
	complete_has $comp/omnifs.bash backend=e2b,template= omnifs -o \
	backend=e2b,temp
check "completion: omni-exec --time -> --timeout" \
	complete_has $comp/omni-exec.bash --timeout omni-exec --time
check "completion: omni-exec --no -> --no-stdin" \
	complete_has $comp/omni-exec.bash --no-stdin omni-exec --no

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
