"""Wiring of the stream job: the Kafka source, and the micro-batch bodies that write bars,
dead letters and predictions to Elasticsearch through ES-Hadoop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pyspark.sql import DataFrame, SparkSession

from finstream.config import Settings
from finstream.elastic import ES_HADOOP_FORMAT
from finstream.modelstore import ServedForecasts
from finstream.spark import bars as B
from finstream.spark import serving

log = logging.getLogger("finstream.stream_index")
predict_log = logging.getLogger("finstream.predict")
T = TypeVar("T")


def kafka_source_options(settings: Settings) -> dict[str, str]:
    options = {
        "kafka.bootstrap.servers": settings.kafka_bootstrap_servers,
        "subscribe": settings.kafka_topic,
        # First start reads the whole log; later starts resume from the checkpoint.
        "startingOffsets": "earliest",
        # Retention is unlimited: a gap in the offsets is a real loss and must stop the job.
        "failOnDataLoss": "true",
        # A task reads a known offset range; at the end of the log its last fetch otherwise
        # waits out the broker's fetch.max.wait.ms (500 ms) for bytes that are not coming:
        # measured, 12 records read in 1.2 s with the default, 0.17 s with 10 ms.
        "kafka.fetch.max.wait.ms": str(settings.kafka_fetch_max_wait_ms),
        **settings.kafka_spark_options(),
    }
    if settings.stream_max_offsets_per_trigger > 0:
        options["maxOffsetsPerTrigger"] = str(settings.stream_max_offsets_per_trigger)
    if settings.stream_min_partitions > 0:
        # Splits large partitions' offset ranges into more tasks: a backlog keeps every core busy.
        options["minPartitions"] = str(settings.stream_min_partitions)
    return options


def read_records(spark: SparkSession, settings: Settings) -> DataFrame:
    return spark.readStream.format("kafka").options(**kafka_source_options(settings)).load()


def checked_messages(records: DataFrame) -> DataFrame:
    """Kafka records -> every message parsed and checked (`reasons` empty for a valid bar)."""
    return B.check_messages(B.parse_messages(B.decode_records(records)))


@dataclass
class BatchWriter:
    """foreachBatch body of index-bars: one Spark job per micro-batch. Every message becomes
    a bar or a dead letter document, written by one ES-Hadoop write that routes each to its
    index (`{target_index}`). Document ids are deterministic, so a batch replayed after a
    crash overwrites what it wrote before (no duplicates)."""

    settings: Settings
    es_options: dict[str, str]
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __call__(self, messages: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        documents = B.index_documents(messages, self.settings.es_index_bars,
                                      self.settings.es_index_dead_letters)
        # "{field}": ES-Hadoop's multi-resource write takes each document's index from the field.
        options = {**self.es_options, "es.mapping.exclude": B.TARGET_INDEX}
        write_documents(documents, f"{{{B.TARGET_INDEX}}}", options, self.settings, self.sleep)
        log.info("batch %d written (%.2f s)", batch_id, time.perf_counter() - started)


def write_documents(documents: DataFrame, index: str, es_options: dict[str, str], settings: Settings,
                    sleep: Callable[[float], None] = time.sleep) -> None:
    """ES-Hadoop retries rejected bulk entries itself (es.batch.write.retry.*); an
    unreachable cluster fails the write at once. Retry the whole write with back-off, a
    bounded number of times, then stop the query with the error: ids are deterministic,
    so rewriting a partly written batch duplicates nothing."""
    retrying(lambda: documents.write.format(ES_HADOOP_FORMAT).options(**es_options).mode("append").save(index),
             f"writing to {index}", settings.es_batch_write_retry_count, sleep)


def retrying(action: Callable[[], T], what: str, attempts: int, sleep: Callable[[float], None] = time.sleep) -> T:
    """Runs action, retrying with exponential back-off (2, 4, 8... s, at most 60 s)."""
    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - py4j wraps every JVM error alike
            if attempt == attempts:
                log.error("%s failed %d times; stopping (the batch will be redone on restart): %s",
                          what, attempts, _first_line(exc))
                raise
            pause = min(60.0, 2.0 ** attempt)
            log.warning("%s failed (%s); retry %d/%d in %.0f s", what, _first_line(exc), attempt, attempts - 1, pause)
            sleep(pause)
    raise AssertionError("unreachable")


@dataclass
class PredictionWriter:
    """foreachBatch body of predict-bars: one Spark job per micro-batch. The state step has
    scored the new bars and judged the predictions they answer (finstream.spark.serving);
    this writes their documents, whole, by id: a replayed batch rewrites the same ones."""

    settings: Settings
    es_options: dict[str, str]
    models: ServedForecasts  # the driver's view of the served models, for the log only
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __call__(self, rows: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        self.models.current()  # logs a new or refused version once
        write_documents(serving.documents(rows), self.settings.es_index_predictions, self.es_options,
                        self.settings, self.sleep)
        predict_log.info("batch %d written (%.2f s)", batch_id, time.perf_counter() - started)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    cause = next((line for line in text if "Exception:" in line and "py4j" not in line), text[0] if text else repr(exc))
    return cause[:300]
