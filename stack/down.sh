#!/usr/bin/env bash
# Stops the local stack; data stays in .local/ (make clean removes it).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$STACK_DIR/spark-cluster.sh" stop
"$STACK_DIR/elasticsearch.sh" stop-all
"$STACK_DIR/kafka.sh" stop-all
