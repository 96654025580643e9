#!/usr/bin/env bash
# Sandbox only, run by deploy/sandbox-prelude.sh: podman and its tools (apt-get, when missing),
# a containers.conf for this sandbox, and the stand-in base images, each built once.
# A script of its own so that `set -e` holds: in a sourced file it is ignored after `&&`.
set -euo pipefail
SANDBOX_DIR="${MASTOK_SANDBOX_DIR:-/var/tmp/mastok-sandbox}"
here="$(cd "$(dirname "$0")" && pwd)"

for tool in podman runc podman-compose mmdebstrap; do
    command -v "$tool" >/dev/null || {
        echo "sandbox prelude: installing podman, runc, podman-compose, mmdebstrap" >&2
        [ "$(id -u)" = 0 ] || { echo "sandbox prelude: needs root (apt-get, podman)" >&2; exit 1; }
        # A fresh machine may have no package lists yet.
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            podman runc podman-compose mmdebstrap >/dev/null
        break
    }
done
mkdir -p "$SANDBOX_DIR"
printf '[global]\ncert = /etc/ssl/sandbox-ca.crt\n' >"$SANDBOX_DIR/pip.conf"
cat >"$SANDBOX_DIR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
volumes = [
    "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/sandbox-ca.crt:ro",
    "$SANDBOX_DIR/pip.conf:/etc/pip.conf:ro",
]

[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$SANDBOX_DIR/containers.conf"
if ! podman image exists localhost/debian:bookworm-slim; then
    echo "sandbox prelude: a Debian 12 root filesystem (mmdebstrap, 1 to 4 min)" >&2
    mmdebstrap --quiet --variant=minbase --include=ca-certificates \
        bookworm "$SANDBOX_DIR/rootfs.tar"
    podman import --quiet "$SANDBOX_DIR/rootfs.tar" localhost/debian:bookworm-slim >/dev/null
    rm -f "$SANDBOX_DIR/rootfs.tar"
fi
if ! podman image exists localhost/python:3.11-slim; then
    podman build --quiet --pull=never --format docker -t localhost/python:3.11-slim \
        -f "$here/python.Containerfile" "$here" >/dev/null
fi
if ! podman image exists localhost/postgres:15; then
    podman build --quiet --pull=never --format docker -t localhost/postgres:15 \
        -f "$here/postgres.Containerfile" "$here" >/dev/null
fi
echo "sandbox prelude: CONTAINERS_CONF=$CONTAINERS_CONF; stand-in images ready" >&2
