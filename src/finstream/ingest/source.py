"""The Kafka topic as a Spark source: the one place its options are built, for the stream
job (a streaming read) and for training (a batch read of the whole log)."""

from __future__ import annotations

import re

from pyspark.errors import ArithmeticException, IllegalArgumentException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import DataStreamWriter

from finstream.core.config import Settings
from finstream.core.errors import UserError
from finstream.ingest.indexing import write_tasks


def kafka_options(settings: Settings) -> dict[str, str]:
    """What every read of the topic needs: the cluster, its security, the topic, from the start."""
    return {
        "kafka.bootstrap.servers": settings.kafka_bootstrap_servers,
        "subscribe": settings.kafka_topic,
        # A first start (or training) reads the whole log; a stream's later starts resume from
        # its checkpoint.
        "startingOffsets": "earliest",
        # Only committed records: bars of a transaction another writer aborted are not bars.
        "kafka.isolation.level": "read_committed",
        **settings.kafka_spark_options(),
    }


def jvm_cores(spark: SparkSession) -> int:
    """The processors the driver's JVM sees: what `local[*]` runs a thread per. Not
    os.cpu_count(): the JVM counts a container's CPU limit, not the host's cores."""
    return int(spark.sparkContext._jvm.java.lang.Runtime.getRuntime().availableProcessors())


def local_threads(master: str, cores: int | None) -> int | None:
    """A local master's task threads: "local" 1, "local[4]" 4, "local[*]" `cores` (jvm_cores);
    None on a cluster (spark://, yarn, k8s://)."""
    local = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\s*\d+)?\])?", master.strip())
    if local is None:
        return None
    threads = local.group(1)
    if threads is None:
        return 1
    return max(1, cores or 1) if threads == "*" else max(1, int(threads))


def read_splits(configured: int, master: str, cores: int | None, *, catching_up: bool) -> int:
    """The Kafka source's minPartitions: the fewest tasks a micro-batch is read in (0: one per
    Kafka partition with records, Spark's default).

    Args:
        configured: STREAM_MIN_PARTITIONS (0: choose).
        master: spark.master.
        cores: jvm_cores, for local[*].
        catching_up: the query reads a backlog and then ends (--available-now, or a running
            job's catch-up: catch_up_splits).

    Returns:
        `configured` when set. Else, catching up on a local master, its threads: a backlog on
        a topic of one partition is then read, validated and written by every core (1 000 000
        bars 1.3-1.5x faster on 2 cores; bench/results/tuning.md). Running on, 0: a small
        batch's second split would cost index-bars 0.13-0.18 s (its reads merged into one task
        by indexing.write_tasks) and predict-bars a second read task. A cluster reads a task
        per Kafka partition (docs/scaling.md).
    """
    if configured > 0:
        return configured
    return (local_threads(master, cores) or 0) if catching_up else 0


def catch_up_splits(behind: dict[int, int], settings: Settings, master: str, cores: int | None) -> int:
    """The read splits of a running job's catch-up (0: none), which reads its backlog as
    --available-now does, in a task per local thread, before it runs on.

    Spark 3.4 fixes a Kafka source's minPartitions for the life of a query, so a running query
    cannot split only its large batches: split, every small batch would pay a second read task
    (read_splits). The catch-up is a query of its own that ends at the backlog's end.

    Args:
        behind: Kafka partition -> records the query has still to read (checkpoints.behind).
        settings: STREAM_CATCH_UP_RECORDS (0: never), STREAM_MIN_PARTITIONS,
            STREAM_MAX_OFFSETS_PER_TRIGGER and STREAM_WRITE_RECORDS_PER_TASK.
        master: spark.master.
        cores: jvm_cores, for local[*].

    Returns:
        read_splits' split for a backlog when the query is at least STREAM_CATCH_UP_RECORDS
        behind and the split reads it in more tasks than the running query would (one per
        partition with records, or STREAM_MIN_PARTITIONS when set), also once index-bars has
        merged a batch's reads into its write tasks (indexing.write_tasks: a batch of
        STREAM_MAX_OFFSETS_PER_TRIGGER, or the backlog, over STREAM_WRITE_RECORDS_PER_TASK);
        else 0.
    """
    records = sum(behind.values())
    if settings.stream_catch_up_records == 0 or records < settings.stream_catch_up_records:
        return 0
    # More tasks than the running read's (which are at least read_splits' running value): so
    # also nothing on a cluster, on one thread or with STREAM_MIN_PARTITIONS set (catches_up).
    splits = read_splits(settings.stream_min_partitions, master, cores, catching_up=True)
    running = max(read_splits(settings.stream_min_partitions, master, cores, catching_up=False),
                  sum(1 for count in behind.values() if count > 0))
    # index-bars writes a batch in at most write_tasks' tasks, merging the reads of more.
    cap = settings.stream_max_offsets_per_trigger
    merged = write_tasks(min(cap, records) if cap > 0 else records, settings.stream_write_records_per_task)
    return splits if min(splits, merged or splits) > running else 0


def catches_up(settings: Settings, master: str, cores: int | None) -> bool:
    """Whether a running job may catch up split at all (catch_up_splits), before counting its
    backlog: STREAM_CATCH_UP_RECORDS is on, and a local master's threads would split the read
    while STREAM_MIN_PARTITIONS is unset."""
    return (settings.stream_catch_up_records > 0
            and read_splits(settings.stream_min_partitions, master, cores, catching_up=True)
            > read_splits(settings.stream_min_partitions, master, cores, catching_up=False))


def stream_options(settings: Settings, splits: int) -> dict[str, str]:
    """The stream job's read options: kafka_options, plus how a streaming query reads the topic.

    A gap in the offsets fails the query; a fetch at the log's end waits at most
    KAFKA_FETCH_MAX_WAIT_MS; STREAM_MAX_OFFSETS_PER_TRIGGER caps a micro-batch and `splits`
    (read_splits) splits it into more tasks (0: Spark's default for either).
    """
    options = {
        **kafka_options(settings),
        # Retention is unlimited: a gap in the offsets is a real loss and must stop the job
        # (finstream.stores.checkpoints names the missing records).
        "failOnDataLoss": "true",
        # A task reads a known offset range; at the end of the log its last fetch otherwise
        # waits out the broker's fetch.max.wait.ms (500 ms) for bytes that are not coming:
        # measured, 12 records read in 1.2 s with the default, 0.17 s with 10 ms.
        "kafka.fetch.max.wait.ms": str(settings.kafka_fetch_max_wait_ms),
    }
    if settings.stream_max_offsets_per_trigger > 0:
        options["maxOffsetsPerTrigger"] = str(settings.stream_max_offsets_per_trigger)
    if splits > 0:
        # Splits large partitions' offset ranges into more tasks: a backlog keeps every core busy.
        options["minPartitions"] = str(splits)
    return options


def stream_records(spark: SparkSession, settings: Settings, splits: int) -> DataFrame:
    """The topic as an unbounded stream of Kafka records, read in at least `splits` tasks a
    micro-batch (read_splits, catch_up_splits; 0: one per Kafka partition).

    Returns:
        A streaming DataFrame of the Kafka source's columns: key and value (binary), topic,
        partition, offset, timestamp and timestampType.
    """
    return spark.readStream.format("kafka").options(**stream_options(settings, splits)).load()


def log_records(spark: SparkSession, settings: Settings) -> DataFrame:
    """The whole log as it stands, first offset to last (the Kappa replay).

    Returns:
        A batch DataFrame with the Kafka source's columns, as stream_records'.
    """
    return spark.read.format("kafka").options(**kafka_options(settings), endingOffsets="latest").load()


def processing_time(stream: DataStreamWriter, interval: str, source: str) -> DataStreamWriter:
    """The stream with a processing-time trigger of `interval`, as Spark parses it.

    Args:
        stream: a streaming query's writer.
        interval: Spark's interval text, e.g. "1 second", "500 milliseconds", "0 seconds".
        source: where the value came from, for the message (e.g. "STREAM_TRIGGER_INTERVAL").

    Raises:
        UserError: Spark refuses the interval (unparsable, negative, in months or years, empty,
            or too long).
    """
    # Spark's own parser decides: a copy of its interval grammar here would drift from it.
    try:
        return stream.trigger(processingTime=interval)
    # ValueError: pyspark refuses an empty one itself; ArithmeticException: one too long for a
    # long of microseconds.
    except (IllegalArgumentException, ArithmeticException, ValueError):
        raise UserError(f"{source}={interval!r} is not a trigger interval Spark accepts; give a "
                        "duration of 0 or more, e.g. '1 second' or '500 milliseconds'") from None
