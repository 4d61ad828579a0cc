#!/usr/bin/env bash
# install-deps.sh - install every Debian package that the build, the demo
# and the tests of omnifs need. Idempotent: apt-get runs only when a
# package is missing. Runs as root, or through sudo when available.
#
# Environment: OMNI_SKIP_DEPS=1 skips everything (for machines that are
# set up by other means).
set -euo pipefail

[ "${OMNI_SKIP_DEPS:-0}" = 1 ] && exit 0

packages=(
	# build
	gcc make pkg-config libc6-dev
	libfuse3-dev fuse3
	libcurl4-openssl-dev libcjson-dev libgit2-dev libarchive-dev libssl-dev
	libsqlite3-dev sqlite3
	# tests
	libcriterion-dev git bindfs curl util-linux procps bc python3
	# real programs on the mount (tests/fs/test_programs.c): an autotools
	# project, a Python venv, tar and cp -a round trips
	autoconf automake python3-venv tar diffutils findutils
	# state manager tests: service-account keys (openssl genrsa)
	openssl
	# docker backend tests: the engine and the local test images
	docker.io busybox-static debootstrap
	# docker agent mode over ssh:// (a local sshd started by the test)
	openssh-server openssh-client
	# format-check
	clang-format
	# man pages (scdoc turns man/*.scd into roff; groff-base's groff
	# checks them: the full groff package adds X11 output, not needed)
	scdoc groff-base
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing+=("$p")
	fi
done
# Node.js (for the test servers and the SDK conformance scripts): any
# installed node >= 18 will do; otherwise Debian's.
if ! command -v node >/dev/null 2>&1; then
	missing+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
	missing+=(npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		echo "install-deps: missing packages: ${missing[*]}" >&2
		echo "install-deps: run as root (or install sudo) to install them" >&2
		exit 1
	fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
