#!/usr/bin/env bash
# KRaft Kafka from the official jars: KAFKA_BROKERS nodes (default 1) on loopback, each a
# combined broker and controller. Node i (1-based) listens on KAFKA_PORT + 2(i-1) and its
# controller on KAFKA_CONTROLLER_PORT + 2(i-1): 9092/9093, 9094/9095, 9096/9097.
#   kafka.sh start      start the configured nodes that are not running (a killed node rejoins)
#   kafka.sh stop       stop the configured nodes
#   kafka.sh stop-all   stop every Kafka node this checkout started (make down)
#   kafka.sh status     every running node, with its address
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_BROKERS="${KAFKA_BROKERS:-1}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
[[ "$KAFKA_BROKERS" =~ ^[1-9]$ ]] || die "KAFKA_BROKERS must be a number from 1 to 9, not '$KAFKA_BROKERS'"

broker_port() { echo $((KAFKA_PORT + 2 * ($1 - 1))); }
controller_port() { echo $((KAFKA_CONTROLLER_PORT + 2 * ($1 - 1))); }
# One broker keeps the original layout (.local/kafka, run/kafka.pid); a cluster's data is
# named by its first port, so a replicated stack can run beside the single one.
node_dir() {
    if [ "$KAFKA_BROKERS" -eq 1 ]; then echo "$LOCAL_DIR/kafka"; else echo "$LOCAL_DIR/kafka-cluster-$KAFKA_PORT/node-$1"; fi
}
pidfile() {
    if [ "$KAFKA_BROKERS" -eq 1 ]; then echo "$RUN_DIR/kafka.pid"; else echo "$RUN_DIR/kafka-$(broker_port "$1").pid"; fi
}

voters() {
    local i out=""
    for i in $(seq "$KAFKA_BROKERS"); do out+="${out:+,}$i@$KAFKA_HOST:$(controller_port "$i")"; done
    echo "$out"
}

write_config() {
    local i="$1" dir port cport rf isr
    dir="$(node_dir "$i")"; port="$(broker_port "$i")"; cport="$(controller_port "$i")"
    # Internal topics (consumer offsets, transactions) as replicated as the cluster allows.
    rf=$((KAFKA_BROKERS < 3 ? KAFKA_BROKERS : 3)); isr=$((rf < 2 ? 1 : 2))
    mkdir -p "$dir/data"
    cat >"$dir/server.properties" <<PROPS
# Written by stack/kafka.sh: node $i of $KAFKA_BROKERS, broker and controller in one process.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://$KAFKA_HOST:$port,CONTROLLER://$KAFKA_HOST:$cport
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
# The project creates its topics explicitly (with unlimited retention); a typo
# in a topic name must fail instead of silently creating an empty topic.
auto.create.topics.enable=false
# A replica that fell behind never becomes leader: that would drop acknowledged records.
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
PROPS
}

java_cmd() {
    local home; home="$(spark_java_home)"
    printf '%s' "$home/bin/java"
}

classpath() { printf '%s/*' "$KAFKA_LIB_DIR"; }

# Every node of a cluster is formatted with the same cluster id.
cluster_id() {
    local file="$(dirname "$(node_dir 1)")/cluster.id" id
    [ "$KAFKA_BROKERS" -eq 1 ] && file="$(node_dir 1)/cluster.id"
    if [ ! -s "$file" ]; then
        id="$("$(java_cmd)" -cp "$(classpath)" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
        [ -n "$id" ] || die "kafka StorageTool random-uuid failed"
        mkdir -p "$(dirname "$file")"; echo "$id" >"$file"
    fi
    cat "$file"
}

format_storage() {
    local i="$1" dir id
    dir="$(node_dir "$i")"
    [ -f "$dir/data/meta.properties" ] && return 0
    id="$(cluster_id)"
    "$(java_cmd)" -cp "$(classpath)" -Dkafka.logs.dir="$LOG_DIR" -Dlog4j.configuration="file:$STACK_DIR/kafka-log4j.properties" \
        kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" >"$LOG_DIR/kafka-format-$i.log" 2>&1 \
        || die "formatting Kafka storage failed: see $LOG_DIR/kafka-format-$i.log"
    log "formatted Kafka storage of node $i (cluster $id)"
}

start_node() {
    local i="$1" pid port dir out
    pid="$(pidfile "$i")"; port="$(broker_port "$i")"; dir="$(node_dir "$i")"
    if pid_alive "$pid"; then log "Kafka node $i already running (pid $(cat "$pid"))"; return 0; fi
    port_open "$KAFKA_HOST" "$port" && die "port $port is taken by another process: stop it or set KAFKA_PORT"
    write_config "$i"
    format_storage "$i"
    out="$LOG_DIR/kafka.out"; [ "$KAFKA_BROKERS" -eq 1 ] || out="$LOG_DIR/kafka-$port.out"
    KAFKA_LOG_DIR="$LOG_DIR" setsid nohup "$(java_cmd)" -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC \
        -Dkafka.logs.dir="$LOG_DIR" -Dlog4j.configuration="file:$STACK_DIR/kafka-log4j.properties" \
        -cp "$(classpath)" kafka.Kafka "$dir/server.properties" >"$out" 2>&1 </dev/null &
    echo $! >"$pid"
    echo "$KAFKA_HOST:$port" >"${pid%.pid}.addr"
}

start() {
    "$STACK_DIR/fetch.sh" kafka
    local i
    for i in $(seq "$KAFKA_BROKERS"); do start_node "$i"; done
    # A node's listener opens once the controller quorum has formed: all of them, together.
    for i in $(seq "$KAFKA_BROKERS"); do
        wait_for "Kafka node $i on $KAFKA_HOST:$(broker_port "$i")" 90 port_open "$KAFKA_HOST" "$(broker_port "$i")" \
            || die "Kafka node $i did not start in 90 s: see $LOG_DIR/kafka*.out"
    done
    if [ "$KAFKA_BROKERS" -gt 1 ]; then
        log "bootstrap servers: KAFKA_BOOTSTRAP_SERVERS=$(bootstrap_servers)"
    fi
}

bootstrap_servers() {
    local i out=""
    for i in $(seq "$KAFKA_BROKERS"); do out+="${out:+,}$KAFKA_HOST:$(broker_port "$i")"; done
    echo "$out"
}

stop() {
    local i
    for i in $(seq "$KAFKA_BROKERS"); do stop_pid "Kafka node $i" "$(pidfile "$i")"; rm -f "$(pidfile "$i" | sed 's/\.pid$/.addr/')"; done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    stop-all) stop_all_servers kafka Kafka ;;
    status) servers_status kafka "$KAFKA_HOST:$KAFKA_PORT" port_open ;;
    bootstrap-servers) bootstrap_servers ;;
    *) die "usage: kafka.sh start|stop|stop-all|status|bootstrap-servers" ;;
esac
