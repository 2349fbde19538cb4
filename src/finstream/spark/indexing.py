"""The stream job's micro-batch bodies: bars and dead letters (index-bars), and prediction
documents (predict-bars), each written to Elasticsearch in one Spark job per micro-batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import DataFrame

from finstream.config import Settings
from finstream.modelstore import ServedForecasts
from finstream.spark import bars as B
from finstream.spark import serving
from finstream.spark.es_sink import write_documents

log = logging.getLogger(__name__)


@dataclass
class BatchWriter:
    """foreachBatch body of index-bars. Every message becomes a bar or a dead letter document,
    written by one ES-Hadoop write that routes each to its index (`{target_index}`). Document
    ids are deterministic, so a batch replayed after a crash overwrites what it wrote before
    (no duplicates)."""

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
        log.info("index-bars batch %d written (%.2f s)", batch_id, time.perf_counter() - started)


@dataclass
class PredictionWriter:
    """foreachBatch body of predict-bars. The state step has scored the new bars and judged
    the predictions they answer (finstream.spark.serving); this writes their documents, whole,
    by id: a replayed batch rewrites the same ones."""

    settings: Settings
    es_options: dict[str, str]
    models: ServedForecasts  # the driver's view of the served models, for the log only
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __call__(self, rows: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        self.models.current()  # logs a new or refused version once
        write_documents(serving.documents(rows), self.settings.es_index_predictions, self.es_options,
                        self.settings, self.sleep)
        log.info("predict-bars batch %d written (%.2f s)", batch_id, time.perf_counter() - started)
