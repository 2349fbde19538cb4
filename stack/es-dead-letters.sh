#!/usr/bin/env bash
# Builds the project's ES-Hadoop bulk write error handler (stack/es-dead-letters: a document
# Elasticsearch refuses for its content becomes a dead letter) against the exact ES-Hadoop
# connector and Spark versions, and prints the jar's path. The jar is named by those versions
# and a hash of the source (and of this script), in the user-level cache: built once, then
# reused by every run (and every checkout with the same source). spark-submit.sh passes it
# with --jars.
# Kept apart from JARS_DIR, whose every jar spark-submit.sh passes: two checkouts with different
# handler sources would otherwise put two copies of one class on the classpath.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SRC="$STACK_DIR/es-dead-letters/src"
VENV="${FINSTREAM_VENV:-$ROOT_DIR/.venv}"
ESH_JAR="$JARS_DIR/elasticsearch-spark-30_$SCALA_BINARY-$ES_HADOOP_VERSION.jar"
OUT_DIR="$CACHE_DIR/es-dead-letters"

hash="$( (cd "$SRC" && find . -name '*.java' | LC_ALL=C sort | xargs cat; cat "$STACK_DIR/es-dead-letters.sh") | sha256sum | cut -c1-12)"
jar="$OUT_DIR/finstream-es-dead-letters-$ES_HADOOP_VERSION-spark-$SPARK_VERSION-$hash.jar"
if [ -f "$jar" ]; then printf '%s\n' "$jar"; exit 0; fi

[ -f "$ESH_JAR" ] || "$STACK_DIR/fetch.sh" spark
[ -x "$VENV/bin/python" ] || die "no virtual environment in $VENV: run 'make install' first"
# Spark's own jars (Jackson, commons-logging): what the handler runs beside on every executor.
spark_jars="$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
log "building the ES-Hadoop dead-letter handler for ES-Hadoop $ES_HADOOP_VERSION"
mkdir -p "$OUT_DIR"
build="$(mktemp -d "$OUT_DIR/build.XXXXXX")"
trap 'rm -rf "$build"' EXIT
java_home="$(spark_java_home)"
# Each jar named: the Eclipse compiler does not expand a "dir/*" class path.
cp="$ESH_JAR:$(find "$spark_jars" -maxdepth 1 -name '*.jar' | sort | paste -sd: -)"
# Class files for Java 11, the oldest Java Spark runs on here (spark_java_home): javac of the
# Spark JDK, or the Eclipse compiler (from Maven Central) where only a JRE is installed.
if [ -x "$java_home/bin/javac" ]; then
    "$java_home/bin/javac" --release 11 -nowarn -cp "$cp" -d "$build/classes" $(find "$SRC" -name '*.java') >&2 \
        || die "compiling the dead-letter handler failed"
else
    ecj="$CACHE_DIR/ecj-$ECJ_VERSION.jar"
    [ -f "$ecj" ] || mvn -q -B -Dstyle.color=never dependency:copy -Dartifact="org.eclipse.jdt:ecj:$ECJ_VERSION" \
        -DoutputDirectory="$CACHE_DIR" >&2 || die "could not fetch the Eclipse compiler from Maven Central"
    "$java_home/bin/java" -jar "$ecj" --release 11 -nowarn -cp "$cp" -d "$build/classes" $(find "$SRC" -name '*.java') >&2 \
        || die "compiling the dead-letter handler failed"
fi
# A jar is a zip; Python's zipfile needs no JDK.
(cd "$build/classes" && "$VENV/bin/python" -m zipfile -c "$build/handler.jar" finstream >/dev/null)
mv -f "$build/handler.jar" "$jar"  # atomic: a concurrent run sees the whole jar or none
printf '%s\n' "$jar"
