#!/usr/bin/env bash
# `make demo`: the main job on this machine.
#
# Today it starts the local stack, creates a task, streams a built-in data set
# into act.items.v1 and shows the pipeline status. The full ACT run (annotator,
# criticizer, sampler, review gateway with the replay reviewer, trainer, and
# the paper's Table 3) is wired in here as those services land.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
ACT=("$PYTHON" -m services.cli.main)
say() { printf '\n== %s\n' "$*"; }

say "local stack (Kafka KRaft + topics; PostgreSQL)"
PYTHON="$PYTHON" bash deploy/local-stack.sh up
BOOT=127.0.0.1:${ACT_KAFKA_PORT:-9092}
export ACT_KAFKA_BOOTSTRAP_SERVERS=$BOOT

say "task"
TASK_ID=demo-$(date +%s)
"${ACT[@]}" task create --task-id "$TASK_ID" --name "demo moderation" --labels ham,spam \
  --modality text --budget 0.2 --rule threshold

say "ingest the built-in demo-text data set"
"${ACT[@]}" ingest --task "$TASK_ID" --dataset demo-text --batch-id "$TASK_ID"

say "pipeline status"
"${ACT[@]}" status
echo
echo "The local stack keeps running; stop it with: make stack-down"
