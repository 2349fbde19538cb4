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
    _uncounted: bool = field(default=False, init=False, repr=False)  # a batch could not be counted (logged once)

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
        tasks = self._tasks(batch_id)
        if tasks is not None:
            # Fewer tasks than partitions, never more; no shuffle, so the batch's Kafka reads and
            # validation run in those tasks too.
            documents = documents.coalesce(tasks)
        # "{field}": ES-Hadoop's multi-resource write takes each document's index from the field.
        options = {**self.es_options, "es.mapping.exclude": B.TARGET_INDEX}
        write_documents(documents, f"{{{B.TARGET_INDEX}}}", options, self.settings, self.sleep)
        log.info("index-bars batch %d written (%.2f s)", batch_id, time.perf_counter() - started)

    def _tasks(self, batch_id: int) -> int | None:
        """write_tasks for this batch, its records counted from the offset log; None (Spark's
        partitioning) when off or not countable, said once (a query's first batch is not)."""
        per_task = self.settings.stream_write_records_per_task
        if self.checkpoint is None or per_task <= 0:
            return None
        records = checkpoints.batch_records(self.checkpoint, self.settings.kafka_topic, batch_id)
        if records is None and batch_id > 0 and not self._uncounted:
            self._uncounted = True
            log.warning("index-bars: batch %d's records cannot be counted from %s/offsets; batches written in "
                        "the tasks Spark's Kafka source reads them in (STREAM_WRITE_RECORDS_PER_TASK has no effect)",
                        batch_id, self.checkpoint)
        return write_tasks(records, per_task, self.settings.stream_min_partitions)


def write_tasks(records: int | None, per_task: int, at_least: int = 0) -> int | None:
    """How many tasks at most read, validate and write a micro-batch of `records` (None: as
    many as Spark's Kafka source makes: one per partition with records, or its minPartitions'
    splits, source.read_splits).

    A task costs a fixed 0.1-0.2 s whatever its rows (its Kafka reads, its bulk request and
    refresh; bench/results/tuning.md), so a small batch read from three partitions is written
    faster by one task than by three, which on two cores also run in two waves.

    Args:
        records: the batch's record count (checkpoints.batch_records), None when not known.
        per_task: STREAM_WRITE_RECORDS_PER_TASK; 0 turns the merging off.
        at_least: STREAM_MIN_PARTITIONS as set (0: none): never fewer tasks than the user asked
            for. The split source.read_splits makes by itself when catching up is no floor.

    Returns:
        max(ceil(records / per_task), at_least, 1); None when either is unknown or off.
    """
    if records is None or per_task <= 0:
        return None
    return max(1, at_least, math.ceil(records / per_task))
