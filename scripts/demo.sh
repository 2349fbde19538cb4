#!/usr/bin/env bash
# The demo: replay the sample bars into Kafka, index them with the stream job, print counts.
# Run it twice: the second replay publishes every bar again, and the index still holds
# each bar once (deterministic document ids).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

echo "== 1/3 replaying the sample bars into Kafka"
$PY -m producer replay --dataset all
echo "== 2/3 indexing with Spark Structured Streaming (--available-now)"
./spark-submit.sh jobs/stream_index.py --available-now
echo "== 3/3 what Elasticsearch holds"
$PY scripts/demo_summary.py
