"""What the market-data API really answers, turned into bars (pure functions, no server): an
integral value of an integer field is an int however it is spelled; each asset class's
aggregate shape; the window a request's results must lie in."""

from __future__ import annotations

import json
import math

import pytest

from finstream.core.schema import as_integer
from producer.market_data import bar_from_aggregate, window_ms, within

DAY = 86_400_000


@pytest.mark.parametrize("value, expected", [
    (1412331, 1412331),
    (1412331.0, 1412331),
    (json.loads("1.412331e+06"), 1412331),    # the API's spelling of a daily SPY trade count
    (json.loads("1.105872e+06"), 1105872),
    (json.loads("1.251006e+06"), 1251006),
    (json.loads("1.67822064e+12"), 1678220640000),  # a timestamp spelled as a float
    (-3.0, -3),
    (0.0, 0),
    (float(2**53), 2**53),
    (-float(2**53), -2**53),
])
def test_an_integral_value_is_an_int_whatever_its_spelling(value, expected):
    got = as_integer(value)
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value", [1412331.5, 0.5, float(2**53 + 2), -float(2**53 + 2), math.inf, -math.inf, None,
                                   "1412331", True, False, [1]])
def test_anything_else_is_unchanged(value):
    got = as_integer(value)
    assert got is value or (got == value and type(got) is type(value))


def test_nan_is_unchanged():
    assert math.isnan(as_integer(math.nan))


# -- each asset class's aggregate, as the API answers it -------------------------------------------
SHAPES = {
    # stocks: every field; a float count and volume as the API may spell them
    "stocks": ("AAPL", {"v": 7.4123456e+07, "vw": 185.1, "o": 184.2, "c": 185.6, "h": 186.0, "l": 183.9,
                        "t": 1704171600000, "n": 1.412331e+06},
               dict(volume=74123456.0, vwap=185.1, transactions=1412331)),
    # an OTC stock: `otc: true` (left off when false) is not part of a bar
    "otc": ("GBTC", {"v": 100, "vw": 10.5, "o": 10.0, "c": 11.0, "h": 11.0, "l": 10.0, "t": 1704171600000, "n": 3,
                     "otc": True}, dict(volume=100, vwap=10.5, transactions=3)),
    # older stock bars come without vw and n
    "no vw, n": ("TJX", {"v": 206, "o": 14.49, "c": 14.49, "h": 14.49, "l": 14.49, "t": 1486132200000},
                 dict(volume=206, vwap=None, transactions=None)),
    # an option contract: the stocks shape
    "options": ("O:RDFN211119C00025000", {"c": 26.2, "h": 26.2, "l": 26.2, "n": 1, "o": 26.2, "t": 1632369600000,
                                          "v": 2, "vw": 26.2}, dict(volume=2, vwap=26.2, transactions=1)),
    # forex: the count and volume are quote updates
    "forex": ("C:EURUSD", {"c": 1.17721, "h": 1.18305, "l": 1.1756, "n": 125329, "o": 1.17921, "t": 1626912000000,
                           "v": 125329, "vw": 1.1789}, dict(volume=125329, vwap=1.1789, transactions=125329)),
    # crypto: fractional volume
    "crypto": ("X:BTCUSD", {"c": 10094.75, "h": 10429.26, "l": 9490, "n": 1, "o": 9557.9, "t": 1590984000000,
                            "v": 303067.6562332156, "vw": 9874.5529},
               dict(volume=303067.6562332156, vwap=9874.5529, transactions=1)),
    # an index: values only, no volume, VWAP or trade count
    "indices": ("I:NDX", {"c": 12264.64178551227, "h": 12340.44936267155, "l": 11970.34221717375,
                          "o": 12230.83658266843, "t": 1678338000000}, dict(volume=None, vwap=None, transactions=None)),
    # a dotted class share
    "dotted": ("BRK.A", {"v": 12, "vw": 5.1e5, "o": 5.1e5, "c": 5.1e5, "h": 5.1e5, "l": 5.1e5, "t": 1704171600000,
                         "n": 9}, dict(volume=12, vwap=510000.0, transactions=9)),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_each_asset_class_answer_is_a_bar(shape):
    ticker, result, expected = SHAPES[shape]
    bar = bar_from_aggregate(ticker, "day", 1, result)
    assert (bar.ticker, bar.timestamp, bar.open, bar.close, bar.source) == \
        (ticker, as_integer(result["t"]), result["o"], result["c"], "polygon")
    assert {name: getattr(bar, name) for name in expected} == expected
    message = json.loads(bar.to_json())
    assert "otc" not in message and type(message["timestamp"]) is int
    if expected["transactions"] is not None:
        assert type(message["transactions"]) is int


def test_a_float_timestamp_and_a_fractional_count():
    bar = bar_from_aggregate("SPY", "day", 1.0, {"o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "t": 1.6783632e+12,
                                                  "n": 1412331.5})
    assert bar.timestamp == 1678363200000 and type(bar.timestamp) is int and type(bar.multiplier) is int
    assert bar.transactions == 1412331.5 and type(bar.transactions) is float  # dead-lettered by the stream job


# -- the window a request's results must lie in -------------------------------------------------
def test_a_daily_window_is_its_whole_utc_dates():
    first, last = window_ms("day", 1, "2023-03-09", "2023-03-15")
    assert (first, last) == (1678320000000, 1678924800000 - 1)
    assert within({"t": 1678338000000}, first, last)           # 2023-03-09 05:00Z: New York's midnight
    assert not within({"t": 1678320000000 - 1}, first, last)
    assert not within({"t": 1678924800000}, first, last)


def test_an_intraday_window_is_its_milliseconds():
    first, last = window_ms("minute", 1, "1598486400000", "1598572799999")  # 2020-08-27, whole UTC day
    assert within({"t": 1598558340000}, first, last)
    assert not within({"t": 1486132200000}, first, last)       # 2017-02-03: another symbol's bar
    assert within({"t": json.loads("1.59855834e+12")}, first, last)


def test_a_bar_longer_than_a_day_or_a_multiple_may_start_before_from():
    first, _ = window_ms("week", 1, "2024-01-03", "2024-01-31")  # a Wednesday: its week began on Sunday
    assert within({"t": 1703998800000}, first, 1706745599999)    # Sunday 2023-12-31, New York's midnight
    first, _ = window_ms("minute", 5, "1598486460000", "1598572799999")
    assert first == 1598486460000 - 5 * 60_000


def test_a_result_without_a_numeric_start_is_kept_for_the_stream_job_to_refuse():
    assert within({"o": 1}, 0, 1) and within({"t": "yesterday"}, 0, 1) and within({"t": None}, 0, 1)
