#!/usr/bin/env bash
# Starts the local stack (Kafka, Elasticsearch); a no-op for what already runs.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$STACK_DIR/fetch.sh" all
"$STACK_DIR/kafka.sh" start
"$STACK_DIR/elasticsearch.sh" start
"$STACK_DIR/status.sh"
