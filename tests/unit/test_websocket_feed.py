"""The WebSocket feed's mapping from the API's channels and events to tickers and bars: a bar
pushed over the socket is the bar REST serves for the same minute (same id, fields, source)."""

from __future__ import annotations

import dataclasses

import pytest

from producer.market_data import bar_from_aggregate
from producer.websocket_feed import (
    EVENT_MAX_AGE_MS,
    INVALID,
    OUTSIDE,
    PUBLISH,
    REPEAT,
    Minutes,
    bar_from_event,
    channel,
    cluster,
    minute_of,
    ticker_of,
)
from tests.fakes.massive_ws import aggregate_event

REST_BAR = {"o": 101.5, "h": 103.0, "l": 100.25, "c": 102.0, "v": 1234.5, "vw": 101.9, "t": 1_764_167_400_000, "n": 17}


@pytest.mark.parametrize("ticker, expected, where", [
    ("AAPL", "AM.AAPL", "stocks"), ("BRK.A", "AM.BRK.A", "stocks"), ("I:SPX", "AM.I:SPX", "indices"),
    ("I:NDX", "AM.I:NDX", "indices"), ("O:SPY251219C00650000", "AM.O:SPY251219C00650000", "options"),
    ("C:EURUSD", "CA.EUR/USD", "forex"), ("X:BTCUSD", "XA.BTC-USD", "crypto"), ("X:DOGEEUR", "XA.DOGE-EUR", "crypto")])
def test_channel_and_cluster_of_each_market(ticker, expected, where):
    assert channel(ticker) == expected and cluster(ticker) == where


@pytest.mark.parametrize("ticker", ["AAPL", "C:EURUSD", "X:BTCUSD", "O:SPY251219C00650000"])
def test_an_event_is_the_rest_bar_of_its_minute(ticker):
    event = aggregate_event(ticker, REST_BAR)
    assert ticker_of(event) == ticker
    pushed, polled = bar_from_event(ticker, event), bar_from_aggregate(ticker, "minute", 1, REST_BAR)
    assert pushed.doc_id == polled.doc_id and pushed.key == polled.key
    # Every field equal but the trade count, which the socket's event does not carry.
    assert dataclasses.replace(polled, transactions=None) == pushed


@pytest.mark.parametrize("event", [{"ev": "AM"}, {"ev": "AM", "sym": 7}, {"ev": "CA", "pair": None},
                                   {"ev": "T", "sym": "AAPL"}])
def test_an_event_naming_no_ticker(event):
    assert ticker_of(event) is None


def test_an_index_event_is_the_rest_index_bar_of_its_minute():
    rest = {"o": 12230.83658266843, "h": 12240.1, "l": 12229.0, "c": 12235.5, "t": 1_764_167_400_000}  # o h l c t
    event = aggregate_event("I:NDX", rest)
    assert event == {"ev": "AM", "sym": "I:NDX", "op": rest["o"], "o": rest["o"], "c": rest["c"], "h": rest["h"],
                     "l": rest["l"], "s": rest["t"], "e": rest["t"] + 60_000}  # the docs' shape: no v, vw
    assert ticker_of(event) == "I:NDX"
    pushed, polled = bar_from_event("I:NDX", event), bar_from_aggregate("I:NDX", "minute", 1, rest)
    assert pushed == polled and (pushed.volume, pushed.vwap, pushed.transactions) == (None, None, None)


@pytest.mark.parametrize("start, minute", [(1_764_167_400_000, 1_764_167_400_000),
                                           (1_764_167_435_805, 1_764_167_400_000),  # the docs' index example: s = e
                                           (1.7641674e12, 1_764_167_400_000),       # a float spelling
                                           ("yesterday", None), (None, None), (True, None), (1.7641674e12 + 0.5, None)])
def test_the_minute_of_an_event(start, minute):
    assert minute_of({"s": start}) == minute


NOW = 1_764_167_400_000  # 2025-11-26T14:30Z
M = 60_000


def test_a_minute_is_published_once_late_or_out_of_order_included():
    minutes = Minutes(floor=NOW - 30 * M)  # the ticker's last bar in the topic when the feed started
    assert minutes.verdict(NOW - 30 * M, NOW) == REPEAT  # in the topic already
    assert minutes.verdict(NOW - 40 * M, NOW) == REPEAT
    for m in (5, 3):  # minute -5 first, then -3: out of order
        assert minutes.verdict(NOW - m * M, NOW) == PUBLISH
        minutes.add(NOW - m * M, NOW)
    assert minutes.verdict(NOW - 4 * M, NOW) == PUBLISH  # late: after -3, not yet published
    minutes.add(NOW - 4 * M, NOW)
    assert [minutes.verdict(NOW - m * M, NOW) for m in (5, 4, 3)] == [REPEAT] * 3  # again: not published twice


@pytest.mark.parametrize("minute", [1486132200000,                       # 2017-02-03, another symbol's bar
                                    NOW - EVENT_MAX_AGE_MS - M,          # older than an hour
                                    NOW + 2 * M])                         # in the future
def test_a_minute_outside_the_window_is_refused(minute):
    assert Minutes().verdict(minute, NOW) == OUTSIDE
    assert Minutes(floor=NOW - 10 * M).verdict(minute, NOW) == OUTSIDE


def test_the_edges_of_the_window_and_an_invalid_minute():
    assert Minutes().verdict(NOW - EVENT_MAX_AGE_MS, NOW) == PUBLISH
    assert Minutes().verdict(NOW + M, NOW) == PUBLISH  # a minute of clock skew
    assert Minutes().verdict(None, NOW) == INVALID


def test_the_published_minutes_kept_stay_bounded():
    minutes = Minutes()
    for m in range(24 * 60):  # a day of minutes published (a REST repair from a day back)
        minutes.add(NOW - m * M, NOW)
    assert len(minutes.sent) <= 2 * EVENT_MAX_AGE_MS // M + 1
    assert minutes.verdict(NOW - 5 * M, NOW) == REPEAT
