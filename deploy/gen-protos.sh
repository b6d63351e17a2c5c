#!/usr/bin/env bash
# Generates the Python protobuf/gRPC code of act.v1 from protos/act/v1/*.proto.
#
#   deploy/gen-protos.sh            # regenerate next to the sources (protos/act/v1)
#   deploy/gen-protos.sh OUT_DIR    # generate into OUT_DIR/act/v1 instead (staleness check)
#
# Uses "${PYTHON:-python}", which needs grpcio-tools pinned exactly as in
# pyproject.toml: generated code embeds the generator's version, and
# tests/test_protos.py compares a fresh generation byte for byte with the
# committed files.
set -euo pipefail

# An explicit output directory is relative to the caller's working directory.
out=""
if [[ $# -ge 1 ]]; then
  mkdir -p "$1"
  out="$(cd "$1" && pwd)"
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z "$out" || "$out" == "$(pwd)/protos" ]]; then
  out="protos"
  # Drop previous output so a deleted .proto leaves no orphaned module behind.
  rm -f protos/act/v1/*_pb2.py protos/act/v1/*_pb2.pyi protos/act/v1/*_pb2_grpc.py
fi

"${PYTHON:-python}" -m grpc_tools.protoc \
  -Iprotos \
  --python_out="$out" \
  --pyi_out="$out" \
  --grpc_python_out="$out" \
  protos/act/v1/*.proto
