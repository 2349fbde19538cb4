"""The WebSocket feed's mapping from the API's channels and events to tickers and bars: a bar
pushed over the socket is the bar REST serves for the same minute (same id, fields, source)."""

from __future__ import annotations

import dataclasses

import pytest

from producer.market_data import bar_from_aggregate
from producer.websocket_feed import bar_from_event, channel, ticker_of
from tests.fakes.massive_ws import aggregate_event

REST_BAR = {"o": 101.5, "h": 103.0, "l": 100.25, "c": 102.0, "v": 1234.5, "vw": 101.9, "t": 1_764_167_400_000, "n": 17}


@pytest.mark.parametrize("ticker, expected", [("AAPL", "AM.AAPL"), ("BRK.A", "AM.BRK.A"),
                                               ("C:EURUSD", "CA.EUR/USD"), ("X:BTCUSD", "XA.BTC-USD"),
                                               ("X:DOGEEUR", "XA.DOGE-EUR")])
def test_channel_of_each_market(ticker, expected):
    assert channel(ticker) == expected


@pytest.mark.parametrize("ticker", ["AAPL", "C:EURUSD", "X:BTCUSD"])
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
