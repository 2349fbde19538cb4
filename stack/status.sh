#!/usr/bin/env bash
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
rc=0
"$STACK_DIR/kafka.sh" status || rc=1
"$STACK_DIR/elasticsearch.sh" status || rc=1
"$STACK_DIR/spark-cluster.sh" status || true  # optional: make cluster-up
echo "data and logs  $LOCAL_DIR"
echo "downloads      $CACHE_DIR"
exit $rc
