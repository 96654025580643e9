# Sandbox only: what a machine without a container registry needs before `make image-test`.
# A lab with a normal registry (Docker Hub reachable) skips this file.
#
# Source it, do not run it:  . deploy/sandbox-prelude.sh && make image-test
#
# It changes nothing system-wide. It writes a containers.conf of its own and exports
# CONTAINERS_CONF to it (this sandbox cannot raise podman's default ulimits, and crun refuses its
# cgroup layout), then builds local stand-ins, once, for the base images the stack names:
#   localhost/debian:bookworm-slim  a minbase Debian 12 root filesystem (mmdebstrap)
#   localhost/python:3.11-slim      that one with Debian's Python 3.11 in a venv on PATH
#   localhost/postgres:15           Debian's postgresql-15, initdb from POSTGRES_* at first start
# `podman build --pull=never` and `podman-compose` resolve `python:3.11-slim` and the others to
# them. Builds reach PyPI through this machine's TLS-intercepting proxy: its CA bundle is handed
# to RUN steps only (containers.conf mounts it, and a pip.conf naming it, into every container
# and build step: podman applies containers.conf's volumes to RUN, not its env), never copied
# into an image.

SANDBOX_DIR="${MASTOK_SANDBOX_DIR:-/var/tmp/mastok-sandbox}"
_prelude_here="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"

_prelude() {
    set -e
    for tool in podman runc podman-compose mmdebstrap; do
        command -v "$tool" >/dev/null || {
            echo "sandbox prelude: installing podman, runc, podman-compose, mmdebstrap" >&2
            apt-get install -y -q podman runc podman-compose mmdebstrap >/dev/null
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
            -f "$_prelude_here/sandbox/python.Containerfile" "$_prelude_here/sandbox" >/dev/null
    fi
    if ! podman image exists localhost/postgres:15; then
        podman build --quiet --pull=never --format docker -t localhost/postgres:15 \
            -f "$_prelude_here/sandbox/postgres.Containerfile" "$_prelude_here/sandbox" >/dev/null
    fi
    echo "sandbox prelude: CONTAINERS_CONF=$CONTAINERS_CONF; stand-in images ready" >&2
}

if (_prelude); then
    export CONTAINERS_CONF="$SANDBOX_DIR/containers.conf"
else
    echo "sandbox prelude failed" >&2
    false
fi
