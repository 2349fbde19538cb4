#!/usr/bin/env bash
# Downloads every JVM artifact the project needs from Maven Central, once, into the
# user-level cache (FINSTREAM_CACHE). Later runs find them there and work offline.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

command -v mvn >/dev/null || die "Maven is needed to fetch the Kafka, Elasticsearch and Spark connector artifacts: apt-get install maven"
MVN=(mvn -q -B -Dstyle.color=never -Dmaven.repo.local="${MAVEN_REPO_LOCAL:-$HOME/.m2/repository}")

# mvn_copy G:A:V[:TYPE] DIR: one artifact, no transitive dependencies.
mvn_copy() {
    "${MVN[@]}" dependency:copy -Dartifact="$1" -DoutputDirectory="$2" -Dmdep.overWriteReleases=false >&2 \
        || die "could not resolve $1 from Maven Central (is the network reachable?)"
}

fetch_spark_connectors() {
    local marker="$JARS_DIR/.complete-$SPARK_VERSION-$ES_HADOOP_VERSION"
    [ -f "$marker" ] && return 0
    log "fetching the Spark Kafka and ES-Hadoop connectors"
    mkdir -p "$JARS_DIR"
    # The Kafka connector plus the three runtime jars pyspark does not already ship.
    mvn_copy "org.apache.spark:spark-sql-kafka-0-10_$SCALA_BINARY:$SPARK_VERSION" "$JARS_DIR"
    mvn_copy "org.apache.spark:spark-token-provider-kafka-0-10_$SCALA_BINARY:$SPARK_VERSION" "$JARS_DIR"
    mvn_copy "org.apache.kafka:kafka-clients:$KAFKA_CLIENTS_VERSION" "$JARS_DIR"
    mvn_copy "org.apache.commons:commons-pool2:$COMMONS_POOL2_VERSION" "$JARS_DIR"
    # ES-Hadoop's jar is self-contained, and its POM names unpublished modules
    # (elasticsearch-hadoop-mr) and Spark at compile scope: resolve it alone.
    mvn_copy "org.elasticsearch:elasticsearch-spark-30_$SCALA_BINARY:$ES_HADOOP_VERSION" "$JARS_DIR"
    touch "$marker"
}

fetch_kafka() {
    local marker="$KAFKA_LIB_DIR/.complete"
    [ -f "$marker" ] && return 0
    log "fetching the Kafka $KAFKA_VERSION broker and its runtime dependencies"
    mkdir -p "$KAFKA_LIB_DIR"
    "${MVN[@]}" -f "$STACK_DIR/maven/kafka-broker.pom.xml" dependency:copy-dependencies \
        -Dkafka.version="$KAFKA_VERSION" -Dkafka.scala="$KAFKA_SCALA_BINARY" -Dslf4j.version="$SLF4J_VERSION" \
        -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIB_DIR" >&2 \
        || die "could not resolve kafka_$KAFKA_SCALA_BINARY:$KAFKA_VERSION from Maven Central"
    touch "$marker"
}

fetch_elasticsearch() {
    [ -f "$ES_ZIP" ] && return 0
    log "fetching the Elasticsearch $ES_VERSION distribution"
    mvn_copy "org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" "$CACHE_DIR"
}

case "${1:-all}" in
    spark) fetch_spark_connectors ;;
    kafka) fetch_kafka ;;
    elasticsearch) fetch_elasticsearch ;;
    all) fetch_spark_connectors; fetch_kafka; fetch_elasticsearch ;;
    *) die "usage: fetch.sh [all|spark|kafka|elasticsearch]" ;;
esac
