from __future__ import annotations

import json

import pytest

from finstream import schema as S

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
    assert set(S.REQUIRED_FIELDS) == set(S.BAR_FIELD_NAMES) - {"vwap", "transactions"}


def test_es_mapping_is_derived_from_the_schema():
    props = S.bar_mapping()["properties"]
    assert set(S.BAR_FIELD_NAMES) <= set(props)
    assert props["timestamp"] == {"type": "date", "format": "epoch_millis"}
    assert props["ticker"]["type"] == "keyword"
    assert all(props[name]["type"] == "double" for name in S.PRICE_FIELDS)
    assert S.bar_mapping()["dynamic"] == "strict"


def test_spark_schema_is_derived_from_the_schema():
    from finstream.spark.schema import bar_schema, message_schema

    assert tuple(bar_schema().fieldNames()) == S.BAR_FIELD_NAMES
    assert dict((f.name, f.dataType.simpleString()) for f in bar_schema())["timestamp"] == "bigint"
    assert message_schema().fieldNames()[-1] == "_corrupt_record"
