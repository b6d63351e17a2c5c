#!/usr/bin/env bash
# Refreshes the vendored Strimzi CRDs (k8s/schemas/strimzi/) from Maven Central.
#
# Strimzi publishes the CRDs of its `v1` API, generated from its Java model,
# inside the test jar of io.strimzi:api (crds/v1/*.yaml, identical to
# packaging/install/cluster-operator/04x-Crd-*.yaml of the release). This
# script resolves that jar with Maven and extracts the CRDs ACT stream uses.
# Run it by hand when moving to another Strimzi release; CI never downloads.
#
#   k8s/schemas/update-strimzi-crds.sh [VERSION]     (default: the one below)
set -euo pipefail

VERSION="${1:-0.51.0}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/strimzi"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mvn -B -q dependency:copy -Dartifact="io.strimzi:api:${VERSION}:jar:tests" -DoutputDirectory="$tmp"
unzip -q -o "$tmp/api-${VERSION}-tests.jar" 'crds/v1/*' -d "$tmp"
for crd in 040-Crd-kafka 043-Crd-kafkatopic 044-Crd-kafkauser 045-Crd-kafkanodepool; do
  {
    echo "# Strimzi $VERSION CustomResourceDefinition, unmodified, from the Maven Central"
    echo "# artifact io.strimzi:api:$VERSION:jar:tests (crds/v1/$crd.yaml), Apache-2.0."
    echo "# Refresh with k8s/schemas/update-strimzi-crds.sh."
    cat "$tmp/crds/v1/$crd.yaml"
  } > "$dest/$crd.yaml"
done
echo "$VERSION" > "$dest/VERSION"
echo "Strimzi $VERSION CRDs written to $dest"
