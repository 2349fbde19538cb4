#!/usr/bin/env bash
# A single-node KRaft Kafka broker+controller on 127.0.0.1:9092, from the official jars.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_DIR="$LOCAL_DIR/kafka"
PIDFILE="$RUN_DIR/kafka.pid"
PROPS="$KAFKA_DIR/server.properties"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"

write_config() {
    mkdir -p "$KAFKA_DIR/data"
    cat >"$PROPS" <<PROPS
# Written by stack/kafka.sh. Single node: broker and controller in one process.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=1
# One broker: internal topics cannot have more replicas than that.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# The project creates its topics explicitly (with unlimited retention); a typo
# in a topic name must fail instead of silently creating an empty topic.
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
PROPS
}

java_cmd() {
    local home; home="$(spark_java_home)"
    printf '%s' "$home/bin/java"
}

classpath() { printf '%s/*' "$KAFKA_LIB_DIR"; }

format_storage() {
    [ -f "$KAFKA_DIR/data/meta.properties" ] && return 0
    local java cluster_id
    java="$(java_cmd)"
    cluster_id="$("$java" -cp "$(classpath)" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    [ -n "$cluster_id" ] || die "kafka StorageTool random-uuid failed"
    "$java" -cp "$(classpath)" -Dkafka.logs.dir="$LOG_DIR" -Dlog4j.configuration="file:$STACK_DIR/kafka-log4j.properties" \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" >"$LOG_DIR/kafka-format.log" 2>&1 \
        || die "formatting Kafka storage failed: see $LOG_DIR/kafka-format.log"
    log "formatted Kafka storage (cluster $cluster_id)"
}

start() {
    if pid_alive "$PIDFILE"; then log "Kafka already running (pid $(cat "$PIDFILE"))"; return 0; fi
    port_open "$KAFKA_HOST" "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process: stop it or set KAFKA_PORT"
    "$STACK_DIR/fetch.sh" kafka
    write_config
    format_storage
    local java; java="$(java_cmd)"
    KAFKA_LOG_DIR="$LOG_DIR" setsid nohup "$java" -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC \
        -Dkafka.logs.dir="$LOG_DIR" -Dlog4j.configuration="file:$STACK_DIR/kafka-log4j.properties" \
        -cp "$(classpath)" kafka.Kafka "$PROPS" >"$LOG_DIR/kafka.out" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    wait_for "Kafka on $KAFKA_HOST:$KAFKA_PORT" 90 port_open "$KAFKA_HOST" "$KAFKA_PORT" \
        || die "Kafka did not start in 90 s: see $LOG_DIR/kafka.out"
}

status() {
    if pid_alive "$PIDFILE" && port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
        echo "kafka          up    $KAFKA_HOST:$KAFKA_PORT (pid $(cat "$PIDFILE"))"
    else
        echo "kafka          down"; return 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop_pid Kafka "$PIDFILE" ;;
    status) status ;;
    *) die "usage: kafka.sh start|stop|status" ;;
esac
