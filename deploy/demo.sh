#!/usr/bin/env bash
# `make demo`: the main job on this machine.
#
# Starts the local stack (Kafka in KRaft mode and PostgreSQL; the SmolLM2
# server is not needed: the demo runs the few-shot local models), then
# `python -m services.demo`: a real data set through the annotator,
# criticizer, sampler, review gateway (replay reviewer at the recommended
# budget) and trainer, a fit with the ACT loss, and the paper's Table 3 with
# plots under reports/demo/<run>/. Arguments go to the demo, e.g.
#   make demo DEMO_ARGS="--dataset spam"
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}

printf '== local stack (Kafka KRaft + topics; PostgreSQL)\n'
ACT_STACK_NO_LLM=1 PYTHON="$PYTHON" bash deploy/local-stack.sh up
export ACT_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:${ACT_KAFKA_PORT:-9092}
export ACT_DEMO_DATABASE_URL=${ACT_DEMO_DATABASE_URL:-postgresql://act:act@127.0.0.1:${ACT_PG_PORT:-55432}/act}

"$PYTHON" -m services.demo "$@"
echo
echo "The local stack keeps running; stop it with: make stack-down"
