#!/usr/bin/env bash
# Local development stack for ACT stream: a single-node Apache Kafka broker in
# KRaft combined mode (started from the Maven Central jars, no Docker) and a
# private PostgreSQL cluster. Every subcommand is idempotent.
#
# Usage: deploy/local-stack.sh [up|down|status|kafka-up|kafka-down|kafka-kill|
#                               kafka-status|postgres-up|postgres-down|topics]
#
# See deploy/README.md for the environment variables and where state lives.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd -- "$SCRIPT_DIR/.." && pwd -P)"

STATE_DIR="${ACT_STACK_DIR:-$REPO/.local/stack}"
KAFKA_PORT="${ACT_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${ACT_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_VERSION="${ACT_KAFKA_VERSION:-3.9.1}"
KAFKA_HEAP="${ACT_KAFKA_HEAP:--Xms256m -Xmx768m}"
KAFKA_START_TIMEOUT="${ACT_KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${ACT_KAFKA_STOP_TIMEOUT:-60}"
PG_PORT="${ACT_PG_PORT:-55432}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then
        PYTHON="$REPO/.venv/bin/python"
    else
        PYTHON="python3"
    fi
fi

log() { printf '[local-stack] %s\n' "$*"; }
warn() { printf '[local-stack] WARNING: %s\n' "$*" >&2; }
die() {
    printf '[local-stack] ERROR: %s\n' "$*" >&2
    exit 1
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
for _var in KAFKA_PORT KAFKA_CONTROLLER_PORT PG_PORT KAFKA_START_TIMEOUT KAFKA_STOP_TIMEOUT; do
    is_uint "${!_var}" || die "$_var must be a number, got '${!_var}'"
done
[[ "$KAFKA_PORT" != "$KAFKA_CONTROLLER_PORT" ]] ||
    die "ACT_KAFKA_PORT and ACT_KAFKA_CONTROLLER_PORT must differ (both $KAFKA_PORT)"

usage() {
    sed -n '2,9p' -- "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

case "${1:-up}" in
-h | --help | help)
    usage
    exit 0
    ;;
esac

mkdir -p -- "$STATE_DIR"
STATE_DIR="$(cd -- "$STATE_DIR" && pwd -P)"

KAFKA_DIR="$STATE_DIR/kafka"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOGS="$KAFKA_DIR/logs"
KAFKA_LOG="$KAFKA_LOGS/kafka.log"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_CONFIG="$KAFKA_DIR/server.properties"
KAFKA_LOG4J="$KAFKA_DIR/log4j.properties"
# ACT_KAFKA_CLASSPATH_FILE lets several state dirs (test sessions) share one
# resolved classpath instead of running Maven for each.
KAFKA_CLASSPATH_FILE="${ACT_KAFKA_CLASSPATH_FILE:-$KAFKA_DIR/classpath.txt}"
KAFKA_POM="$SCRIPT_DIR/kafka/pom.xml"

PG_DIR="$STATE_DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_SOCKET_DIR="$PG_DIR/run"
PG_LOG="$PG_DIR/postgres.log"
PG_DSN="postgresql://act:act@127.0.0.1:$PG_PORT/act"

BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

# Serialise concurrent invocations on the same state dir (flock is optional).
# Long-lived children (the broker, the postmaster) must not inherit fd 9, or
# they would hold the lock for as long as they run: spawn them with 9>&-.
with_lock() {
    local name="$1"
    shift
    if command -v flock >/dev/null 2>&1; then
        (
            flock -w 300 9 || die "could not take the lock $STATE_DIR/.$name.lock"
            "$@"
        ) 9>"$STATE_DIR/.$name.lock"
    else
        "$@"
    fi
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# True when process $1 exists and is not a zombie (a killed process stays a
# zombie until its parent, often init, reaps it).
pid_alive() {
    [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat="$(ps -o stat= -p "$1" 2>/dev/null || true)"
    [[ -n "$stat" && "$stat" != Z* ]]
}

# --------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------

require_java() {
    command -v java >/dev/null 2>&1 ||
        die "Java 17+ is required: apt-get install openjdk-17-jre-headless"
    local line major
    line="$(java -version 2>&1 | grep -m1 -i 'version' || true)"
    # 'openjdk version "17.0.15" 2025-04-15' or 'java version "1.8.0_402"'
    major="$(sed -E 's/.*version "([0-9]+)(\.([0-9]+))?.*/\1 \3/' <<<"$line")"
    read -r major minor <<<"$major"
    if [[ "$major" == "1" ]]; then major="${minor:-0}"; fi
    is_uint "${major:-x}" || die "cannot parse the Java version from: $line"
    ((major >= 17)) ||
        die "Java 17+ is required (found Java $major): apt-get install openjdk-17-jre-headless"
}

require_maven() {
    command -v mvn >/dev/null 2>&1 ||
        die "Maven is required to fetch the Kafka jars: apt-get install maven"
}

# Prints the Kafka classpath; resolves it with Maven unless a cached
# classpath file for this Kafka version exists and all its jars are present.
kafka_classpath() {
    mkdir -p -- "$KAFKA_DIR" "$(dirname -- "$KAFKA_CLASSPATH_FILE")"
    if [[ -s "$KAFKA_CLASSPATH_FILE" && "$KAFKA_CLASSPATH_FILE" -nt "$KAFKA_POM" ]]; then
        local cp ok=1 jar
        cp="$(<"$KAFKA_CLASSPATH_FILE")"
        if [[ ":$cp:" != *"/kafka_2.13-$KAFKA_VERSION.jar:"* ]]; then
            ok=0
        else
            local -a jars
            IFS=: read -r -a jars <<<"$cp"
            for jar in "${jars[@]}"; do
                [[ -f "$jar" ]] || {
                    ok=0
                    break
                }
            done
        fi
        if ((ok)); then
            printf '%s' "$cp"
            return 0
        fi
    fi
    require_maven
    log "resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION with Maven (cached in ~/.m2) ..." >&2
    local mvn_log="$KAFKA_DIR/maven.log" tmp="$KAFKA_CLASSPATH_FILE.$$.tmp"
    rm -f -- "$tmp"
    if ! mvn -q -B -Dstyle.color=never -f "$KAFKA_POM" dependency:build-classpath \
        "-Dmdep.outputFile=$tmp" "-Dkafka.version=$KAFKA_VERSION" >"$mvn_log" 2>&1; then
        tail -n 50 -- "$mvn_log" >&2 || true
        die "Maven could not resolve the Kafka $KAFKA_VERSION classpath (full log: $mvn_log)"
    fi
    [[ -s "$tmp" ]] || die "Maven wrote no classpath (log: $mvn_log)"
    printf '%s' "$(<"$tmp")"
    mv -f -- "$tmp" "$KAFKA_CLASSPATH_FILE"
}

write_kafka_config() {
    mkdir -p -- "$KAFKA_DATA" "$KAFKA_LOGS"
    cat >"$KAFKA_CONFIG" <<EOF
# Generated by deploy/local-stack.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$KAFKA_DATA
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a SIGKILL (kafka-kill) the restarted broker can only re-register once
# the controller has expired the old session: 3 s instead of the default 9 s.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=3000
group.min.session.timeout.ms=1000
auto.create.topics.enable=false
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
EOF
    cat >"$KAFKA_LOG4J" <<'EOF'
# Generated by deploy/local-stack.sh. Everything goes to stdout, which the
# script redirects to kafka/logs/kafka.log (the previous run's is kafka.log.1).
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
log4j.logger.org.apache.kafka.common.config.AbstractConfig=WARN
EOF
}

# The full command line of a process (the classpath makes it long: no
# truncation), or nothing when it is gone.
proc_args() {
    if [[ -r "/proc/$1/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
    else
        ps -ww -o args= -p "$1" 2>/dev/null || true
    fi
}

is_our_kafka() {
    [[ "$(proc_args "$1")" == *" kafka.Kafka $KAFKA_CONFIG"* ]]
}

# Pids of java processes running kafka.Kafka with this state dir's config.
kafka_pids() {
    local pid
    if [[ -s "$KAFKA_PIDFILE" ]]; then
        pid="$(<"$KAFKA_PIDFILE")"
        if is_uint "$pid" && pid_alive "$pid" && is_our_kafka "$pid"; then
            echo "$pid"
            return 0
        fi
    fi
    # Stale or missing pidfile: look for a broker started with our config.
    for pid in $(ps -eo pid= 2>/dev/null); do
        if is_our_kafka "$pid"; then
            echo "$pid"
        fi
    done
}

kafka_running_pid() {
    kafka_pids | head -n 1
}

kafka_started_in_log() {
    [[ -f "$KAFKA_LOG" ]] && grep -q 'Kafka Server started' -- "$KAFKA_LOG"
}

kafka_wait_ready() {
    local pid="$1" deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! pid_alive "$pid"; then
            warn "the Kafka broker (pid $pid) exited during startup; last 50 lines of $KAFKA_LOG:"
            tail -n 50 -- "$KAFKA_LOG" >&2 || true
            rm -f -- "$KAFKA_PIDFILE"
            exit 1
        fi
        if kafka_started_in_log && port_open "$KAFKA_PORT"; then
            return 0
        fi
        sleep 0.5
    done
    warn "the Kafka broker (pid $pid) was not ready after ${KAFKA_START_TIMEOUT}s; last 50 lines of $KAFKA_LOG:"
    tail -n 50 -- "$KAFKA_LOG" >&2 || true
    exit 1
}

kafka_format_storage() {
    local cp="$1" id
    if [[ -f "$KAFKA_DATA/meta.properties" ]]; then
        return 0
    fi
    id="$(java -cp "$cp" "-Dlog4j.configuration=file:$KAFKA_LOG4J" \
        kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    [[ -n "$id" ]] || die "kafka.tools.StorageTool random-uuid printed nothing"
    log "formatting KRaft storage in $KAFKA_DATA (cluster id $id)"
    java -cp "$cp" "-Dlog4j.configuration=file:$KAFKA_LOG4J" \
        kafka.tools.StorageTool format -t "$id" -c "$KAFKA_CONFIG" --ignore-formatted \
        >"$KAFKA_LOGS/format.log" 2>&1 || {
        cat -- "$KAFKA_LOGS/format.log" >&2
        die "formatting the Kafka storage failed"
    }
}

kafka_up_locked() {
    local pid
    pid="$(kafka_running_pid)"
    if [[ -n "$pid" ]]; then
        echo "$pid" >"$KAFKA_PIDFILE"
        local want="listeners=PLAINTEXT://$BOOTSTRAP,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT" have
        have="$(grep -m1 '^listeners=' -- "$KAFKA_CONFIG" 2>/dev/null || true)"
        [[ "$have" == "$want" ]] ||
            die "Kafka already runs from $STATE_DIR with '$have'; run kafka-down first to change ports"
        kafka_wait_ready "$pid"
        log "Kafka already running (pid $pid), bootstrap $BOOTSTRAP"
        return 0
    fi
    rm -f -- "$KAFKA_PIDFILE"
    require_java
    local cp
    cp="$(kafka_classpath)"
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if port_open "$port"; then
            die "port 127.0.0.1:$port is already in use by another process; set ACT_KAFKA_PORT / ACT_KAFKA_CONTROLLER_PORT"
        fi
    done
    write_kafka_config
    kafka_format_storage "$cp"
    if [[ -f "$KAFKA_LOG" ]]; then
        mv -f -- "$KAFKA_LOG" "$KAFKA_LOG.1"
    fi
    local -a heap
    read -r -a heap <<<"$KAFKA_HEAP"
    log "starting Kafka $KAFKA_VERSION (KRaft, node 1) on $BOOTSTRAP, controller 127.0.0.1:$KAFKA_CONTROLLER_PORT"
    # setsid: own session, so the broker survives the caller (terminal, pytest);
    # the inner shell records its own pid and then execs java, keeping that pid.
    # shellcheck disable=SC2016  # $$ and $@ are for the inner shell
    setsid bash -c 'echo "$$" >"$1"; shift; exec nohup "$@"' local-stack-kafka \
        "$KAFKA_PIDFILE" java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true "-Dkafka.logs.dir=$KAFKA_LOGS" \
        "-Dlog4j.configuration=file:$KAFKA_LOG4J" \
        -cp "$cp" kafka.Kafka "$KAFKA_CONFIG" \
        </dev/null >"$KAFKA_LOG" 2>&1 9>&- &
    local waited=0
    while [[ ! -s "$KAFKA_PIDFILE" ]] && ((waited < 50)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    [[ -s "$KAFKA_PIDFILE" ]] || die "the broker process did not start"
    pid="$(<"$KAFKA_PIDFILE")"
    local t0=$SECONDS
    kafka_wait_ready "$pid"
    log "Kafka started (pid $pid) in $((SECONDS - t0))s, bootstrap $BOOTSTRAP, logs $KAFKA_LOG"
}

kafka_up() { with_lock kafka kafka_up_locked; }

kafka_wait_gone() {
    local timeout="$1" pid deadline
    shift
    deadline=$((SECONDS + timeout))
    for pid in "$@"; do
        while pid_alive "$pid" && ((SECONDS < deadline)); do
            sleep 0.2
        done
        pid_alive "$pid" && return 1
    done
    return 0
}

kafka_down_locked() {
    local -a pids
    mapfile -t pids < <(kafka_pids)
    if ((${#pids[@]} == 0)); then
        rm -f -- "$KAFKA_PIDFILE"
        log "Kafka is not running"
        return 0
    fi
    log "stopping Kafka (pid ${pids[*]}) ..."
    kill -TERM "${pids[@]}" 2>/dev/null || true
    if ! kafka_wait_gone "$KAFKA_STOP_TIMEOUT" "${pids[@]}"; then
        warn "Kafka did not stop within ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "${pids[@]}" 2>/dev/null || true
        kafka_wait_gone 10 "${pids[@]}" || die "could not kill Kafka (pid ${pids[*]})"
    fi
    rm -f -- "$KAFKA_PIDFILE"
    log "Kafka stopped"
}

kafka_down() { with_lock kafka kafka_down_locked; }

kafka_kill_locked() {
    local -a pids
    mapfile -t pids < <(kafka_pids)
    if ((${#pids[@]} == 0)); then
        rm -f -- "$KAFKA_PIDFILE"
        log "Kafka is not running"
        return 0
    fi
    log "killing Kafka (SIGKILL, pid ${pids[*]})"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    kafka_wait_gone 10 "${pids[@]}" || die "could not kill Kafka (pid ${pids[*]})"
    rm -f -- "$KAFKA_PIDFILE"
}

kafka_kill() { with_lock kafka kafka_kill_locked; }

# Exit status 0 when running and accepting connections, 3 otherwise.
kafka_status() {
    local pid
    pid="$(kafka_running_pid)"
    if [[ -n "$pid" ]] && port_open "$KAFKA_PORT"; then
        echo "kafka: running (pid $pid), bootstrap $BOOTSTRAP"
        return 0
    elif [[ -n "$pid" ]]; then
        echo "kafka: starting or unhealthy (pid $pid, port $KAFKA_PORT closed), bootstrap $BOOTSTRAP"
        return 3
    fi
    echo "kafka: stopped (would listen on $BOOTSTRAP)"
    return 3
}

topics() {
    if [[ "${ACT_STACK_NO_TOPICS:-0}" == "1" ]]; then
        log "ACT_STACK_NO_TOPICS=1: not creating topics"
        return 0
    fi
    log "ensuring topics on $BOOTSTRAP with $PYTHON"
    (
        cd -- "$REPO"
        export PYTHONPATH="$REPO:$REPO/protos${PYTHONPATH:+:$PYTHONPATH}"
        "$PYTHON" -m services.cli.main topics ensure --bootstrap "$BOOTSTRAP" --replication 1
    ) || die "topic creation failed (\"$PYTHON\" -m services.cli.main topics ensure)"
}

# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------

PG_BIN=""

find_pg_bin() {
    local candidate
    if [[ -n "${ACT_PG_BIN:-}" ]]; then
        [[ -x "$ACT_PG_BIN/initdb" ]] || die "ACT_PG_BIN=$ACT_PG_BIN has no initdb"
        PG_BIN="$ACT_PG_BIN"
        return 0
    fi
    candidate="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
        sort -V | tail -n 1 || true)"
    if [[ -z "$candidate" ]] && command -v initdb >/dev/null 2>&1; then
        candidate="$(command -v initdb)"
    fi
    if [[ -n "$candidate" ]]; then
        PG_BIN="$(dirname -- "$candidate")"
        return 0
    fi
    return 1
}

require_postgres() {
    find_pg_bin && return 0
    if [[ "$(id -u)" != "0" ]]; then
        die "PostgreSQL server binaries (initdb) not found: sudo apt-get install postgresql (or set ACT_PG_BIN)"
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "PostgreSQL server binaries (initdb) not found and apt-get is unavailable; install PostgreSQL 15+ and set ACT_PG_BIN"
    log "installing PostgreSQL with apt-get ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
    find_pg_bin || die "PostgreSQL was installed but no initdb was found under /usr/lib/postgresql/*/bin"
}

# Run a PostgreSQL command as the cluster owner (postgres when we are root).
as_pg() {
    if [[ "$(id -u)" == "0" ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_superuser() {
    if [[ "$(id -u)" == "0" ]]; then echo postgres; else id -un; fi
}

# When root, the postgres user must be able to traverse every parent of the
# cluster directory; grant o+x (search, not listing) where it is missing.
pg_make_traversable() {
    [[ "$(id -u)" == "0" ]] || return 0
    id postgres >/dev/null 2>&1 || die "the 'postgres' OS user does not exist (is the postgresql package installed?)"
    local dir="$STATE_DIR"
    while [[ "$dir" != "/" && -n "$dir" ]]; do
        if ! runuser -u postgres -- test -x "$dir"; then
            log "chmod o+x $dir (so that the postgres user can reach $PG_DIR)"
            chmod o+x -- "$dir"
        fi
        dir="$(dirname -- "$dir")"
    done
}

pg_psql() {
    as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" \
        -U "$(pg_superuser)" "$@"
}

pg_running_port() {
    # Line 4 of postmaster.pid is the port of the running server.
    [[ -f "$PG_DATA/postmaster.pid" ]] && sed -n 4p -- "$PG_DATA/postmaster.pid"
}

pg_is_running() {
    [[ -n "$PG_BIN" && -f "$PG_DATA/PG_VERSION" ]] &&
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_ready() {
    as_pg "$PG_BIN/pg_isready" -q -h "$PG_SOCKET_DIR" -p "$PG_PORT" -d postgres >/dev/null 2>&1
}

# For a server that pg_ctl reports as running: wait until it accepts
# connections (success) or turns out to be gone (also success: start it). A
# SIGKILLed postmaster still looks alive until it has been reaped.
pg_wait_ready_or_gone() {
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        pg_ready && return 0
        pg_is_running || return 0
        sleep 0.5
    done
    return 1
}

postgres_up_locked() {
    require_postgres
    pg_make_traversable
    mkdir -p -- "$PG_DIR" "$PG_SOCKET_DIR"
    chmod 0755 -- "$PG_DIR"
    if [[ "$(id -u)" == "0" ]]; then
        chown postgres: -- "$PG_DIR" "$PG_SOCKET_DIR"
    fi
    if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
        log "initdb $PG_DATA ($("$PG_BIN/initdb" --version))"
        as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$(pg_superuser)" --auth=trust \
            -E UTF8 --no-locale >"$PG_DIR/initdb.log" 2>&1 || {
            cat -- "$PG_DIR/initdb.log" >&2
            die "initdb failed"
        }
        printf "\ninclude_if_exists = 'act_local.conf'\n" |
            as_pg tee -a -- "$PG_DATA/postgresql.conf" >/dev/null
    fi
    # Regenerated on every start so that ACT_PG_PORT / the state dir may change.
    as_pg tee -- "$PG_DATA/act_local.conf" >/dev/null <<EOF
# Generated by deploy/local-stack.sh; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
# A disposable development/test cluster: durability across OS crashes is
# traded for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    if pg_is_running; then
        local running_port
        running_port="$(pg_running_port || true)"
        if [[ "$running_port" != "$PG_PORT" ]]; then
            log "PostgreSQL is running on port $running_port; restarting on $PG_PORT"
            as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
        fi
    fi
    if pg_is_running && ! pg_wait_ready_or_gone; then
        tail -n 50 -- "$PG_LOG" >&2 || true
        die "PostgreSQL runs but does not accept connections (log: $PG_LOG)"
    fi
    if pg_is_running; then
        log "PostgreSQL already running on 127.0.0.1:$PG_PORT"
    else
        if port_open "$PG_PORT"; then
            die "port 127.0.0.1:$PG_PORT is already in use by another process; set ACT_PG_PORT"
        fi
        log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null 9>&- || {
            tail -n 50 -- "$PG_LOG" >&2 || true
            die "PostgreSQL did not start (log: $PG_LOG)"
        }
    fi
    if [[ "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'act'")" != "1" ]]; then
        log "creating role act"
        pg_psql -d postgres -c "CREATE ROLE act LOGIN CREATEDB PASSWORD 'act'"
    fi
    if [[ "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'act'")" != "1" ]]; then
        log "creating database act"
        pg_psql -d postgres -c "CREATE DATABASE act OWNER act"
    fi
    log "PostgreSQL ready: $PG_DSN"
}

postgres_up() { with_lock postgres postgres_up_locked; }

postgres_down_locked() {
    find_pg_bin || {
        log "PostgreSQL is not installed; nothing to stop"
        return 0
    }
    if pg_is_running; then
        log "stopping PostgreSQL"
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
        log "PostgreSQL stopped"
    else
        log "PostgreSQL is not running"
    fi
}

postgres_down() { with_lock postgres postgres_down_locked; }

postgres_status() {
    find_pg_bin || true
    if pg_is_running; then
        echo "postgres: running on 127.0.0.1:$(pg_running_port || echo "$PG_PORT"), dsn $PG_DSN"
        return 0
    fi
    echo "postgres: stopped (would listen on 127.0.0.1:$PG_PORT, dsn $PG_DSN)"
    return 3
}

# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

cmd="${1:-up}"
case "$cmd" in
up)
    kafka_up
    topics
    if [[ "${ACT_STACK_NO_POSTGRES:-0}" == "1" ]]; then
        log "ACT_STACK_NO_POSTGRES=1: not starting PostgreSQL"
    else
        postgres_up
    fi
    if [[ "${ACT_STACK_NO_LLM:-0}" == "1" ]]; then
        log "ACT_STACK_NO_LLM=1: not starting the local model server"
    else
        # SmolLM2 behind llama-cpp-python's OpenAI-compatible server.
        ACT_STACK_DIR="$STATE_DIR" PYTHON="$PYTHON" bash "$REPO/deploy/llm-server.sh" up
    fi
    log "state in $STATE_DIR"
    ;;
down)
    kafka_down
    postgres_down
    ACT_STACK_DIR="$STATE_DIR" PYTHON="$PYTHON" bash "$REPO/deploy/llm-server.sh" down || true
    ;;
status)
    log "state in $STATE_DIR"
    kafka_status || true
    postgres_status || true
    ACT_STACK_DIR="$STATE_DIR" PYTHON="$PYTHON" bash "$REPO/deploy/llm-server.sh" status || true
    ;;
kafka-up) kafka_up ;;
kafka-down) kafka_down ;;
kafka-kill) kafka_kill ;;
kafka-status) kafka_status ;;
postgres-up) postgres_up ;;
postgres-down) postgres_down ;;
topics) topics ;;
*)
    usage >&2
    die "unknown command: $cmd"
    ;;
esac
