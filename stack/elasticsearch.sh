#!/usr/bin/env bash
# Elasticsearch from the official distribution published to Maven Central (integ-test-zip:
# no bundled JDK, no painless, no ingest-common): ES_NODE_COUNT nodes (default 1) forming one
# cluster on loopback. Node i (1-based) serves HTTP on ES_PORT + i-1 (9200, 9201, 9202) and
# transport on ES_TRANSPORT_PORT + i-1 (9300...).
#   elasticsearch.sh start      start the configured nodes that are not running (a killed node rejoins)
#   elasticsearch.sh stop       stop the configured nodes
#   elasticsearch.sh stop-all   stop every node this checkout started (make down)
#   elasticsearch.sh status     every running node, with its address
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ES_NODE_COUNT="${ES_NODE_COUNT:-1}"
[[ "$ES_NODE_COUNT" =~ ^[1-9]$ ]] || die "ES_NODE_COUNT must be a number from 1 to 9, not '$ES_NODE_COUNT'"
ES_TRANSPORT_PORT="${ES_TRANSPORT_PORT:-9300}"
# Three nodes with 512 MB each leave room for Kafka and Spark on a 24 GiB machine.
if [ "$ES_NODE_COUNT" -eq 1 ]; then ES_HEAP="${ES_HEAP:-768m}"; else ES_HEAP="${ES_HEAP:-512m}"; fi
# ES_SECURITY=true starts the node with x-pack security (basic auth); used by the security tests.
ES_SECURITY="${ES_SECURITY:-false}"
if [ "$ES_SECURITY" = "true" ] && [ "$ES_NODE_COUNT" -gt 1 ]; then
    die "ES_SECURITY=true is for one node (a secured cluster needs transport TLS between its nodes)"
fi

http_port() { echo $((ES_PORT + $1 - 1)); }
transport_port() { echo $((ES_TRANSPORT_PORT + $1 - 1)); }
# One node keeps the original layout (.local/elasticsearch, run/elasticsearch.pid); a
# cluster's data is named by its first port, so a replicated stack can run beside the single one.
node_dir() {
    if [ "$ES_NODE_COUNT" -eq 1 ]; then echo "$LOCAL_DIR/elasticsearch"
    else echo "$LOCAL_DIR/elasticsearch-cluster-$ES_PORT/node-$1"; fi
}
pidfile() {
    if [ "$ES_NODE_COUNT" -eq 1 ]; then echo "$RUN_DIR/elasticsearch.pid"
    else echo "$RUN_DIR/elasticsearch-$(http_port "$1").pid"; fi
}
node_log_dir() {
    if [ "$ES_NODE_COUNT" -eq 1 ]; then echo "$LOG_DIR/elasticsearch"; else echo "$LOG_DIR/elasticsearch-$(http_port "$1")"; fi
}

# Runs a command as the unprivileged ES user when we are root.
as_es_user() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u "$ES_USER" -- "$@"; else "$@"; fi
}

ensure_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    id "$ES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
    # The ES user must be able to reach this checkout's .local (e.g. not under a 0700 /root).
    runuser -u "$ES_USER" -- test -x "$LOCAL_DIR" \
        || die "user $ES_USER cannot reach $LOCAL_DIR: clone the project outside a private home directory or set FINSTREAM_LOCAL"
}

install_distribution() {
    [ -x "$ES_HOME/bin/elasticsearch" ] && return 0
    "$STACK_DIR/fetch.sh" elasticsearch
    need_command unzip unzip
    log "unpacking Elasticsearch $ES_VERSION into $ES_HOME"
    mkdir -p "$LOCAL_DIR"
    (cd "$LOCAL_DIR" && unzip -q -o "$ES_ZIP")
}

# javac of a JDK 21+ if the machine has one, else the Eclipse compiler (ecj, from Maven
# Central) on any Java 17+: ES 9 jars are Java 21 class files, which javac 17 cannot read.
compile_plugin() {
    local src="$1" out="$2" cp="$ES_HOME/lib/*" jdk ecj
    jdk="$(JAVA_HOME='' find_jdk 21 99)"
    if [ -n "$jdk" ] && [ -x "$jdk/bin/javac" ]; then
        "$jdk/bin/javac" --release 21 -nowarn -cp "$cp" -d "$out" $(find "$src" -name '*.java')
    else
        ecj="$CACHE_DIR/ecj-$ECJ_VERSION.jar"
        [ -f "$ecj" ] || mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="org.eclipse.jdt:ecj:$ECJ_VERSION" \
            -DoutputDirectory="$CACHE_DIR" >&2 || die "could not fetch the Eclipse compiler from Maven Central"
        "$(spark_java_home)/bin/java" -jar "$ecj" --release 21 -nowarn -cp "$cp" -d "$out" $(find "$src" -name '*.java')
    fi
}

# The minimal distribution has no rest-root module (GET /), which ES-Hadoop needs: build
# the project's small plugin that serves it (stack/es-rest-root) against this exact version.
install_rest_root_plugin() {
    local src="$STACK_DIR/es-rest-root" dest="$ES_HOME/plugins/finstream-rest-root"
    local jar="$dest/finstream-rest-root.jar"
    if [ -f "$jar" ] && [ "$jar" -nt "$src/src/finstream/esroot/RestRootPlugin.java" ]; then return 0; fi
    log "building the rest-root plugin for Elasticsearch $ES_VERSION"
    local build; build="$(mktemp -d)"
    compile_plugin "$src/src" "$build" || die "compiling the rest-root plugin failed"
    mkdir -p "$dest"
    (cd "$build" && "$(spark_java_home)/bin/jar" cf "$jar" .)
    sed "s/@ES_VERSION@/$ES_VERSION/g" "$src/plugin-descriptor.properties.in" >"$dest/plugin-descriptor.properties"
    rm -rf "$build"
}

write_config() {
    local i="$1" dir conf logs discovery seeds="" n
    dir="$(node_dir "$i")"; conf="$dir/config"; logs="$(node_log_dir "$i")"
    mkdir -p "$conf/jvm.options.d" "$dir/data" "$logs"
    cp -n "$ES_HOME/config/"* "$conf/" 2>/dev/null || true
    if [ "$ES_NODE_COUNT" -eq 1 ]; then
        discovery="discovery.type: single-node"
    else
        for n in $(seq "$ES_NODE_COUNT"); do seeds+="${seeds:+, }\"$ES_HOST:$(transport_port "$n")\""; done
        discovery="discovery.seed_hosts: [$seeds]"
        # Only for the very first start: a node that has joined a cluster must not bootstrap another.
        if [ -z "$(ls -A "$dir/data" 2>/dev/null)" ]; then
            discovery+=$'\n'"cluster.initial_master_nodes: [$(seq -s, -f 'node-%g' "$ES_NODE_COUNT" | sed 's/,/, /g')]"
        fi
    fi
    cat >"$conf/elasticsearch.yml" <<YML
# Written by stack/elasticsearch.sh: node $i of $ES_NODE_COUNT.
cluster.name: finstream-local$([ "$ES_NODE_COUNT" -eq 1 ] || echo "-$ES_PORT")
node.name: $([ "$ES_NODE_COUNT" -eq 1 ] && echo local-1 || echo "node-$i")
path.data: $dir/data
path.logs: $logs
network.host: $ES_HOST
http.port: $(http_port "$i")
transport.port: $(transport_port "$i")
$discovery
# A developer machine's disk may be fuller than a server's: never turn indices read-only for that.
cluster.routing.allocation.disk.threshold_enabled: false
xpack.security.enabled: $ES_SECURITY
xpack.security.http.ssl.enabled: false
xpack.security.transport.ssl.enabled: false
action.destructive_requires_name: false
YML
    cat >"$conf/jvm.options.d/heap.options" <<OPTS
-Xms$ES_HEAP
-Xmx$ES_HEAP
OPTS
}

# With ES_SECURITY=true: a file-realm superuser ES_USERNAME / ES_PASSWORD (the security tests).
ensure_security_user() {
    [ "$ES_SECURITY" = "true" ] || return 0
    [ -n "${ES_USERNAME:-}" ] && [ -n "${ES_PASSWORD:-}" ] \
        || die "ES_SECURITY=true needs ES_USERNAME (not the reserved 'elastic') and ES_PASSWORD"
    local java_home="$1" users=(env ES_JAVA_HOME="$1" ES_PATH_CONF="$(node_dir 1)/config" "$ES_HOME/bin/elasticsearch-users")
    as_es_user "${users[@]}" userdel "$ES_USERNAME" >/dev/null 2>&1 || true
    as_es_user "${users[@]}" useradd "$ES_USERNAME" -p "$ES_PASSWORD" -r superuser >/dev/null \
        || die "could not create the Elasticsearch user $ES_USERNAME"
}

# health PORT [QUERY]: the cluster answers on this node's port, at least yellow.
health() {
    local auth=()
    [ "$ES_SECURITY" = "true" ] && auth=(-u "${ES_USERNAME}:${ES_PASSWORD}")
    curl -sf "${auth[@]}" "http://$ES_HOST:$1/_cluster/health?wait_for_status=yellow&timeout=1s${2:-}" >/dev/null
}

# launch_node I JAVA_HOME: daemonises node I (-d -p writes the pid once it has started).
launch_node() {
    local i="$1" java_home="$2" dir out
    dir="$(node_dir "$i")"; out="$LOG_DIR/elasticsearch.out"
    [ "$ES_NODE_COUNT" -eq 1 ] || out="$LOG_DIR/elasticsearch-$(http_port "$i").out"
    rm -f "$dir/es.pid"
    as_es_user env ES_JAVA_HOME="$java_home" ES_PATH_CONF="$dir/config" ES_TMPDIR="$dir/tmp" \
        bash -c 'mkdir -p "$ES_TMPDIR" && exec "$0"/bin/elasticsearch -d -p "$1"' "$ES_HOME" "$dir/es.pid" \
        >"$out" 2>&1 || die "Elasticsearch node $i failed to start: see $out and $(node_log_dir "$i")/"
    # -d returns once the node runs; on a loaded machine its pid file can land a moment later.
    for _ in $(seq 60); do [ -s "$dir/es.pid" ] && break; sleep 0.5; done
    cp "$dir/es.pid" "$(pidfile "$i")"
    echo "$ES_HOST:$(http_port "$i")" >"$(pidfile "$i" | sed 's/\.pid$/.addr/')"
}

start() {
    local i pending=() java_home
    for i in $(seq "$ES_NODE_COUNT"); do
        if pid_alive "$(pidfile "$i")"; then log "Elasticsearch node $i already running (pid $(cat "$(pidfile "$i")"))"; continue; fi
        port_open "$ES_HOST" "$(http_port "$i")" \
            && die "port $(http_port "$i") is taken by another process: stop it or set ES_PORT"
        pending+=("$i")
    done
    [ "${#pending[@]}" -gt 0 ] || return 0
    need_command curl curl
    install_distribution
    install_rest_root_plugin
    ensure_user
    java_home="$(es_java_home)"
    for i in "${pending[@]}"; do
        write_config "$i"
        if [ "$(id -u)" -eq 0 ]; then chown -R "$ES_USER" "$(node_dir "$i")" "$(node_log_dir "$i")"; fi
    done
    if [ "$(id -u)" -eq 0 ]; then chown -R "$ES_USER" "$ES_HOME"; fi
    ensure_security_user "$java_home"
    # Together: a cluster's first master election needs a majority of its nodes up.
    for i in "${pending[@]}"; do launch_node "$i" "$java_home" & done
    wait
    for i in $(seq "$ES_NODE_COUNT"); do
        wait_for "Elasticsearch node $i on http://$ES_HOST:$(http_port "$i")" 120 \
            health "$(http_port "$i")" "&wait_for_nodes=$ES_NODE_COUNT" \
            || die "Elasticsearch node $i did not join in 120 s: see $(node_log_dir "$i")/"
    done
    if [ "$ES_NODE_COUNT" -gt 1 ]; then log "nodes: ES_NODES=$(nodes)"; fi
}

nodes() {
    local i out=""
    for i in $(seq "$ES_NODE_COUNT"); do out+="${out:+,}$ES_HOST:$(http_port "$i")"; done
    echo "$out"
}

stop() {
    local i
    for i in $(seq "$ES_NODE_COUNT"); do  # together: a node does not wait for the others
        (stop_pid "Elasticsearch node $i" "$(pidfile "$i")"; rm -f "$(pidfile "$i" | sed 's/\.pid$/.addr/')") &
    done
    wait
}

answers() { health "$2"; }

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    stop-all) stop_all_servers elasticsearch Elasticsearch ;;
    status) servers_status elasticsearch "$ES_HOST:$ES_PORT" answers http:// ", security=$ES_SECURITY" ;;
    nodes) nodes ;;
    *) die "usage: elasticsearch.sh start|stop|stop-all|status|nodes" ;;
esac
