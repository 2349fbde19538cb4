#!/usr/bin/env bash
# spark-submit with the project's connectors, configuration and shared code:
#   ./spark-submit.sh [spark-submit options] jobs/stream_index.py [job options]
# Adds: the Kafka and ES-Hadoop connector jars (resolved once, then cached), the project's
# ES-Hadoop error handler (stack/es-dead-letters.sh, built once), conf/ as
# SPARK_CONF_DIR (spark-defaults.conf, log4j2.properties), and the finstream package as a
# --py-files zip so executors on a cluster (--master spark://...) have it too. Every other
# argument goes to spark-submit unchanged; a --master given here overrides conf/.
#
# Logs: Spark's and MLlib's routine warnings (no native BLAS, "regParam is zero", the Cholesky
# fallback, ...) are quiet: conf/log4j2.properties lists each. To see everything Spark warns
# about, with full logger names, set FINSTREAM_SPARK_VERBOSE=1 (or info/debug for a lower
# root level) or give spark-submit's own --verbose before the job file:
#   FINSTREAM_SPARK_VERBOSE=1 ./spark-submit.sh jobs/train.py
#   ./spark-submit.sh --verbose jobs/train.py
# The driver then reads conf/log4j2-verbose.properties, and pyspark's routine Python warnings
# (below) show again too.
set -euo pipefail
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$ROOT_DIR/stack/common.sh"

VENV="${FINSTREAM_VENV:-$ROOT_DIR/.venv}"
[ -x "$VENV/bin/spark-submit" ] || die "no pyspark in $VENV: run 'make install' first"
"$STACK_DIR/fetch.sh" spark

JARS="$(find "$JARS_DIR" -maxdepth 1 -name '*.jar' | sort | paste -sd, -)"
[ -n "$JARS" ] || die "no connector jars in $JARS_DIR"
# The project's ES-Hadoop bulk error handler (refused documents -> dead letters), built once.
JARS="$JARS,$("$STACK_DIR/es-dead-letters.sh")"

# The shared package as a zip, rebuilt each time so it always matches the source; the
# development-only generators (finstream/ops/kibana.py) stay out of what executors get. It is
# built under a name of its own and renamed to one that names its content (the sources' bytes:
# every entry has one date and mode): two jobs starting at once (the stream job and a training)
# never replace the file the other is reading, and a job on a cluster, whose executors fetch it
# from the driver, keeps serving its own. The 20 newest are kept, and any a running process
# names on its command line.
BUILD_DIR="$LOCAL_DIR/build"
mkdir -p "$BUILD_DIR"
BUILDING="$(mktemp "$BUILD_DIR/.finstream-XXXXXX")"
trap 'rm -f "$BUILDING"' EXIT  # a failed build leaves nothing (exec below replaces this shell)
chmod 644 "$BUILDING"
(cd "$ROOT_DIR/src" && find finstream -name '*.py' ! -path 'finstream/ops/kibana.py' | LC_ALL=C sort \
    | "$VENV/bin/python" -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as archive:
    for name in sys.stdin.read().split():
        entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        entry.external_attr = 0o644 << 16
        with open(name, "rb") as source:
            archive.writestr(entry, source.read())' "$BUILDING")
PY_FILES="$BUILD_DIR/finstream-$(sha256sum "$BUILDING" | cut -c1-16).zip"
mv -f "$BUILDING" "$PY_FILES"
trap - EXIT
touch "$PY_FILES"  # the newest, for the pruning below
for old in $(ls -t "$BUILD_DIR"/finstream-*.zip | tail -n +21); do
    grep -qsF "$old" /proc/[0-9]*/cmdline || rm -f "$old"
done

export JAVA_HOME="${SPARK_JAVA_HOME:-$(spark_java_home)}"
export SPARK_CONF_DIR="${SPARK_CONF_DIR:-$ROOT_DIR/conf}"
export FINSTREAM_CONF_DIR="${FINSTREAM_CONF_DIR:-$ROOT_DIR/conf}"
# The driver may import finstream from the zip: tell it where this checkout keeps its data.
export FINSTREAM_LOCAL="$LOCAL_DIR"
# Bind Spark to loopback unless told otherwise (set SPARK_LOCAL_IP on a multi-host cluster).
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$VENV/bin/python}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$VENV/bin/python}"
export PYTHONPATH="$ROOT_DIR/src${PYTHONPATH:+:$PYTHONPATH}"

# Verbose logs (see the top): FINSTREAM_SPARK_VERBOSE=1 (or info, debug), or --verbose / -v
# among spark-submit's options, before the job file.
VERBOSE="${FINSTREAM_SPARK_VERBOSE:-0}"
case "$VERBOSE" in 0|false|no|off) VERBOSE="" ;; esac
for arg in "$@"; do
    case "$arg" in
        --verbose|-v) VERBOSE="${VERBOSE:-1}" ;;
        *.py) break ;;  # the job: what follows is its own arguments
    esac
done
if [ -n "$VERBOSE" ]; then
    case "$VERBOSE" in trace|debug|info|warn|error) export FINSTREAM_SPARK_LOG_LEVEL="$VERBOSE" ;; esac
    VERBOSE_LOG4J="$SPARK_CONF_DIR/log4j2-verbose.properties"
    [ -f "$VERBOSE_LOG4J" ] || VERBOSE_LOG4J="$ROOT_DIR/conf/log4j2-verbose.properties"
    # The driver is spark-submit's own JVM (client mode: local[*], and the driver of a cluster
    # run), which takes SPARK_SUBMIT_OPTS; log4j2.configurationFile wins over the classpath's
    # log4j2.properties. Executors on a cluster keep their workers' log4j2.properties.
    export SPARK_SUBMIT_OPTS="${SPARK_SUBMIT_OPTS:+$SPARK_SUBMIT_OPTS }-Dlog4j2.configurationFile=file:$VERBOSE_LOG4J"
else
    # pyspark's own routine Python warning, printed by the stream's Python workers (pandas >=
    # 2.1 with Spark 3.4's applyInPandasWithState): "pyspark/sql/pandas/serializers.py:652:
    # FutureWarning: The behavior of DataFrame concatenation with empty or all-NA entries is
    # deprecated ...". Workers inherit the environment in local mode; spark.executorEnv
    # carries it to a cluster's.
    PY_ROUTINE="ignore:The behavior of DataFrame concatenation with empty or all-NA entries:FutureWarning"
    export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}$PY_ROUTINE:pyspark.sql.pandas.serializers"
    set -- --conf "spark.executorEnv.PYTHONWARNINGS=$PYTHONWARNINGS" "$@"
fi

# Event logs of every run, for a History Server (sbin/start-history-server.sh with
# spark.history.fs.logDirectory set to the same folder).
EVENT_LOG_DIR="${SPARK_EVENT_LOG_DIR:-$LOCAL_DIR/spark-events}"
mkdir -p "$EVENT_LOG_DIR"

exec "$VENV/bin/spark-submit" --jars "$JARS" --py-files "$PY_FILES" \
    --conf spark.eventLog.dir="file://$EVENT_LOG_DIR" "$@"
