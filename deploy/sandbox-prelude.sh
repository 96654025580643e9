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

if bash "$(dirname "${BASH_SOURCE[0]:-$0}")/sandbox/prepare.sh"; then
    export CONTAINERS_CONF="$SANDBOX_DIR/containers.conf"
else
    echo "sandbox prelude failed" >&2
    false
fi
