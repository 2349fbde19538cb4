"""The index-bars query's micro-batch body: every message a bar or a dead letter document,
written to Elasticsearch in one Spark job per micro-batch. (The predict-bars query's is
finstream.serving.predictor.PredictionWriter.)"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame

from finstream.core.config import Settings
from finstream.ingest import validation as B
from finstream.ingest.es_sink import write_documents
from finstream.stores import checkpoints

log = logging.getLogger(__name__)


@dataclass
class BatchWriter:
    """The foreachBatch body of the index-bars query: writes each micro-batch to Elasticsearch.

    Every message becomes a bar or a dead letter document, written by one ES-Hadoop write that
    routes each to its index (`{target_index}`). Document ids are deterministic, so a batch
    replayed after a crash overwrites what it wrote before (no duplicates).

    Attributes:
        settings: the two indices' names, the write's retries and STREAM_WRITE_RECORDS_PER_TASK.
        es_options: the ES-Hadoop options (finstream.stores.elastic.es_hadoop_options).
        checkpoint: the query's checkpoint folder, whose offset log gives a batch's record count
            (write_tasks); None: every Kafka partition written by its own task.
        sleep: how write_documents pauses between attempts (tests pass a fake).
    """

    settings: Settings
    es_options: dict[str, str]
    checkpoint: Path | None = None  # the query's, to count a batch's records (None: not counted)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    _columns: list | None = field(default=None, init=False, repr=False)  # built at the first batch

    def __call__(self, messages: DataFrame, batch_id: int) -> None:
        """Writes one micro-batch.

        Args:
            messages: the micro-batch's checked messages (validation.checked_messages' columns).
            batch_id: Spark's micro-batch id, for the log line.
        """
        started = time.perf_counter()
        if self._columns is None:
            self._columns = B.index_document_columns(self.settings.es_index_bars, self.settings.es_index_dead_letters)
        documents = messages.select(*self._columns)
        records = None if self.checkpoint is None else \
            checkpoints.batch_records(self.checkpoint, self.settings.kafka_topic, batch_id)
        tasks = write_tasks(records, self.settings.stream_write_records_per_task)
        if tasks is not None:
            documents = documents.coalesce(tasks)  # fewer tasks than partitions, never more
        # "{field}": ES-Hadoop's multi-resource write takes each document's index from the field.
        options = {**self.es_options, "es.mapping.exclude": B.TARGET_INDEX}
        write_documents(documents, f"{{{B.TARGET_INDEX}}}", options, self.settings, self.sleep)
        log.info("index-bars batch %d written (%.2f s)", batch_id, time.perf_counter() - started)


def write_tasks(records: int | None, per_task: int) -> int | None:
    """How many tasks at most write a micro-batch of `records` (None: as many as its Kafka
    partitions, Spark's way).

    A write task costs about 0.15 s whatever its rows (its Kafka read, its bulk request and
    refresh; bench/results/tuning.md), so a small batch read from three partitions is written
    faster by one task than by three, which on two cores also run in two waves.

    Args:
        records: the batch's record count (checkpoints.batch_records), None when not known.
        per_task: STREAM_WRITE_RECORDS_PER_TASK; 0 turns the merging off.

    Returns:
        ceil(records / per_task), at least 1; None when either is unknown or off.
    """
    if records is None or per_task <= 0:
        return None
    return max(1, math.ceil(records / per_task))
