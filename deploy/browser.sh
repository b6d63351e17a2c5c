#!/usr/bin/env bash
# Debian's Chromium for the browser tests and the web benchmark.
#
# Playwright for Python drives it through `executable_path` (Playwright's own
# browser download is not reachable from CI). Idempotent: an installed
# Chromium is left alone. Needs root (or password-less sudo) for apt-get.
#
# Usage: deploy/browser.sh [install|status]     (default: install)
set -euo pipefail

CHROMIUM="${ACT_CHROMIUM:-/usr/bin/chromium}"

status() {
    if [ -x "$CHROMIUM" ]; then
        echo "chromium: $("$CHROMIUM" --version 2>/dev/null || echo installed) at $CHROMIUM"
    else
        echo "chromium: not installed (would be $CHROMIUM)"
        return 1
    fi
}

install() {
    if [ -x "$CHROMIUM" ]; then
        status
        return 0
    fi
    local SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
    echo "installing Debian's chromium (apt-get)..."
    # The index may be stale on a fresh machine; one update, then the package.
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null
    status
}

case "${1:-install}" in
    install) install ;;
    status) status ;;
    *) echo "usage: $0 [install|status]" >&2; exit 2 ;;
esac
