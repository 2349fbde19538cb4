"""A document Elasticsearch refuses for its content (an immense term, a mapping conflict) does
not wedge the stream job: ES-Hadoop's bulk error handler (stack/es-dead-letters) turns it into a
dead letter with Elasticsearch's reason, in the same bulk flow, and the batch commits."""

from __future__ import annotations

import dataclasses
import json

from finstream import elastic, topics
from finstream.schema import KEYWORD_IGNORE_ABOVE
from producer import samples

GOOG = samples.load_bars("goog-daily")[:10]
LUCENE_MAX_TERM_BYTES = 32_766


def as_messages(bars) -> list[tuple[bytes, bytes]]:
    return [(bar.key, bar.to_json()) for bar in bars]


def test_a_bar_elasticsearch_refuses_is_dead_lettered_and_the_job_goes_on(pipeline):
    settings = pipeline.settings
    # A valid bar (the job's rules accept any source) whose source is one term over Lucene's limit.
    immense = dataclasses.replace(GOOG[5], source="x" * 33_000)
    assert len(immense.source.encode()) > LUCENE_MAX_TERM_BYTES
    pipeline.publish(as_messages([*GOOG[:5], immense, GOOG[6]]))
    run = pipeline.stream_index()  # exits 0

    output = run.stdout + run.stderr
    assert "retry 1/" not in output, output[-3000:]  # a refusal is not a transient failure
    bars = pipeline.documents(settings.es_index_bars)
    assert set(bars) == {bar.doc_id for bar in [*GOOG[:5], GOOG[6]]}
    partition = bars[GOOG[0].doc_id]["kafka_partition"]  # one ticker: one partition, offsets 0-6
    letters = pipeline.documents(settings.es_index_dead_letters)
    assert set(letters) == {f"{settings.kafka_topic}|{partition}|5"}
    letter = next(iter(letters.values()))
    # Elasticsearch's own reason, with its cause.
    assert "immense term in field=\"source\"" in letter["reason"], letter["reason"][:2000]
    assert f"max length {LUCENE_MAX_TERM_BYTES}" in letter["reason"]
    assert letter["reasons"] == ["refused by Elasticsearch"]
    assert (letter["topic"], letter["partition"], letter["offset"]) == (settings.kafka_topic, partition, 5)
    assert (letter["refused_index"], letter["refused_id"]) == (settings.es_index_bars, immense.doc_id)
    assert json.loads(letter["raw"])["source"] == immense.source  # the refused document, whole
    # bars + dead letters = messages, and both queries committed up to the end of the topic.
    ends = topics.end_offsets(settings)
    assert len(bars) + len(letters) == sum(ends.values()) == 7
    assert pipeline.checkpoint_offsets("index-bars") == ends
    assert pipeline.checkpoint_offsets("predict-bars") == ends

    # The job is not wedged: the next bars are indexed by the next run.
    pipeline.publish(as_messages(GOOG[7:10]))
    pipeline.stream_index()
    assert pipeline.ids(settings.es_index_bars) == {bar.doc_id for bar in [*GOOG[:5], *GOOG[6:10]]}
    assert pipeline.count(settings.es_index_dead_letters) == 1
    ends = topics.end_offsets(settings)
    assert pipeline.checkpoint_offsets("index-bars") == ends and sum(ends.values()) == 10


def test_refused_predictions_and_dead_letters_are_dead_lettered_and_a_refused_minimal_one_fails_at_once(pipeline):
    """The prediction writer's path (write_documents with the job's options) on the real
    connector: a mapping conflict in a prediction document; a refused dead letter (kept as a
    minimal one); a dead-letter index refusing even that (the write fails, without a retry)."""
    settings = pipeline.settings
    es = pipeline.es()
    elastic.ensure_indices(es, settings)
    strict_index = f"{settings.es_index_dead_letters}-strict"
    es.indices.create(index=strict_index, mappings={"dynamic": "strict", "properties": {"doc_id": {"type": "keyword"}}})
    try:
        run = pipeline.run("./spark-submit.sh", "tests/integration/refused_writes.py", strict_index)
    finally:
        es.options(ignore_status=404).indices.delete(index=strict_index)
    outcome = json.loads(run.stdout.strip().splitlines()[-1])

    predictions = pipeline.documents(settings.es_index_predictions)
    assert set(predictions) == {"GOOG|1|day|1", "GOOG|1|day|3"}  # a keyword over the term limit is bounded
    assert len(predictions["GOOG|1|day|3"]["model"]) > KEYWORD_IGNORE_ABOVE
    letters = pipeline.documents(settings.es_index_dead_letters)
    refused = f"{settings.es_index_predictions}|GOOG|1|day|2"
    assert set(letters) == {refused, "a-topic|0|7"}
    prediction_letter = letters[refused]
    assert "failed to parse field [last_close] of type [double]" in prediction_letter["reason"]
    assert (prediction_letter["refused_index"], prediction_letter["refused_id"]) == (
        settings.es_index_predictions, "GOOG|1|day|2")
    assert json.loads(prediction_letter["raw"])["last_close"] == "not a number"
    assert "partition" not in prediction_letter  # not a Kafka record: no coordinates
    minimal = letters["a-topic|0|7"]
    assert minimal["reasons"] == ["refused by Elasticsearch", "dead letter refused by Elasticsearch"]
    assert "failed to parse field [offset] of type [long]" in minimal["reason"]
    assert "raw" not in minimal and minimal["refused_index"] == settings.es_index_dead_letters

    assert outcome["sleeps_after_dead_lettering"] == []  # no whole-write retry for refusals
    assert outcome["strict_write"] == "failed" and outcome["strict_error_names_the_handler"]
    assert outcome["sleeps"] == []  # not retried either: it would be refused again
