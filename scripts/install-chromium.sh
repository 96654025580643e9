#!/bin/sh
# Installs the Debian Chromium that the browser tests drive (tests/fixtures/browser.py).
# Idempotent: does nothing when /usr/bin/chromium is already there.
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    exit 0
fi

echo "Chromium is missing: install it as root with" >&2
echo "    apt-get update -qq && apt-get install -y -qq chromium" >&2
echo "(or: sudo $0), or point MASTOK_CHROMIUM at a Chromium binary." >&2
exit 1
