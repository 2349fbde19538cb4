from __future__ import annotations

import json

import pytest

from finstream.core import schema as S

BAR = S.Bar(ticker="AAPL", timespan="day", multiplier=1, timestamp=1_700_000_000_000, open=10.0, high=12.0,
            low=9.0, close=11.0, volume=100.0, vwap=10.5, transactions=7, source="test")


def test_message_is_json_with_exactly_the_schema_fields():
    message = json.loads(BAR.to_json())
    assert tuple(message) == S.BAR_FIELD_NAMES
    assert S.bar_from_dict(message) == BAR
    assert BAR.key == b"AAPL"


def test_producer_never_emits_nan():
    with pytest.raises(ValueError):
        S.Bar(**{**BAR.__dict__, "close": float("nan")}).to_json()


def test_doc_id_is_deterministic_and_names_the_bar():
    assert BAR.doc_id == "AAPL|1|day|1700000000000"
    assert S.bar_doc_id("AAPL", "day", 1, 1_700_000_000_000) == BAR.doc_id
    other_size = S.bar_doc_id("AAPL", "day", 5, 1_700_000_000_000)
    assert other_size != BAR.doc_id


def test_required_and_nullable_fields():
    assert set(S.REQUIRED_FIELDS) == set(S.BAR_FIELD_NAMES) - {"volume", "vwap", "transactions"}


def test_es_mapping_is_derived_from_the_schema():
    props = S.bar_mapping()["properties"]
    assert set(S.BAR_FIELD_NAMES) <= set(props)
    assert props["timestamp"] == {"type": "date", "format": "epoch_millis"}
    assert props["ticker"]["type"] == "keyword"
    assert all(props[name]["type"] == "double" for name in S.PRICE_FIELDS)
    assert S.bar_mapping()["dynamic"] == "strict"


def test_spark_schema_is_derived_from_the_schema():
    from finstream.ingest.spark_types import bar_schema, message_schema

    assert tuple(bar_schema().fieldNames()) == S.BAR_FIELD_NAMES
    assert dict((f.name, f.dataType.simpleString()) for f in bar_schema())["timestamp"] == "bigint"
    assert message_schema().fieldNames()[-1] == "_corrupt_record"


def keywords(properties: dict, path: str = "") -> dict[str, dict]:
    """Every keyword (and keyword sub-field) of a mapping's properties, by dotted path."""
    found = {}
    for name, spec in properties.items():
        if spec.get("type") == "keyword":
            found[path + name] = spec
        for nested in ("properties", "fields"):
            found.update(keywords(spec.get(nested, {}), f"{path}{name}."))
    return found


@pytest.mark.parametrize("mapping", [S.dead_letter_mapping, S.pipeline_metrics_mapping, S.model_metrics_mapping,
                                     S.prediction_mapping])
def test_every_keyword_of_our_own_documents_stays_under_lucenes_term_limit(mapping):
    # ignore_above counts characters; a character is at most 4 UTF-8 bytes; Lucene's limit is 32 766 bytes.
    found = keywords(mapping()["properties"])
    assert found and all(spec.get("ignore_above", 10**9) * 4 <= 32_766 for spec in found.values()), found


def test_a_bars_source_is_not_bounded_so_elasticsearch_refuses_an_immense_one():
    assert S.bar_mapping()["properties"]["source"] == {"type": "keyword"}


def test_the_dead_letter_of_a_refused_document_names_where_it_was_refused():
    assert {"refused_index", "refused_id"} <= set(S.dead_letter_mapping()["properties"])
