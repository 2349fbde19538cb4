"""A document Elasticsearch refuses for its content (an immense term, a mapping conflict) does
not wedge the stream job: ES-Hadoop's bulk error handler (stack/es-dead-letters) turns it into a
dead letter with Elasticsearch's reason, in the same bulk flow, and the batch commits. A bar's
case runs through the whole stream job in test_field_input.py; here, the prediction writer's."""

from __future__ import annotations

import json

from finstream.core.schema import KEYWORD_IGNORE_ABOVE
from finstream.stores import elastic
from producer import samples

GOOG = samples.load_bars("goog-daily")[:10]
LUCENE_MAX_TERM_BYTES = 32_766


def as_messages(bars) -> list[tuple[bytes, bytes]]:
    return [(bar.key, bar.to_json()) for bar in bars]


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
