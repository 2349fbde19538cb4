"""Writing a DataFrame of documents to Elasticsearch through ES-Hadoop, with the project's
retry policy around the whole write for transient failures. A document Elasticsearch refuses
for its content never fails the write: ES-Hadoop's bulk error handler (finstream.stores.elastic
DEAD_LETTER_HANDLER) turns it into a dead letter in the same bulk flow."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pyspark.sql import DataFrame

from finstream.core.config import Settings
from finstream.core.retry import Transient, first_line, retrying
from finstream.stores.elastic import DEAD_LETTER_ABORT_MARKER, DEAD_LETTER_HANDLER_PREFIX, ES_HADOOP_FORMAT

log = logging.getLogger(__name__)
BACKOFF_BASE_SECONDS, BACKOFF_CAP_SECONDS = 2.0, 60.0


def write_documents(documents: DataFrame, index: str, es_options: dict[str, str], settings: Settings,
                    sleep: Callable[[float], None] = time.sleep) -> None:
    """Writes `documents` to Elasticsearch through ES-Hadoop, retrying the whole write on failure.

    ES-Hadoop retries rejected bulk entries itself (es.batch.write.retry.*: 429, 503), and
    its error handler dead-letters the documents refused for their content (HTTP 400); an
    unreachable cluster, or another failure, fails the write. Retry the whole write with
    back-off (2, 4, 8 ... s, at most 60), ES_BATCH_WRITE_RETRY_COUNT attempts in all, then stop
    the query with the error: ids are deterministic, so rewriting a partly written batch
    duplicates nothing. A refusal the handler could not dead-letter (its dead letter refused
    too) is not retried: the same documents would be refused again.

    Args:
        documents: one row per document, its columns the document's fields (and any the options
            exclude, such as target_index).
        index: the index, or an ES-Hadoop pattern such as `{target_index}` that takes each
            document's index from one of its fields.
        es_options: the ES-Hadoop options (finstream.stores.elastic.es_hadoop_options).
        settings: ES_BATCH_WRITE_RETRY_COUNT.
        sleep: how to pause between attempts (tests pass a fake).

    Raises:
        Exception: the last attempt's error (py4j's wrapper of the JVM's) once the attempts are
            spent, or at once an abort of the dead-letter handler; either stops the streaming
            query, and a restart redoes the batch.
    """
    if "{" not in index:  # bulk entries of a single-index write do not name their index
        es_options = {**es_options, f"{DEAD_LETTER_HANDLER_PREFIX}.write.index": index}

    def write() -> None:
        try:
            documents.write.format(ES_HADOOP_FORMAT).options(**es_options).mode("append").save(index)
        except Exception as exc:  # noqa: BLE001 - py4j wraps every JVM error alike
            if DEAD_LETTER_ABORT_MARKER in str(exc):
                raise
            raise Transient(first_line(exc)) from exc

    what = f"writing to {index}"
    try:
        retrying(write, what=what, retries=settings.es_batch_write_retry_count - 1, base=BACKOFF_BASE_SECONDS,
                 cap=BACKOFF_CAP_SECONDS, log=log, sleep=sleep)
    except Transient as exc:
        log.error("%s failed %d times; stopping (the batch will be redone on restart): %s", what,
                  max(1, settings.es_batch_write_retry_count), exc.problem)
        raise (exc.__cause__ or exc) from None
    except Exception as exc:  # noqa: BLE001
        log.error("%s: Elasticsearch refused a document and its dead letter; stopping without retrying (a restart "
                  "redoes the batch, refused again until the dead-letter index accepts it): %s", what, refusal(exc))
        raise


def refusal(exc: BaseException) -> str:
    """The dead-letter handler's abort message in a failed write's JVM error text, else first_line(exc)."""
    text = str(exc)
    start = text.find(DEAD_LETTER_ABORT_MARKER)
    return text[start:].splitlines()[0][:500] if start >= 0 else first_line(exc)
