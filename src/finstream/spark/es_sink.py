"""Writing a DataFrame of documents to Elasticsearch through ES-Hadoop, with the project's
retry policy around the whole write."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pyspark.sql import DataFrame

from finstream.config import Settings
from finstream.elastic import ES_HADOOP_FORMAT
from finstream.retry import first_line, retrying

log = logging.getLogger(__name__)
BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS = 2.0, 60.0


def write_documents(documents: DataFrame, index: str, es_options: dict[str, str], settings: Settings,
                    sleep: Callable[[float], None] = time.sleep) -> None:
    """ES-Hadoop retries rejected bulk entries itself (es.batch.write.retry.*); an unreachable
    cluster fails the write at once. Retry the whole write with back-off (2, 4, 8 ... s),
    ES_BATCH_WRITE_RETRY_COUNT attempts in all, then stop the query with the error: ids are
    deterministic, so rewriting a partly written batch duplicates nothing."""
    def write() -> None:
        documents.write.format(ES_HADOOP_FORMAT).options(**es_options).mode("append").save(index)

    what = f"writing to {index}"
    try:
        retrying(write, what=what, retries=settings.es_batch_write_retry_count - 1, base=BACKOFF_BASE_SECONDS,
                 cap=BACKOFF_CAP_SECONDS, log=log, on=Exception, sleep=sleep)
    except Exception as exc:  # noqa: BLE001 - py4j wraps every JVM error alike
        log.error("%s failed %d times; stopping (the batch will be redone on restart): %s", what,
                  max(1, settings.es_batch_write_retry_count), first_line(exc))
        raise
