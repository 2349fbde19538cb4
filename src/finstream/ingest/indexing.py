"""The index-bars query's micro-batch body: every message a bar or a dead letter document,
written to Elasticsearch in one Spark job per micro-batch. (The predict-bars query's is
finstream.serving.predictor.PredictionWriter.)"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import DataFrame

from finstream.core.config import Settings
from finstream.ingest import validation as B
from finstream.ingest.es_sink import write_documents

log = logging.getLogger(__name__)


@dataclass
class BatchWriter:
    """The foreachBatch body of the index-bars query: writes each micro-batch to Elasticsearch.

    Every message becomes a bar or a dead letter document, written by one ES-Hadoop write that
    routes each to its index (`{target_index}`). Document ids are deterministic, so a batch
    replayed after a crash overwrites what it wrote before (no duplicates).

    Attributes:
        settings: the two indices' names and the write's retries.
        es_options: the ES-Hadoop options (finstream.stores.elastic.es_hadoop_options).
        sleep: how write_documents pauses between attempts (tests pass a fake).
    """

    settings: Settings
    es_options: dict[str, str]
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
        # "{field}": ES-Hadoop's multi-resource write takes each document's index from the field.
        options = {**self.es_options, "es.mapping.exclude": B.TARGET_INDEX}
        write_documents(documents, f"{{{B.TARGET_INDEX}}}", options, self.settings, self.sleep)
        log.info("index-bars batch %d written (%.2f s)", batch_id, time.perf_counter() - started)
