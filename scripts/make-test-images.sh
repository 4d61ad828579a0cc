#!/usr/bin/env bash
# make-test-images.sh - build omnifs's test images locally, without any registry.
#
#   omnifs-test/busybox:latest   rootfs made from Debian's busybox-static: /bin/busybox
#                                plus a symlink per applet, /etc/passwd and /etc/group
#                                with root and "user" (uid/gid 1000), /tmp (1777),
#                                /home/user, an empty /workspace; CMD ["/bin/sh"].
#                                Built with `docker import` in a few seconds.
#   omnifs-test/debian:bookworm  `debootstrap --variant=minbase --include=PACKAGES
#                                bookworm` from the Debian mirror apt uses on this
#                                machine, plus the same "user" (1000) and /workspace;
#                                CMD ["/bin/bash"]. The debootstrap result is cached as
#                                a tarball keyed by suite, variant, package list and
#                                architecture, so later runs only import it.
#
# Each image carries the label org.omnifs.test-image.key=<key>; an image already in
# the daemon with the expected key is skipped, so a repeated run costs about a
# second. Needs a running Docker daemon (see scripts/dockerd-start.sh); the
# debian image needs root or sudo (debootstrap). Missing tools (busybox-static,
# debootstrap) are installed with apt-get when root/sudo allows.
#
# Options:
#   --busybox-only   build only omnifs-test/busybox:latest
#   --force          rebuild: ignore existing images and the debootstrap cache
#   -h, --help       show this help
#
# Environment:
#   OMNI_IMAGE_CACHE     cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/omnifs)
#   OMNI_DEBIAN_MIRROR   Debian mirror for debootstrap (default: the one apt uses for
#                        bookworm in /etc/apt/sources.list{,.d/*.list,.d/*.sources},
#                        else http://deb.debian.org/debian)
#   OMNI_DEBIAN_PACKAGES comma-separated --include list
#                        (default git,gcc,libc6-dev,make,ca-certificates)
#   DOCKER_HOST          honoured by the docker CLI as usual
set -euo pipefail

BUSYBOX_IMAGE=omnifs-test/busybox:latest
DEBIAN_IMAGE=omnifs-test/debian:bookworm
SUITE=bookworm
VARIANT=minbase
PACKAGES=${OMNI_DEBIAN_PACKAGES:-git,gcc,libc6-dev,make,ca-certificates}
RECIPE=1 # bump when the way the images are made changes
LABEL=org.omnifs.test-image.key
DEFAULT_MIRROR=http://deb.debian.org/debian
CACHE=${OMNI_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/omnifs}

busybox_only=0
force=0

say() { printf '[make-test-images %s] %s\n' "$(date +%T)" "$*"; }
die() { printf 'make-test-images: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

while [ $# -gt 0 ]; do
    case $1 in
    --busybox-only) busybox_only=1 ;;
    --force) force=1 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

# --- privileges --------------------------------------------------------------
SUDO=()
can_root=1
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        if sudo -n true 2>/dev/null; then SUDO=(sudo -n); else SUDO=(sudo); fi
    else
        can_root=0
    fi
fi
as_root() {
    [ "$can_root" = 1 ] || die "need root for: $* (run as root or install sudo)"
    "${SUDO[@]}" "$@"
}
apt_install() { # pkg...: apt-get install, with one apt-get update retry
    command -v apt-get >/dev/null 2>&1 || die "apt-get not available to install: $*"
    say "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" && return 0
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" ||
        die "apt-get install $* failed"
}

# --- docker ------------------------------------------------------------------
command -v docker >/dev/null 2>&1 || die "the docker CLI is missing (apt-get install docker.io)"
DOCKER=(docker)
if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ] && [ "$can_root" = 1 ] && sudo -n docker version >/dev/null 2>&1; then
        DOCKER=(sudo -n docker)
    else
        die "no Docker daemon answers (start one with scripts/dockerd-start.sh)"
    fi
fi
image_id() { "${DOCKER[@]}" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
drop_replaced() { # old-image-id image: remove the image the new import untagged, if now unused
    local new
    [ -n "$1" ] || return 0
    new=$(image_id "$2")
    if [ "$1" != "$new" ]; then "${DOCKER[@]}" rmi "$1" >/dev/null 2>&1 || true; fi
}
image_key() { # image -> value of our label, empty if the image or label is missing
    "${DOCKER[@]}" image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null |
        sed 's/^<no value>$//' || true
}

# --- work area, cleanup ---------------------------------------------------------
mkdir -p "$CACHE" || die "cannot create cache dir $CACHE"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.lock"
    flock 9 || die "cannot lock $CACHE/.lock"
fi
WORK=$(mktemp -d "$CACHE/work.XXXXXX")
cleanup() {
    local m
    [ -d "$WORK" ] || return 0
    # debootstrap may leave /proc, /sys, /dev mounts in the target after a failure:
    # unmount everything below WORK before deleting it, and never cross filesystems.
    awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts 2>/dev/null | sort -r |
        while read -r m; do "${SUDO[@]}" umount -l "$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$WORK" 2>/dev/null ||
        if [ "$can_root" = 1 ]; then "${SUDO[@]}" rm -rf --one-file-system "$WORK" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

elapsed() { printf '%ds' $((SECONDS - $1)); }

# =============================================================================
# busybox
# =============================================================================
is_static() { # file: true if a static ELF
    local out
    out=$(LC_ALL=C ldd "$1" 2>&1 || true)
    case $out in *"not a dynamic executable"* | *"statically linked"*) return 0 ;; esac
    return 1
}

find_busybox() { # prints the path of a static busybox binary, installing it if needed
    local p
    if dpkg -s busybox-static >/dev/null 2>&1; then
        p=$(dpkg -L busybox-static | grep -E '/s?bin/busybox$' | head -n 1)
        if [ -n "$p" ] && [ -x "$p" ] && is_static "$p"; then echo "$p"; return 0; fi
    fi
    if [ "$can_root" = 1 ] && ! dpkg -s busybox >/dev/null 2>&1; then
        apt_install busybox-static >&2
        p=$(dpkg -L busybox-static | grep -E '/s?bin/busybox$' | head -n 1)
    else
        # The dynamic "busybox" package conflicts with busybox-static (or we are not
        # root): fetch the .deb and extract it instead of replacing system packages.
        say "fetching busybox-static with apt-get download" >&2
        (cd "$WORK" && apt-get download busybox-static >&2) ||
            { [ "$can_root" = 1 ] && as_root apt-get update >&2 && (cd "$WORK" && apt-get download busybox-static >&2); } ||
            die "could not download busybox-static"
        dpkg-deb -x "$WORK"/busybox-static_*.deb "$WORK/bbdeb"
        p=$(find "$WORK/bbdeb" -path '*bin/busybox' -type f | head -n 1)
    fi
    if [ -z "$p" ] || [ ! -x "$p" ]; then die "busybox-static binary not found after installing"; fi
    is_static "$p" || die "$p is not statically linked"
    echo "$p"
}

build_busybox() {
    local t0=$SECONDS bb key have root applets n=0 a old
    say "busybox: locating a static busybox"
    bb=$(find_busybox)
    key=$( { echo "recipe=$RECIPE"; sha256sum <"$bb"; } | sha256sum | cut -c1-16)
    have=$(image_key "$BUSYBOX_IMAGE")
    if [ "$force" = 0 ] && [ "$have" = "$key" ]; then
        say "busybox: $BUSYBOX_IMAGE is up to date (key $key); skipping"
        return 0
    fi
    say "busybox: building rootfs from $bb ($("$bb" 2>&1 | head -n 1 | cut -d' ' -f1-2))"
    root=$WORK/busybox-root
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,home/user,workspace,proc,sys,dev,var/tmp,tmp}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    chmod 0700 "$root/root"
    install -m 0755 "$bb" "$root/bin/busybox"
    if applets=$("$bb" --list-full 2>/dev/null) && [ -n "$applets" ]; then :; else
        applets=$("$bb" --list | sed 's|^|bin/|')
    fi
    while read -r a; do
        if [ -z "$a" ] || [ "$a" = bin/busybox ] || [ -e "$root/$a" ] || [ -L "$root/$a" ]; then continue; fi
        mkdir -p "$root/$(dirname "$a")"
        ln -s /bin/busybox "$root/$a"
        n=$((n + 1))
    done <<<"$applets"
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
user:x:1000:
nogroup:x:65534:
EOF
    chmod 0644 "$root/etc/passwd" "$root/etc/group"
    # Everything root-owned except /home/user (uid/gid 1000), whoever runs this.
    tar -C "$root" --numeric-owner --owner=0 --group=0 --exclude=./home/user -cf "$WORK/busybox.tar" .
    tar -C "$root" --numeric-owner --owner=1000 --group=1000 -rf "$WORK/busybox.tar" ./home/user
    say "busybox: $n applet links; importing as $BUSYBOX_IMAGE"
    old=$(image_id "$BUSYBOX_IMAGE")
    "${DOCKER[@]}" import --change 'CMD ["/bin/sh"]' --change "LABEL $LABEL=$key" \
        "$WORK/busybox.tar" "$BUSYBOX_IMAGE" >/dev/null || die "docker import of $BUSYBOX_IMAGE failed"
    drop_replaced "$old" "$BUSYBOX_IMAGE"
    say "busybox: $BUSYBOX_IMAGE built in $(elapsed "$t0") (key $key)"
}

# =============================================================================
# debian (debootstrap)
# =============================================================================
detect_mirror() { # prints the mirror apt uses for $SUITE, else the default
    local f line uri
    if [ -n "${OMNI_DEBIAN_MIRROR:-}" ]; then echo "${OMNI_DEBIAN_MIRROR%/}"; return 0; fi
    # one-line format
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        while read -r line; do
            # deb [opts] URI SUITE components...
            line=$(sed -E 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' <<<"$line")
            read -r uri s _ <<<"$line" || true
            if [ "${s:-}" = "$SUITE" ]; then echo "${uri%/}"; return 0; fi
        done < <(grep -E '^[[:space:]]*deb[[:space:]]' "$f" 2>/dev/null)
    done
    # deb822 format
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        uri=$(awk -v suite="$SUITE" '
            function flush() {
                if (types ~ /(^|[[:space:]])deb([[:space:]]|$)/ && (" " suites " ") ~ (" " suite " ") &&
                    tolower(enabled) != "no" && uris != "" && out == "") {
                    split(uris, u, /[[:space:]]+/); out = u[1]
                }
                types = ""; suites = ""; uris = ""; enabled = ""; key = ""
            }
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*$/ { flush(); next }
            /^[[:space:]]/ { val = $0; sub(/^[[:space:]]+/, "", val)
                             if (key == "uris") uris = uris " " val
                             else if (key == "suites") suites = suites " " val
                             next }
            { key = tolower($0); sub(/:.*/, "", key)
              val = $0; sub(/^[^:]*:[[:space:]]*/, "", val); sub(/[[:space:]]+$/, "", val)
              if (key == "types") types = val; else if (key == "uris") uris = val
              else if (key == "suites") suites = val; else if (key == "enabled") enabled = val }
            END { flush(); if (out != "") print out }' "$f")
        if [ -n "$uri" ]; then echo "${uri%/}"; return 0; fi
    done
    echo "$DEFAULT_MIRROR"
}

find_cached() { # key -> path of a cached tarball, if any
    local f
    for f in "$CACHE/debian-$SUITE-$VARIANT-$1.tar.zst" "$CACHE/debian-$SUITE-$VARIANT-$1.tar.gz"; do
        if [ -s "$f" ]; then echo "$f"; return 0; fi
    done
    return 1
}

decompress() { # file -> stdout
    case $1 in
    *.zst) zstd -dc -- "$1" ;;
    *.gz) gzip -dc -- "$1" ;;
    *) cat -- "$1" ;;
    esac
}

debootstrap_rootfs() { # key -> creates the cached tarball
    local key=$1 mirror root log out tmp comp t0=$SECONDS proxy=""
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || apt_install debootstrap
    if [ ! -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
        apt_install debian-archive-keyring || say "warning: no Debian keyring; debootstrap cannot check signatures"
    fi
    mirror=$(detect_mirror)
    case $mirror in
    http://* | https://* | file:/*) ;;
    *) say "debian: apt source '$mirror' is not usable by debootstrap; using $DEFAULT_MIRROR"
       mirror=$DEFAULT_MIRROR ;;
    esac
    # debootstrap downloads with wget: pass on apt's proxy setting, if any.
    if [ -z "${http_proxy:-}" ] && command -v apt-config >/dev/null 2>&1; then
        proxy=$(apt-config dump 2>/dev/null | sed -n 's/^Acquire::http::Proxy "\(.*\)";$/\1/p' | head -n 1)
        case $proxy in http://* | https://*) ;; *) proxy="" ;; esac
    fi
    root=$WORK/rootfs
    log=$WORK/debootstrap.log
    say "debian: debootstrap --variant=$VARIANT --include=$PACKAGES $SUITE <tmp> $mirror${proxy:+ (proxy $proxy)}"
    say "debian: (this downloads ~100 packages and takes a few minutes; log: $log)"
    # Show debootstrap's stage lines, not one line per package.
    set +e
    as_root env ${proxy:+http_proxy="$proxy"} debootstrap --variant="$VARIANT" --include="$PACKAGES" \
        "$SUITE" "$root" "$mirror" 2>&1 | tee "$log" |
        awk '(/^I: (Retrieving|Validating) / && NF == 4) || (/^I: (Extracting|Unpacking|Configuring) / && NF == 3) {
                 if (++n[$2] % 25 == 0) { print "    I: " $2 " ... " n[$2] " packages"; fflush() }
                 next }
             /^[IEW]: / { print "    " $0; fflush() }'
    local rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ]; then
        tail -n 25 "$log" | sed 's/^/    /' >&2
        [ -f "$root/debootstrap/debootstrap.log" ] && as_root tail -n 25 "$root/debootstrap/debootstrap.log" | sed 's/^/    /' >&2
        die "debootstrap failed (status $rc)"
    fi
    say "debian: debootstrap done in $(elapsed "$t0"); adding user 1000 and /workspace, trimming"
    # shellcheck disable=SC2016 # expanded by the inner sh
    as_root sh -euc '
        r=$1
        if ! grep -q "^[^:]*:[^:]*:1000:" "$r/etc/passwd"; then
            echo "user:x:1000:1000:user:/home/user:/bin/sh" >>"$r/etc/passwd"
            grep -q "^[^:]*:[^:]*:1000:" "$r/etc/group" || echo "user:x:1000:" >>"$r/etc/group"
            [ -f "$r/etc/shadow" ] && echo "user:*:19000:0:99999:7:::" >>"$r/etc/shadow"
            [ -f "$r/etc/gshadow" ] && echo "user:*::" >>"$r/etc/gshadow"
            mkdir -p "$r/home/user" && chown 1000:1000 "$r/home/user" && chmod 0755 "$r/home/user"
        fi
        mkdir -p "$r/workspace" && chmod 0755 "$r/workspace"
        rm -f "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin
        find "$r/var/lib/apt/lists" -maxdepth 1 -type f ! -name lock -delete
        rm -rf "$r/debootstrap"
        : >"$r/etc/resolv.conf"
        echo omnifs-test >"$r/etc/hostname"
    ' sh "$root"
    if command -v zstd >/dev/null 2>&1; then
        comp=(zstd -q -T0 -3); out=$CACHE/debian-$SUITE-$VARIANT-$key.tar.zst
    else
        comp=(gzip -1); out=$CACHE/debian-$SUITE-$VARIANT-$key.tar.gz
    fi
    tmp=$out.tmp.$$
    t0=$SECONDS
    say "debian: caching rootfs as $out"
    as_root tar -C "$root" --numeric-owner --xattrs -cf - . | "${comp[@]}" >"$tmp" ||
        { rm -f "$tmp"; die "could not write $tmp"; }
    mv -f "$tmp" "$out"
    say "debian: cached $(du -h "$out" | cut -f1) in $(elapsed "$t0")"
}

build_debian() {
    local t0=$SECONDS key have tarball arch
    arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
    key=$(printf '%s\n' "recipe=$RECIPE" "suite=$SUITE" "variant=$VARIANT" "include=$PACKAGES" "arch=$arch" |
        sha256sum | cut -c1-16)
    have=$(image_key "$DEBIAN_IMAGE")
    if [ "$force" = 0 ] && [ "$have" = "$key" ]; then
        say "debian: $DEBIAN_IMAGE is up to date (key $key); skipping"
        return 0
    fi
    if [ "$force" = 0 ] && tarball=$(find_cached "$key"); then
        say "debian: using cached rootfs $tarball"
    else
        debootstrap_rootfs "$key"
        tarball=$(find_cached "$key") || die "cached tarball missing after debootstrap"
    fi
    say "debian: importing $tarball as $DEBIAN_IMAGE"
    local t1=$SECONDS old
    old=$(image_id "$DEBIAN_IMAGE")
    decompress "$tarball" |
        "${DOCKER[@]}" import --change 'CMD ["/bin/bash"]' --change "LABEL $LABEL=$key" - "$DEBIAN_IMAGE" >/dev/null ||
        die "docker import of $DEBIAN_IMAGE failed"
    drop_replaced "$old" "$DEBIAN_IMAGE"
    say "debian: imported in $(elapsed "$t1"); $DEBIAN_IMAGE ready after $(elapsed "$t0") (key $key)"
}

# =============================================================================
T0=$SECONDS
build_busybox
images=("$BUSYBOX_IMAGE")
if [ "$busybox_only" = 0 ]; then
    build_debian
    images+=("$DEBIAN_IMAGE")
fi
say "done in $(elapsed "$T0"). Images:"
for i in "${images[@]}"; do
    printf '%s\n' "$i"
done
