#!/usr/bin/env bash
# A single Elasticsearch node on 127.0.0.1:9200 from the official distribution
# published to Maven Central (integ-test-zip: no bundled JDK, no painless, no ingest-common).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ES_DATA_DIR="$LOCAL_DIR/elasticsearch"
ES_CONF_DIR="$ES_DATA_DIR/config"
PIDFILE="$RUN_DIR/elasticsearch.pid"
ES_HEAP="${ES_HEAP:-768m}"
# ES_SECURITY=true starts the node with x-pack security (basic auth); used by the security tests.
ES_SECURITY="${ES_SECURITY:-false}"

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
    mkdir -p "$ES_CONF_DIR" "$ES_DATA_DIR/data" "$LOG_DIR/elasticsearch"
    cp -n "$ES_HOME/config/"* "$ES_CONF_DIR/" 2>/dev/null || true
    cat >"$ES_CONF_DIR/elasticsearch.yml" <<YML
# Written by stack/elasticsearch.sh.
cluster.name: finstream-local
node.name: local-1
path.data: $ES_DATA_DIR/data
path.logs: $LOG_DIR/elasticsearch
network.host: $ES_HOST
http.port: $ES_PORT
transport.port: 9300
discovery.type: single-node
# A developer machine's disk may be fuller than a server's: never turn indices read-only for that.
cluster.routing.allocation.disk.threshold_enabled: false
xpack.security.enabled: $ES_SECURITY
xpack.security.http.ssl.enabled: false
xpack.security.transport.ssl.enabled: false
action.destructive_requires_name: false
YML
    cat >"$ES_CONF_DIR/jvm.options.d/heap.options" <<OPTS
-Xms$ES_HEAP
-Xmx$ES_HEAP
OPTS
}

# With ES_SECURITY=true: a file-realm superuser ES_USERNAME / ES_PASSWORD (the security tests).
ensure_security_user() {
    [ "$ES_SECURITY" = "true" ] || return 0
    [ -n "${ES_USERNAME:-}" ] && [ -n "${ES_PASSWORD:-}" ] \
        || die "ES_SECURITY=true needs ES_USERNAME (not the reserved 'elastic') and ES_PASSWORD"
    local java_home="$1" users=(env ES_JAVA_HOME="$1" ES_PATH_CONF="$ES_CONF_DIR" "$ES_HOME/bin/elasticsearch-users")
    as_es_user "${users[@]}" userdel "$ES_USERNAME" >/dev/null 2>&1 || true
    as_es_user "${users[@]}" useradd "$ES_USERNAME" -p "$ES_PASSWORD" -r superuser >/dev/null \
        || die "could not create the Elasticsearch user $ES_USERNAME"
}

http_ok() {
    local auth=()
    [ "$ES_SECURITY" = "true" ] && auth=(-u "${ES_USERNAME}:${ES_PASSWORD}")
    curl -sf "${auth[@]}" "http://$ES_HOST:$ES_PORT/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null
}

start() {
    if pid_alive "$PIDFILE"; then log "Elasticsearch already running (pid $(cat "$PIDFILE"))"; return 0; fi
    port_open "$ES_HOST" "$ES_PORT" && die "port $ES_PORT is taken by another process: stop it or set ES_PORT"
    need_command curl curl
    install_distribution
    install_rest_root_plugin
    mkdir -p "$ES_CONF_DIR/jvm.options.d"
    write_config
    ensure_user
    local java_home; java_home="$(es_java_home)"
    if [ "$(id -u)" -eq 0 ]; then chown -R "$ES_USER" "$ES_DATA_DIR" "$LOG_DIR/elasticsearch" "$ES_HOME"; fi
    ensure_security_user "$java_home"
    rm -f "$PIDFILE"
    # -d -p: daemonise and write the pid once the node has started.
    as_es_user env ES_JAVA_HOME="$java_home" ES_PATH_CONF="$ES_CONF_DIR" ES_TMPDIR="$ES_DATA_DIR/tmp" \
        bash -c 'mkdir -p "$ES_TMPDIR" && exec "$0"/bin/elasticsearch -d -p "$1"' "$ES_HOME" "$ES_DATA_DIR/es.pid" \
        >"$LOG_DIR/elasticsearch.out" 2>&1 || die "Elasticsearch failed to start: see $LOG_DIR/elasticsearch.out and $LOG_DIR/elasticsearch/"
    cp "$ES_DATA_DIR/es.pid" "$PIDFILE"
    wait_for "Elasticsearch on http://$ES_HOST:$ES_PORT" 120 http_ok \
        || die "Elasticsearch did not answer in 120 s: see $LOG_DIR/elasticsearch/"
}

status() {
    if pid_alive "$PIDFILE" && http_ok; then
        echo "elasticsearch  up    http://$ES_HOST:$ES_PORT (pid $(cat "$PIDFILE"), security=$ES_SECURITY)"
    else
        echo "elasticsearch  down"; return 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop_pid Elasticsearch "$PIDFILE" ;;
    status) status ;;
    *) die "usage: elasticsearch.sh start|stop|status" ;;
esac
