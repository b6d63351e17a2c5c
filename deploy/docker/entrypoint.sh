#!/bin/sh
# act-service: the image's entrypoint; runs one ACT stream service.
#
#   act-service SERVICE [ARGS...]   annotator | criticizer | sampler |
#                                   review-gateway | trainer
#   act-service act [ARGS...]       the act command-line tool
#   act-service healthcheck [PORT]  exit 0 when the gRPC health service on
#                                   127.0.0.1:PORT (default 50051) is SERVING
#
# SERVICE may also come from $ACT_SERVICE. Settings come from the environment
# (ACT_KAFKA_*, ACT_<SERVICE>_*); see docs/kubernetes.md.
set -eu

usage() {
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
}

service="${1:-${ACT_SERVICE:-}}"
if [ "$#" -gt 0 ]; then
  shift
fi

case "$service" in
  annotator | criticizer | sampler | trainer)
    exec python -m "services.$service" "$@"
    ;;
  review-gateway | review_gateway)
    exec python -m services.review_gateway "$@"
    ;;
  act)
    exec act "$@"
    ;;
  healthcheck)
    exec python - "${1:-50051}" <<'PY'
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

channel = grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}")
try:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
except grpc.RpcError:
    sys.exit(1)
sys.exit(0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1)
PY
    ;;
  -h | --help | help)
    usage
    ;;
  "")
    usage >&2
    exit 64
    ;;
  *)
    echo "act-service: unknown service '$service'" >&2
    usage >&2
    exit 64
    ;;
esac
