#!/usr/bin/env bash
# The demo: replay most of the sample bars into Kafka, index them with the stream job, train
# on the replayed log, then run the stream job continuously, replay the last 60 GOOG days
# through it and print its live predictions beside the actual closes; finally the counts.
# Run it twice: the second replay publishes every bar again, and the indices still hold
# each bar and each prediction once (deterministic document ids).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
LIVE_BARS=60
GOOG_BARS=$($PY -c 'from producer import samples; print(len(samples.load_bars("goog-daily")))')
HELD_BACK=$((GOOG_BARS - LIVE_BARS))

echo "== 1/5 replaying the sample bars into Kafka (all but the last $LIVE_BARS GOOG days)"
$PY -m producer replay --dataset goog-daily --limit "$HELD_BACK"
$PY -m producer replay --dataset eurusd-hourly
$PY -m producer replay --dataset btcusd-monthly
echo "== 2/5 indexing with Spark Structured Streaming (--available-now)"
./spark-submit.sh jobs/stream_index.py --available-now
echo "== 3/5 training on the replayed Kafka log (each run tracked in MLflow, each model registered):"
echo "        EURUSD hourly (range, volatility, interval), then GOOG daily (the report's question; next close,"
echo "        range, volatility, interval), whose versions become the champions the stream serves"
./spark-submit.sh jobs/train.py --timespan hour --questions range,volatility,interval --folds 0 --no-plots
# --promote: GOOG daily is what the stream follows next, so its versions take the champion alias
# even where a model does not beat its baseline (the version then serves that baseline).
./spark-submit.sh jobs/train.py --questions volume,lags,range,volatility,interval --folds 1 --promote
echo "== 4/5 the stream job running; the last $LIVE_BARS GOOG days arrive one by one"
mkdir -p .local/logs
STREAM_LOG=.local/logs/demo-stream.log
STREAM_TRIGGER_INTERVAL="1 second" setsid ./spark-submit.sh jobs/stream_index.py >"$STREAM_LOG" 2>&1 &
STREAM_PID=$!
trap 'kill -TERM -- -$STREAM_PID 2>/dev/null || true; wait $STREAM_PID 2>/dev/null || true' EXIT
# Publish once the predictor reports progress, so the latencies shown are the stream's own.
for _ in $(seq 120); do grep -q '"query": "predict-bars"' "$STREAM_LOG" && break; sleep 1; done
$PY -m producer replay --dataset goog-daily --skip "$HELD_BACK" --speed 10
$PY scripts/demo_predictions.py --dataset goog-daily --last "$LIVE_BARS" || {
    echo "stream log: $STREAM_LOG" >&2; tail -20 "$STREAM_LOG" >&2; exit 1; }
kill -TERM -- -$STREAM_PID 2>/dev/null || true
wait $STREAM_PID 2>/dev/null || true
trap - EXIT
grep -E "champion .* installed|live skill" "$STREAM_LOG" || true
echo "== 5/5 what Elasticsearch holds, and the registry the stream served from"
$PY scripts/demo_summary.py
$PY -m finstream.models list
echo "the runs, their metrics and plots, and the registered models: make mlflow-ui, then http://127.0.0.1:5000"
