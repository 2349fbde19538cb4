#!/usr/bin/env bash
# The demo, ordered so that the stream's first live forecasts come early:
#   1/6 replay the sample bars into Kafka, all but the live slices (the last 60 GOOG days and
#       60 EURUSD hours)
#   2/6 start the stream job (continuous): it indexes the backlog and keeps each series'
#       last bars while the next step trains
#   3/6 GOOG daily live: a short training run of the questions the stream serves (random
#       forests only, no walk-forward, --promote: the running stream installs each champion at
#       its next micro-batch), then the live slice replayed through the running stream, its first
#       live forecast printed as it lands, then the last 10 beside what followed, and the live skill
#   4/6 EURUSD hourly live, the same (its own series set); then the stream stops
#   5/6 the full training report: EURUSD hourly (range, volatility, interval), then
#       GOOG daily (the report's volume question and the four served ones, all three
#       regressors, a walk-forward fold, --promote: its versions are the champions a stream
#       started afterwards serves)
#   6/6 what Elasticsearch holds, and the registry
# Run it twice: the second replay publishes every bar again, and the indices still hold
# each bar and each prediction once (deterministic document ids).
#
# Measured (2 cores, a fresh clone, downloads cached; make demo, 2026-12-05): make install and
# make up about 62 s together, then 1/6 4 s; 2/6 0 s; 3/6 98 s (the first live forecast at 101 s,
# 2 min 43 s after make demo started); 4/6 94 s (EURUSD's first at 195 s); 5/6 384 s; 6/6 4 s;
# 583 s for the six steps, 645 s in all.
#
# GOOG daily and EURUSD hourly are served live at once, each by the champion of its own series
# set (day1-stocks, hour1-fx), one after the other: the first live forecast waits for one short
# training run, not both. To serve more series live, add the dataset to LIVE_BARS, its short
# training run to QUICK_RUNS, and a serve_live step.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
LOG_DIR=.local/logs
mkdir -p "$LOG_DIR"

DATASETS=(goog-daily eurusd-hourly btcusd-monthly)
# The bars of each dataset held back from the first replay and replayed live (steps 3 and 4).
declare -A LIVE_BARS=([goog-daily]=60 [eurusd-hourly]=60)
# jobs/train.py runs before the live slice: what the stream needs to forecast it, quickly.
# --promote: the stream follows these series, so their versions take the champion alias even
# where a model does not beat its baseline (the version then serves that baseline).
declare -A QUICK_RUNS=(
    [goog-daily]="--timespan day --questions lags,range,volatility,interval --models random_forest --folds 0 --no-plots --promote"
    [eurusd-hourly]="--timespan hour --questions lags,range,volatility,interval --models random_forest --folds 0 --no-plots --promote"
)
# Random forests alone serve what step 5's full run serves (each question's forest or its
# baseline) in a third of the time: measured on these four questions, no stream running,
# random forests 98 s, linear + random forest + GBT 273 s.
# ... and after it: the full report (GOOG daily last, so its versions end as the champions).
FULL_RUNS=(
    "--timespan hour --questions range,volatility,interval --folds 0 --no-plots"
    "--timespan day --questions volume,lags,range,volatility,interval --folds 1 --promote"
)
# Training runs get as many shuffle partitions as a 2-core machine has cores (conf/ says 4,
# for the stream): the same models, in less than half the time (measured: the four GOOG daily
# questions with random forests 216 s -> 98 s). Not given to the stream job, whose state
# store keeps the partition count of its checkpoint.
TRAIN_CONF=(--conf spark.sql.shuffle.partitions=2 --conf spark.default.parallelism=2)

# --- timing: each step's duration, and the time since the demo started -------------------
DEMO_START=$EPOCHREALTIME
STEP_START=$DEMO_START
STEP_NAME=""
DURATIONS=()
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }'; }
step() {
    STEP_NAME="$1"; shift
    STEP_START=$EPOCHREALTIME
    echo "== $STEP_NAME $*"
}
step_done() {
    local took
    took=$(since "$STEP_START")
    DURATIONS+=("${STEP_NAME%%/*}: $took s")
    echo "-- step $STEP_NAME took $took s (demo at $(since "$DEMO_START") s)"
}

# --- the stream job, running in the background from step 2 to step 4 ---------------------
STREAM_LOG=$LOG_DIR/demo-stream.log
STREAM_PID=""
stop_stream() {
    [ -n "$STREAM_PID" ] || return 0
    kill -TERM -- -"$STREAM_PID" 2>/dev/null || true
    wait "$STREAM_PID" 2>/dev/null || true
    STREAM_PID=""
}
trap stop_stream EXIT
stream_failed() {
    echo "stream log: $STREAM_LOG" >&2
    tail -20 "$STREAM_LOG" >&2
    exit 1
}
# Waits until the stream log has a line matching $1 (grep -E), for at most $2 seconds.
await_stream() {
    local pattern=$1 seconds=$2
    for _ in $(seq "$seconds"); do
        grep -qE "$pattern" "$STREAM_LOG" && return 0
        kill -0 "$STREAM_PID" 2>/dev/null || { echo "the stream job stopped" >&2; stream_failed; }
        sleep 1
    done
    echo "after $seconds s the stream job has not logged: $pattern" >&2
    stream_failed
}

# A training run, its output kept in $LOG_DIR/demo-train-<n>.log. Shown whole with --show;
# else only each question's choice and registered version (the tables come again in step 5).
RUN_N=0
TRAIN_LOG=""
train() {
    local show=$1; shift
    RUN_N=$((RUN_N + 1))
    local log=$LOG_DIR/demo-train-$RUN_N.log
    TRAIN_LOG=$log
    echo "./spark-submit.sh jobs/train.py $*"
    if [ "$show" = --show ]; then
        ./spark-submit.sh "${TRAIN_CONF[@]}" jobs/train.py "$@" 2>&1 | tee "$log"
    elif ! ./spark-submit.sh "${TRAIN_CONF[@]}" jobs/train.py "$@" >"$log" 2>&1; then
        tail -30 "$log" >&2
        echo "training failed; its output: $log" >&2
        exit 1
    else
        grep -E "^question |^\* chosen|^model finstream|^not registered| ERROR " "$log" | cut -c1-160 || true
        echo "(the whole output: $log)"
    fi
}

step 1/6 "replaying the sample bars into Kafka, all but the live slice ($(for d in "${!LIVE_BARS[@]}"; do
    printf '%s: the last %s bars ' "$d" "${LIVE_BARS[$d]}"; done))"
# The MLflow store, created meanwhile (a fresh one runs its schema migrations, 40 lines of
# output): the stream job and the trainer start together next and would both create it.
$PY -c 'from finstream.stores import registry; from finstream.core.config import Settings; registry.require_store(Settings.load())' \
    >"$LOG_DIR/demo-mlflow-store.log" 2>&1 &
STORE_PID=$!
declare -A HELD_BACK=()
for dataset in "${DATASETS[@]}"; do
    live=${LIVE_BARS[$dataset]:-0}
    if [ "$live" -gt 0 ]; then
        total=$($PY -c "from producer import samples; print(len(samples.load_bars('$dataset')))")
        HELD_BACK[$dataset]=$((total - live))
        $PY -m producer replay --dataset "$dataset" --limit "${HELD_BACK[$dataset]}"
    else
        $PY -m producer replay --dataset "$dataset"
    fi
done
wait "$STORE_PID" || { cat "$LOG_DIR/demo-mlflow-store.log" >&2; exit 1; }
step_done

step 2/6 "starting the stream job (continuous, output in $STREAM_LOG): it indexes the backlog and"
echo "        keeps each series' last bars while the next step trains"
STREAM_TRIGGER_INTERVAL="1 second" setsid ./spark-submit.sh jobs/stream_index.py >"$STREAM_LOG" 2>&1 &
STREAM_PID=$!
step_done

# One live dataset: its short training run (--promote), the champions installed by the running
# stream, then its live slice replayed one bar at a time and its forecasts printed.
serve_live() {
    local dataset=$1
    # shellcheck disable=SC2086 # the run's options, word by word
    train --brief ${QUICK_RUNS[$dataset]}
    # The champions this run registered, as the running stream installs them.
    local champions
    champions=$(grep -ohE "^model finstream-[a-z0-9+._-]+/[0-9]+ \(champion\)" "$TRAIN_LOG" \
        | sed -E 's/^model (finstream-[a-z0-9+._-]+)\/([0-9]+).*/\1 version \2 /' | sort -u)
    await_stream '"query": "predict-bars"' 300  # the backlog's first batch: each series' last bars
    while read -r name _ version; do
        [ -n "$name" ] || continue
        await_stream "champion $name version $version \(run" 60
        grep -m1 -E "champion $name version $version \(run" "$STREAM_LOG" \
            | sed -E 's/^[0-9-]+ [0-9:,]+ INFO [a-z_.]+: /stream: /' || true
    done <<<"$champions"
    echo "the live slice of $dataset: its last ${LIVE_BARS[$dataset]} bars, one at a time"
    $PY -m producer replay --dataset "$dataset" --skip "${HELD_BACK[$dataset]}" --speed 10
    $PY scripts/demo_predictions.py --dataset "$dataset" --last "${LIVE_BARS[$dataset]}" \
        --demo-start "$DEMO_START" || stream_failed
}

step 3/6 "GOOG daily, live: a short training run of what the stream serves (MLflow run, registered"
echo "        versions: random forests only, no walk-forward fold; the full report is step 5), then"
echo "        the live slice through the running stream"
serve_live goog-daily
step_done

step 4/6 "EURUSD hourly, live: its short training run, then its live slice (its own series set)"
serve_live eurusd-hourly
stop_stream
grep -E "live skill" "$STREAM_LOG" || true
step_done

step 5/6 "the full training report on the replayed Kafka log (each run tracked in MLflow, each"
echo "        model registered): EURUSD hourly (range, volatility, interval), then GOOG daily (the"
echo "        report's volume question; next close, range, volatility, interval)"
for args in "${FULL_RUNS[@]}"; do
    # shellcheck disable=SC2086
    train --show $args
done
step_done

step 6/6 "what Elasticsearch holds, and the registry: one registered model per question and series set"
echo "        (step 3's versions served the live slices; a stream started now serves each set's champion)"
$PY scripts/demo_summary.py
$PY -m finstream.models list
echo "the runs, their metrics and plots, and the registered models: make mlflow-ui, then http://127.0.0.1:5000"
step_done
echo "step durations: ${DURATIONS[*]/%/;} total $(since "$DEMO_START") s"
