#!/usr/bin/env bash
# Installs the pinned tools that render the Kubernetes manifests into
# <repo>/.local/bin (idempotent: a tool already at its pinned version is kept).
#
#   k8s/tools.sh            install what is missing, print the bin directory
#   K8S_TOOLS_BIN=dir k8s/tools.sh
#
# Needs Go (>= 1.22) and the Go module proxy; nothing else is downloaded.
set -euo pipefail

KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.7.1}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
bin="${K8S_TOOLS_BIN:-$repo/.local/bin}"
mkdir -p "$bin"

have_version() { # tool version
  [[ -x "$bin/$1" && -f "$bin/.$1.version" && "$(cat "$bin/.$1.version")" == "$2" ]]
}

if ! have_version kustomize "$KUSTOMIZE_VERSION"; then
  if ! command -v go >/dev/null 2>&1; then
    echo "k8s/tools.sh: Go is required to install kustomize $KUSTOMIZE_VERSION" >&2
    exit 1
  fi
  echo "k8s/tools.sh: installing kustomize $KUSTOMIZE_VERSION into $bin" >&2
  GOBIN="$bin" GOFLAGS="${GOFLAGS:-} -trimpath" CGO_ENABLED=0 \
    go install "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}"
  echo "$KUSTOMIZE_VERSION" > "$bin/.kustomize.version"
fi

echo "$bin"
