#!/usr/bin/env bash
# dockerd-remote-start.sh - a SECOND Docker daemon that stands for one on
# another machine, for the docker backend's agent-mode tests.
#
# It listens on tcp://127.0.0.1:PORT with TLS (client certificates required;
# a CA, a server and a client certificate are made here with openssl), and runs
# in a mount namespace of its own (unshare -m) where /tmp, /work, /home and
# /root are empty tmpfs mounts: the folders holding the tests' data folders do
# not exist for it, exactly as on another machine, so a bind mount of them
# fails and the probe picks agent mode. It has its own --data-root,
# --exec-root (hence its own containerd) and --pidfile under STATE, no bridge
# and no iptables. The busybox test image is imported into it by
# scripts/make-test-images.sh --busybox-only (docker import, DOCKER_HOST
# pointing at it).
#
# Prints, and writes to STATE/env, the variables a client needs:
#   DOCKER_HOST=tcp://127.0.0.1:PORT DOCKER_TLS_VERIFY=1
#   DOCKER_CERT_PATH=STATE/client
# scripts/dockerd-remote-stop.sh stops it. Idempotent: a daemon of ours that
# answers is reused. Runs as root.
#
# Environment:
#   OMNI_DOCKERD_REMOTE_STATE  state dir (default /var/lib/omnifs-dockerd-remote;
#                              not under /tmp, which the daemon cannot see)
#   OMNI_DOCKERD_REMOTE_PORT   TCP port (default 23760)
#   OMNI_DOCKERD_REMOTE_DRIVER storage driver (default vfs: works anywhere)
#   OMNI_DOCKERD_TIMEOUT       seconds to wait for it to answer (default 60)
set -euo pipefail

STATE=${OMNI_DOCKERD_REMOTE_STATE:-/var/lib/omnifs-dockerd-remote}
PORT=${OMNI_DOCKERD_REMOTE_PORT:-23760}
DRIVER=${OMNI_DOCKERD_REMOTE_DRIVER:-vfs}
TIMEOUT=${OMNI_DOCKERD_TIMEOUT:-60}
IMAGE=omnifs-test/busybox:latest
CERTS=$STATE/certs
CLIENT=$STATE/client
PIDF=$STATE/dockerd.pid

say() { printf 'dockerd-remote-start: %s\n' "$*"; }
die() { printf 'dockerd-remote-start: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run this as root (a daemon in its own mount namespace)"
command -v openssl >/dev/null || die "openssl is missing (scripts/install-deps.sh)"
DOCKERD=$(command -v dockerd 2>/dev/null || echo /usr/sbin/dockerd)
[ -x "$DOCKERD" ] || die "dockerd is missing (scripts/install-deps.sh)"

remote() {
    docker -H "tcp://127.0.0.1:$PORT" --tlsverify --tlscacert "$CLIENT/ca.pem" \
        --tlscert "$CLIENT/cert.pem" --tlskey "$CLIENT/key.pem" "$@"
}

write_env() {
    printf 'DOCKER_HOST=tcp://127.0.0.1:%s\nDOCKER_TLS_VERIFY=1\nDOCKER_CERT_PATH=%s\n' \
        "$PORT" "$CLIENT" >"$STATE/env"
    cat "$STATE/env"
}

mkdir -p "$STATE" "$CERTS" "$CLIENT"
chmod 0755 "$STATE" "$CLIENT"

if [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null && remote version >/dev/null 2>&1; then
    say "dockerd pid $(cat "$PIDF") answers on 127.0.0.1:$PORT; reusing it"
    write_env
    exit 0
fi

# --- certificates ------------------------------------------------------------
if [ ! -s "$CLIENT/key.pem" ]; then
    say "making a CA, a server and a client certificate"
    (
        cd "$CERTS"
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=omnifs-test-ca \
            -keyout ca-key.pem -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
            -keyout server-key.pem -out server.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
            -days 30 -extfile server.ext -out server-cert.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj /CN=omnifs-test-client \
            -keyout key.pem -out client.csr 2>/dev/null
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
            -days 30 -extfile client.ext -out cert.pem 2>/dev/null
        cp ca.pem cert.pem key.pem "$CLIENT/"
    )
    chmod 0644 "$CLIENT"/*.pem
fi

# --- the daemon, in a mount namespace where our folders are empty ------------
rm -f "$PIDF"
args=(-H "tcp://127.0.0.1:$PORT" --tlsverify --tlscacert "$CERTS/ca.pem"
    --tlscert "$CERTS/server-cert.pem" --tlskey "$CERTS/server-key.pem"
    --data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$PIDF"
    --bridge=none --iptables=false --storage-driver="$DRIVER")
if "$DOCKERD" --help 2>&1 | grep -q -- '--ip6tables'; then args+=(--ip6tables=false); fi
say "starting $DOCKERD ${args[*]} (log: $STATE/dockerd.log)"
# shellcheck disable=SC2016 # expanded by the inner sh
setsid unshare -m --propagation private -- sh -c '
    for d in /tmp /work /home /root; do
        [ -d "$d" ] && mount -t tmpfs -o mode=1777,size=256m omnifs-hidden "$d"
    done
    exec "$@"' sh "$DOCKERD" "${args[@]}" </dev/null >>"$STATE/dockerd.log" 2>&1 &

deadline=$((SECONDS + TIMEOUT))
until remote version >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        tail -n 20 "$STATE/dockerd.log" >&2 || true
        die "the second dockerd did not answer on 127.0.0.1:$PORT within ${TIMEOUT}s"
    fi
    sleep 0.5
done
say "dockerd pid $(cat "$PIDF") answers on 127.0.0.1:$PORT"

# --- the test image ------------------------------------------------------------
if ! remote image inspect "$IMAGE" >/dev/null 2>&1; then
    DOCKER_HOST=tcp://127.0.0.1:$PORT DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$CLIENT \
        "$(dirname "$0")/make-test-images.sh" --busybox-only >>"$STATE/images.log" 2>&1 ||
        die "scripts/make-test-images.sh --busybox-only failed against it (see $STATE/images.log)"
    say "imported $IMAGE"
fi
write_env
