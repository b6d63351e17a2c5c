#!/bin/sh
# act-service: the image's entrypoint; runs one ACT stream service.
#
#   act-service SERVICE [ARGS...]   annotator | criticizer | sampler |
#                                   review-gateway | trainer | ingest
#   act-service act [ARGS...]       the act command-line tool
#   act-service healthcheck [PORT]  exit 0 when the gRPC health service on
#                                   127.0.0.1:PORT (default 50051) is SERVING
#                                   (TLS with ACT_CLIENT_TLS_CA_FILE set)
#
# SERVICE may also come from $ACT_SERVICE. Settings come from the environment
# (ACT_KAFKA_*, ACT_<SERVICE>_*); see docs/kubernetes.md.
set -eu

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

service="${1:-${ACT_SERVICE:-}}"
if [ "$#" -gt 0 ]; then
  shift
fi

case "$service" in
  annotator | criticizer | sampler | trainer | ingest)
    exec python -m "services.$service" "$@"
    ;;
  review-gateway | review_gateway)
    exec python -m services.review_gateway "$@"
    ;;
  act)
    exec act "$@"
    ;;
  healthcheck)
    # Over TLS when ACT_CLIENT_TLS_CA_FILE (and for mutual TLS _CERT_FILE,
    # _KEY_FILE) is set: see services/runtime/health_check.py.
    exec python -m services.runtime.health_check --target "127.0.0.1:${1:-50051}"
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
