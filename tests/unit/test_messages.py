"""One record, one message, one verdict: the producer's Python reader (finstream.ingest.messages) and
the stream job (finstream.ingest.validation, which the training replay shares) give every message of
the catalogue the same reasons, in the same order."""

from __future__ import annotations

from datetime import datetime

import pytest
from pyspark.sql import functions as F

from finstream.ingest import messages
from finstream.ingest import validation as B
from tests.catalogue import ACCEPTED, NOW_MS, REFUSED, message

CASES = {**{name: value for name, value in ACCEPTED.items()}, **{name: value for name, (value, _) in REFUSED.items()},
         "null value": None}


@pytest.fixture(scope="module")
def spark_reasons(spark):
    names = list(CASES)
    rows = [(b"K", CASES[name], "topic", 0, i, datetime(2024, 1, 1)) for i, name in enumerate(names)]
    records = spark.createDataFrame(
        rows, "key binary, value binary, topic string, partition int, offset long, timestamp timestamp")
    checked = B.checked_messages(records, now_ms=F.lit(NOW_MS)).select("offset", "reasons").collect()
    return {names[row.offset]: list(row.reasons) for row in checked}


@pytest.mark.parametrize("name", CASES)
def test_python_and_spark_give_the_same_reasons(spark_reasons, name):
    assert messages.check(CASES[name], now_ms=NOW_MS)[1] == spark_reasons[name]


@pytest.mark.parametrize("name", REFUSED)
def test_refused_with_the_catalogue_reason(name):
    value, reason = REFUSED[name]
    assert reason in messages.check(value, now_ms=NOW_MS)[1]


def test_a_trade_count_in_exponent_notation_is_an_integer():
    value = message().replace(b'"transactions": 5', b'"transactions": 1.412331e+06')
    bar = messages.valid_bar(value, now_ms=NOW_MS)
    assert bar["transactions"] == 1412331 and isinstance(bar["transactions"], int)


def test_the_second_bar_of_a_record_is_not_read_as_valid():
    assert messages.valid_bar(message() + b"\n" + message(timestamp=1_717_459_200_000), now_ms=NOW_MS) is None
