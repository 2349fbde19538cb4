"""Validation and document building on tiny DataFrames: every message lands in exactly one
of bars / dead letters, with a reason when refused."""

from __future__ import annotations

from datetime import datetime

import pytest
from pyspark.sql import functions as F

from finstream.core import schema as S
from finstream.ingest import validation as B
from tests.catalogue import ACCEPTED, NOW_MS, REFUSED, message


def records(spark, values: list[bytes | None]):
    rows = [(b"K", v, "topic", 0, i, datetime(2024, 1, 1)) for i, v in enumerate(values)]
    return spark.createDataFrame(
        rows, "key binary, value binary, topic string, partition int, offset long, timestamp timestamp")


def check(spark, values):
    return B.checked_messages(records(spark, values), now_ms=F.lit(NOW_MS))


def reasons_of(spark, value: bytes | None) -> list[str]:
    return check(spark, [value]).collect()[0].reasons


@pytest.fixture(scope="module")
def catalogue_reasons(spark) -> dict[str, list[str]]:
    """Every catalogue message checked in one Spark job: name -> reasons."""
    names = [*ACCEPTED, *REFUSED]
    values = [ACCEPTED[n] if n in ACCEPTED else REFUSED[n][0] for n in names]
    return {names[row.offset]: list(row.reasons) for row in check(spark, values).select("offset", "reasons").collect()}


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted(catalogue_reasons, name):
    assert catalogue_reasons[name] == []


@pytest.mark.parametrize("name", REFUSED)
def test_refused_with_a_specific_reason(catalogue_reasons, name):
    assert REFUSED[name][1] in catalogue_reasons[name]


def test_null_value_is_an_empty_message(spark):
    assert reasons_of(spark, None) == ["empty message"]


def test_every_message_lands_in_exactly_one_output(spark):
    values = [*ACCEPTED.values(), *(v for v, _ in REFUSED.values()), None]
    checked = check(spark, values)
    bars, dead = B.valid_bars(checked), B.dead_letters(checked)
    assert bars.count() == len(ACCEPTED)
    assert dead.count() == len(REFUSED) + 1
    assert bars.count() + dead.count() == len(values)
    offsets = {r.kafka_offset for r in bars.collect()} | {r.offset for r in dead.collect()}
    assert offsets == set(range(len(values)))


def test_bar_documents_carry_id_and_provenance(spark):
    row = B.valid_bars(check(spark, [message()])).collect()[0]
    assert row.doc_id == S.bar_doc_id("AAPL", "day", 1, 1_700_000_000_000)
    assert (row.kafka_partition, row.kafka_offset) == (0, 0)
    assert row.published_at == 1_704_067_200_000
    assert set(row.asDict()) == set(S.BAR_FIELD_NAMES) | set(S.BAR_DOCUMENT_EXTRA)


def test_dead_letters_keep_the_raw_value_reason_and_coordinates(spark):
    dead = B.dead_letters(check(spark, [b"hello", b"\xff\xfe"])).orderBy("offset").collect()
    assert dead[0].doc_id == "topic|0|0" and dead[0].raw == "hello" and dead[0].reason == "not a JSON object"
    assert dead[0].raw_base64 is None
    assert dead[1].raw_base64 == "//4="  # the exact bytes survive
    assert set(dead[0].asDict()) == set(S.DEAD_LETTER_MAPPING)


def test_spark_and_python_doc_ids_agree(spark):
    rows = [message(ticker=t, multiplier=m, timestamp=ts)
            for t, m, ts in [("AAPL", 1, 1_600_000_000_000), ("C:EURUSD", 5, 1_600_000_060_000)]]
    got = {r.doc_id for r in B.valid_bars(check(spark, rows)).collect()}
    assert got == {S.bar_doc_id("AAPL", "day", 1, 1_600_000_000_000),
                   S.bar_doc_id("C:EURUSD", "day", 5, 1_600_000_060_000)}


def test_latest_copy_of_a_bar_wins(spark):
    bars = B.valid_bars(check(spark, [message(close=11.0), message(close=11.5), message(timestamp=1_700_000_060_000)]))
    latest = {r.doc_id: r.close for r in B.latest_per_doc_id(bars).collect()}
    assert latest == {"AAPL|1|day|1700000000000": 11.5, "AAPL|1|day|1700000060000": 11.0}


def test_one_document_per_message_routed_to_its_index_with_only_its_own_fields(spark):
    """index_documents is what the stream job writes: the same bar and dead-letter documents
    as valid_bars and dead_letters, each with the index it goes to."""
    values = [ACCEPTED[name] for name in ACCEPTED] + [REFUSED[name][0] for name in REFUSED]
    checked = check(spark, values)
    at = F.lit(NOW_MS)
    documents = B.index_documents(checked, "bars-x", "dead-x", indexed_at=at).collect()
    assert len(documents) == len(values)

    def fields(row, drop=(B.TARGET_INDEX,)):
        return {k: v for k, v in row.asDict().items() if v is not None and k not in drop}

    routed = {"bars-x": [fields(d) for d in documents if d[B.TARGET_INDEX] == "bars-x"],
              "dead-x": [fields(d) for d in documents if d[B.TARGET_INDEX] == "dead-x"]}
    expected = {"bars-x": [fields(r) for r in B.valid_bars(checked, at).collect()],
                "dead-x": [fields(r) for r in B.dead_letters(checked, at).collect()]}
    for index in routed:
        assert sorted(routed[index], key=lambda d: d["doc_id"]) == sorted(expected[index], key=lambda d: d["doc_id"])
    assert len(routed["bars-x"]) == len(ACCEPTED) and len(routed["dead-x"]) == len(REFUSED)


def test_integers_spelled_as_floats_are_indexed_as_integers(spark):
    value = message(ticker="SPY", timestamp=1.7e12).replace(b'"transactions": 5', b'"transactions": 1.412331e+06')
    bars = B.valid_bars(check(spark, [value]))
    types = dict(bars.dtypes)
    assert (types["transactions"], types["timestamp"], types["multiplier"]) == ("bigint", "bigint", "int")
    row = bars.collect()[0]
    assert (row.transactions, row.timestamp) == (1412331, 1_700_000_000_000)


def test_an_index_bar_has_no_volume(spark):
    row = B.valid_bars(check(spark, [message(ticker="I:NDX", volume=..., vwap=..., transactions=...)])).collect()[0]
    assert (row.ticker, row.volume, row.vwap, row.transactions) == ("I:NDX", None, None, None)
