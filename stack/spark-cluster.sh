#!/usr/bin/env bash
# A Spark standalone cluster on this machine, from the installed pyspark: one master on
# spark://127.0.0.1:7077 (UI :8080) and SPARK_WORKERS workers (default 2, 1 core and 2 GiB
# each). Submit to it with: ./spark-submit.sh --master spark://127.0.0.1:7077 jobs/...
#   stack/spark-cluster.sh start|stop|status
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VENV="${FINSTREAM_VENV:-$ROOT_DIR/.venv}"
MASTER_HOST=127.0.0.1
MASTER_PORT="${SPARK_MASTER_PORT:-7077}"
MASTER_UI_PORT="${SPARK_MASTER_WEBUI_PORT:-8080}"
WORKERS="${SPARK_WORKERS:-2}"
WORKER_CORES="${SPARK_WORKER_CORES:-1}"
WORKER_MEMORY="${SPARK_WORKER_MEMORY:-2g}"
CLUSTER_DIR="$LOCAL_DIR/spark-cluster"
MASTER_URL="spark://$MASTER_HOST:$MASTER_PORT"

spark_home() {
    [ -x "$VENV/bin/python" ] || die "no virtual environment in $VENV: run 'make install' first"
    "$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))'
}

# daemon NAME CLASS ARGS...: one JVM in the background, its pid in RUN_DIR/NAME.pid.
daemon() {
    local name="$1" class="$2"; shift 2
    local pidfile="$RUN_DIR/$name.pid"
    if pid_alive "$pidfile"; then log "$name already running (pid $(cat "$pidfile"))"; return 0; fi
    JAVA_HOME="$(spark_java_home)" SPARK_LOCAL_IP="$MASTER_HOST" SPARK_LOCAL_DIRS="$CLUSTER_DIR/tmp" \
        PYSPARK_PYTHON="$VENV/bin/python" SPARK_CONF_DIR="$ROOT_DIR/conf" \
        setsid nohup "$(spark_home)/bin/spark-class" "$class" "$@" >"$LOG_DIR/$name.out" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

alive_workers() {
    "$VENV/bin/python" - "$MASTER_UI_PORT" <<'PY'
import json, sys, urllib.request
state = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=5))
print(state.get("aliveworkers", 0))
PY
}

workers_registered() { [ "$(alive_workers 2>/dev/null)" = "$WORKERS" ]; }

start() {
    mkdir -p "$CLUSTER_DIR/tmp"
    if ! pid_alive "$RUN_DIR/spark-master.pid"; then
        port_open "$MASTER_HOST" "$MASTER_PORT" && die "port $MASTER_PORT is taken by another process"
    fi
    daemon spark-master org.apache.spark.deploy.master.Master \
        --host "$MASTER_HOST" --port "$MASTER_PORT" --webui-port "$MASTER_UI_PORT"
    wait_for "Spark master on $MASTER_URL" 60 port_open "$MASTER_HOST" "$MASTER_PORT" \
        || die "the Spark master did not start: see $LOG_DIR/spark-master.out"
    for i in $(seq 1 "$WORKERS"); do
        mkdir -p "$CLUSTER_DIR/worker-$i"
        daemon "spark-worker-$i" org.apache.spark.deploy.worker.Worker --host "$MASTER_HOST" \
            --cores "$WORKER_CORES" --memory "$WORKER_MEMORY" --work-dir "$CLUSTER_DIR/worker-$i" \
            --webui-port "$((MASTER_UI_PORT + i))" "$MASTER_URL"
    done
    wait_for "$WORKERS Spark workers" 60 workers_registered \
        || die "workers did not register with the master: see $LOG_DIR/spark-worker-*.out"
}

stop() {
    for pidfile in "$RUN_DIR"/spark-worker-*.pid; do
        [ -e "$pidfile" ] && stop_pid "$(basename "$pidfile" .pid)" "$pidfile"
    done
    stop_pid spark-master "$RUN_DIR/spark-master.pid"
}

status() {
    if pid_alive "$RUN_DIR/spark-master.pid" && port_open "$MASTER_HOST" "$MASTER_PORT"; then
        echo "spark cluster  up    $MASTER_URL, $(alive_workers) workers (UI http://$MASTER_HOST:$MASTER_UI_PORT)"
    else
        echo "spark cluster  down"; return 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: spark-cluster.sh start|stop|status" ;;
esac
