#!/bin/sh
# Installs wrk, the HTTP load generator of the logging benchmark (bench/logging_api.py).
# Idempotent: does nothing when wrk is already on the PATH.
set -eu

if command -v wrk >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
    exit 0
fi

echo "wrk is missing: install it as root with" >&2
echo "    apt-get update -qq && apt-get install -y -qq wrk" >&2
echo "(or: sudo $0)." >&2
exit 1
