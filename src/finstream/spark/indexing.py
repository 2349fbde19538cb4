"""Wiring of the stream job: Kafka source, and the micro-batch that writes bars and dead
letters to Elasticsearch through ES-Hadoop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from finstream.config import Settings
from finstream.elastic import ES_HADOOP_FORMAT
from finstream.spark import bars as B

log = logging.getLogger("finstream.stream_index")


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
        checked = B.check_messages(B.parse_messages(B.decode_records(records))).persist()
        try:
            bars = B.valid_bars(checked)
            dead_letters = B.dead_letters(checked)
            self._write(bars, self.settings.es_index_bars)
            self._write(dead_letters, self.settings.es_index_dead_letters)
            # One pass over the persisted batch (not Kafka) for both counts.
            refused = (F.size("reasons") > 0).cast("long")
            counts = checked.agg(F.count(F.lit(1)).alias("all"), F.sum(refused).alias("dead")).first()
            log.info("batch %d: %d bars indexed, %d dead letters", batch_id, counts.all - (counts.dead or 0),
                     counts.dead or 0)
        finally:
            checked.unpersist()

    def _write(self, documents: DataFrame, index: str) -> None:
        """ES-Hadoop retries rejected bulk entries itself (es.batch.write.retry.*); an
        unreachable cluster fails the write at once. Retry the whole write with back-off, a
        bounded number of times, then stop the query with the error: ids are deterministic,
        so rewriting a partly written batch duplicates nothing."""
        attempts = max(1, self.settings.es_batch_write_retry_count)
        for attempt in range(1, attempts + 1):
            try:
                documents.write.format(ES_HADOOP_FORMAT).options(**self.es_options).mode("append").save(index)
                return
            except Exception as exc:  # noqa: BLE001 - py4j wraps every JVM error alike
                if attempt == attempts:
                    log.error("writing to %s failed %d times; stopping (the batch will be redone on restart): %s",
                              index, attempts, _first_line(exc))
                    raise
                pause = min(60.0, 2.0 ** attempt)
                log.warning("writing to %s failed (%s); retry %d/%d in %.0f s",
                            index, _first_line(exc), attempt, attempts - 1, pause)
                self.sleep(pause)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    cause = next((line for line in text if "Exception:" in line and "py4j" not in line), text[0] if text else repr(exc))
    return cause[:300]
