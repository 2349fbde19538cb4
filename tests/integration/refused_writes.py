"""Run by test_refusals.py through ./spark-submit.sh: documents Elasticsearch refuses, written by
finstream.ingest.es_sink.write_documents (what the stream job's writers call) with the options the
stream job builds (finstream.stores.elastic.es_hadoop_options), on the real connector and cluster.

    ./spark-submit.sh tests/integration/refused_writes.py STRICT_INDEX

Prints one JSON line: what each write did."""

from __future__ import annotations

import json
import sys

from pyspark.sql import SparkSession

from finstream.core.config import Settings
from finstream.ingest.es_sink import write_documents
from finstream.stores import elastic

IMMENSE = "x" * 33_000  # over Lucene's 32 766-byte term limit

PREDICTIONS = [
    {"doc_id": "GOOG|1|day|1", "ticker": "GOOG", "last_close": "101.5"},  # coerced to a double: indexed
    {"doc_id": "GOOG|1|day|2", "ticker": "GOOG", "last_close": "not a number"},  # mapping conflict: refused
    {"doc_id": "GOOG|1|day|3", "ticker": "GOOG", "last_close": "99.0", "model": IMMENSE},  # keyword bounded: indexed
]
# A dead letter refused for its content (offset is a long): replaced by a minimal one.
DEAD_LETTERS = [{"doc_id": "a-topic|0|7", "reason": "unknown timespan", "reasons": ["unknown timespan"],
                 "offset": "seven"}]


def main(strict_index: str) -> None:
    settings = Settings.load()
    es = elastic.client(settings)
    options = elastic.es_hadoop_options(settings, elastic.cluster_info(es))
    spark = SparkSession.builder.appName("finstream-refused-writes").getOrCreate()

    def frame(rows: list[dict]):
        return spark.read.json(spark.sparkContext.parallelize([json.dumps(row) for row in rows], 1))

    sleeps: list[float] = []
    outcome: dict[str, object] = {}
    write_documents(frame(PREDICTIONS), settings.es_index_predictions, options, settings, sleeps.append)
    write_documents(frame(DEAD_LETTERS), settings.es_index_dead_letters, options, settings, sleeps.append)
    outcome["sleeps_after_dead_lettering"] = list(sleeps)
    # A dead-letter index that refuses even the minimal dead letter (its strict mapping knows one
    # field): the write fails at once, not retried.
    strict = {**options, f"{elastic.DEAD_LETTER_HANDLER_PREFIX}.dead.letter.index": strict_index}
    try:
        write_documents(frame([{"doc_id": "refused", "other": "field"}]), strict_index, strict, settings,
                        sleeps.append)
        outcome["strict_write"] = "succeeded"
    except Exception as exc:  # noqa: BLE001 - py4j's error, as the stream job sees it
        outcome["strict_write"] = "failed"
        outcome["strict_error_names_the_handler"] = elastic.DEAD_LETTER_ABORT_MARKER in str(exc)
    outcome["sleeps"] = sleeps
    spark.stop()
    print(json.dumps(outcome))


if __name__ == "__main__":
    main(sys.argv[1])
