"""Wiring of the stream job: the Kafka source, and the micro-batch bodies that write bars,
dead letters and predictions to Elasticsearch through ES-Hadoop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from finstream.config import Settings
from finstream.elastic import ES_HADOOP_FORMAT
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


@dataclass
class BatchWriter:
    """foreachBatch body: one Kafka read feeds both outputs. Document ids are deterministic,
    so a batch replayed after a crash overwrites what it wrote before (no duplicates)."""

    settings: Settings
    es_options: dict[str, str]
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __call__(self, records: DataFrame, batch_id: int) -> None:
        checked = B.for_outputs(B.check_messages(B.parse_messages(B.decode_records(records)))).persist()
        try:
            # One pass over Kafka fills the cache and gives both counts; empty outputs are not written.
            started = time.perf_counter()
            refused = (F.size("reasons") > 0).cast("long")
            counts = checked.agg(F.count(F.lit(1)).alias("all"), F.sum(refused).alias("dead")).first()
            dead = counts.dead or 0
            checked_s = time.perf_counter() - started
            if counts.all - dead:
                self._write(B.valid_bars(checked), self.settings.es_index_bars)
            if dead:
                self._write(B.dead_letters(checked), self.settings.es_index_dead_letters)
            log.info("batch %d: %d bars indexed, %d dead letters (read and checked in %.1f s, written in %.1f s)",
                     batch_id, counts.all - dead, dead, checked_s, time.perf_counter() - started - checked_s)
        finally:
            checked.unpersist()

    def _write(self, documents: DataFrame, index: str) -> None:
        write_documents(documents, index, self.es_options, self.settings, self.sleep)


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
    """foreachBatch body of the predict query: scores the batch's new bars with the served
    model and judges earlier predictions against the bars that answer them. Document ids
    are the bars' ids, so a replayed batch rewrites the same documents."""

    settings: Settings
    es_options: dict[str, str]
    models: serving.ModelRegistry
    find_predicted_closes: Callable[[list[str]], dict[str, float]]
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def __call__(self, rows: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        rows = rows.persist()
        cached: list[DataFrame] = []
        try:
            summary = serving.summarize(rows)  # runs the stateful step once, into the cache
            served, predicted, earlier = None, 0, {}
            if summary[serving.NEW]:
                index = self.settings.es_index_predictions
                served = self.models.current()
                earlier = retrying(lambda: self.find_predicted_closes(summary.answered),
                                   f"reading predictions from {index}", self.settings.es_batch_write_retry_count,
                                   self.sleep) if summary.answered else {}
                featured = serving.feature_rows(rows).persist()
                documents = serving.documents(featured, served, int(self.clock() * 1000), earlier)
                cached += [featured]
                if documents is not None:
                    documents = documents.persist()
                    cached.append(documents)
                    # upsert: a prediction is created (or rewritten, on replay); an earlier one
                    # gets only its actual and error fields.
                    write_documents(documents, index, {**self.es_options, "es.write.operation": "upsert"},
                                    self.settings, self.sleep)
                    predicted = documents.where(F.col("model_version").isNotNull()).count() if served else 0
            predict_log.info("batch %d: %d new bars, %d predicted%s, %d earlier predictions judged, %d late, "
                             "%d duplicates (%.1f s)", batch_id, summary[serving.NEW], predicted,
                             f" by model {served.version}" if predicted else "", len(earlier),
                             summary[serving.LATE], summary[serving.DUPLICATE], time.perf_counter() - started)
        finally:
            for frame in cached:
                frame.unpersist()
            rows.unpersist()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    cause = next((line for line in text if "Exception:" in line and "py4j" not in line), text[0] if text else repr(exc))
    return cause[:300]
