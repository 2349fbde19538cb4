"""Producer -> Kafka -> stream_index (Spark, ES-Hadoop) -> Elasticsearch, on the real stack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import types as T

from bench.cleanup import drop_run_data
from finstream.core import schema as S
from finstream.ingest.spark_types import bar_schema
from finstream.serving import predictor
from finstream.stores import elastic, topics
from producer import samples
from tests.catalogue import REFUSED
from tests.integration.conftest import new_pipeline

SAMPLE = samples.load_bars("goog-daily")[:400]


def as_messages(bars) -> list[tuple[bytes, bytes]]:
    return [(bar.key, bar.to_json()) for bar in bars]


MALFORMED = [(b"BAD", value or b"") for value, _ in REFUSED.values()]


@pytest.fixture(scope="module")
def twice_with_malformed(stack):
    """One run over every bar twice (a re-run collector), the malformed messages in between;
    the tests below assert on its documents and on its progress records."""
    pipe = new_pipeline("twice-with-malformed")
    pipe.publish(as_messages(SAMPLE) + MALFORMED + as_messages(SAMPLE))
    result = pipe.stream_index()
    yield pipe, result
    drop_run_data(pipe.es(), pipe.settings)


@dataclass
class Restarts:
    """The bars index after each run of `restarts`: doc id -> document."""

    first: dict[str, dict]
    unchanged: dict[str, dict]
    resumed: dict[str, dict]


@pytest.fixture(scope="module")
def restarts(stack):
    """Runs one after another on one pipeline: 300 bars; a restart with nothing new; the other
    100; then all 400 published again (a second replay)."""
    pipe = new_pipeline("restarts")
    index = pipe.settings.es_index_bars
    pipe.publish(as_messages(SAMPLE[:300]))
    pipe.stream_index()
    first = pipe.documents(index)
    pipe.stream_index()
    unchanged = pipe.documents(index)
    pipe.publish(as_messages(SAMPLE[300:]))
    pipe.stream_index()
    resumed = pipe.documents(index)
    pipe.publish(as_messages(SAMPLE))
    pipe.stream_index()
    yield pipe, Restarts(first, unchanged, resumed)
    drop_run_data(pipe.es(), pipe.settings)


def test_distinct_valid_bars_indexed_and_every_malformed_message_dead_lettered(twice_with_malformed):
    pipeline, _ = twice_with_malformed
    settings = pipeline.settings
    bars = pipeline.documents(settings.es_index_bars)
    assert len(bars) == len(SAMPLE)
    assert set(bars) == {bar.doc_id for bar in SAMPLE}
    first = SAMPLE[0]
    assert bars[first.doc_id]["close"] == first.close and bars[first.doc_id]["timestamp"] == first.timestamp

    dead = pipeline.documents(settings.es_index_dead_letters)
    assert len(dead) == len(MALFORMED)
    reasons = sorted(doc["reason"] for doc in dead.values())
    for _value, reason in REFUSED.values():
        assert any(reason in r for r in reasons), reason
    assert all(doc["topic"] == settings.kafka_topic and doc["offset"] >= 0 for doc in dead.values())
    # Reconciliation: every message produced is either a bar copy or a dead letter.
    produced = sum(topics.end_offsets(settings).values())
    assert produced == 2 * len(SAMPLE) + len(MALFORMED)
    assert pipeline.checkpoint_offsets() == topics.end_offsets(settings)


def test_second_replay_adds_no_document(restarts):
    pipeline, _ = restarts
    settings = pipeline.settings
    assert pipeline.count(settings.es_index_bars) == len(SAMPLE)
    assert sum(topics.end_offsets(settings).values()) == 2 * len(SAMPLE)
    assert pipeline.checkpoint_offsets() == topics.end_offsets(settings)


def test_restart_resumes_where_it_stopped_and_processes_nothing_twice(restarts):
    _, runs = restarts
    before = {doc_id: doc["indexed_at"] for doc_id, doc in runs.first.items()}
    assert set(before) == {bar.doc_id for bar in SAMPLE[:300]}
    # A restart with nothing new: no document is written again.
    assert {d: doc["indexed_at"] for d, doc in runs.unchanged.items()} == before
    # A restart with new bars: only those are processed.
    after = runs.resumed
    assert set(after) == {bar.doc_id for bar in SAMPLE}
    assert {d: after[d]["indexed_at"] for d in before} == before
    assert min(after[bar.doc_id]["indexed_at"] for bar in SAMPLE[300:]) > max(before.values())


def test_progress_of_every_batch_is_logged_and_indexed(twice_with_malformed, spark):
    pipeline, result = twice_with_malformed
    assert '"event": "progress"' in result.stdout + result.stderr
    settings = pipeline.settings
    es = pipeline.es()
    es.indices.refresh(index=settings.es_index_pipeline_metrics)
    docs = [h["_source"] for h in es.search(index=settings.es_index_pipeline_metrics, size=100)["hits"]["hits"]]
    assert {d["query"] for d in docs} == {"index-bars", "predict-bars"}
    produced = sum(topics.end_offsets(settings).values())
    for query in ("index-bars", "predict-bars"):  # each query reads every message once
        assert sum(d["input_rows"] for d in docs if d["query"] == query) == produced
        assert min(d["offsets_behind_latest"] for d in docs if d["query"] == query) == 0
    # The predictor's state: one row per bucket of series in use (predictor.state_buckets).
    series = sorted({(b.ticker, b.timespan, b.multiplier) for b in SAMPLE})
    schema = T.StructType([bar_schema()[name] for name in S.SERIES])
    buckets = spark.createDataFrame(series, schema).select(predictor.state_buckets(settings)).distinct().count()
    assert max(d["state_rows"] for d in docs if d["query"] == "predict-bars") == buckets
    event_logs = list(Path(pipeline.env["SPARK_EVENT_LOG_DIR"]).iterdir())
    assert len(event_logs) == 1 and event_logs[0].stat().st_size > 0


def test_an_index_made_by_an_earlier_version_gains_the_new_fields(pipeline):
    """The predictions mapping is strict: an index created before the interval, range and
    variance fields would refuse every new document. ensure_indices adds them."""
    settings, es = pipeline.settings, pipeline.es()
    old_fields = ("doc_id", "ticker", "timestamp", "predicted_close", "model", "model_version")
    es.indices.create(index=settings.es_index_predictions, mappings={
        "dynamic": "strict", "properties": {name: S.PREDICTION_MAPPING[name] for name in old_fields}})
    elastic.ensure_indices(es, settings, only=[settings.es_index_predictions])
    mapped = es.indices.get_mapping(index=settings.es_index_predictions)[settings.es_index_predictions]
    assert set(mapped["mappings"]["properties"]) == set(S.PREDICTION_MAPPING)
    es.index(index=settings.es_index_predictions, id="x", document={"doc_id": "x", "lower": 1.0, "upper": 2.0,
                                                                    "interval_model": "random_forest"})
