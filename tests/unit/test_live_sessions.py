"""Market sessions of the live feed, in New York time (daylight saving included): US equities
from the NYSE calendar (a holiday, a half day), forex and crypto by their own weeks."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from producer.sessions import NEW_YORK, is_open, market, next_open, should_poll


def ny(*args) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


@pytest.mark.parametrize("ticker, kind", [("AAPL", "us_equity"), ("BRK.A", "us_equity"), ("X:BTCUSD", "crypto"),
                                          ("C:EURUSD", "forex"), ("I:SPX", "index"), ("I:NDX", "index"),
                                          ("O:SPY251219C00650000", "options")])
def test_market_of_a_ticker(ticker, kind):
    assert market(ticker) == kind


@pytest.mark.parametrize("at, equity, forex", [
    (ny(2026, 11, 20, 9, 29), False, True),    # Friday before the bell
    (ny(2026, 11, 20, 9, 30), True, True),
    (ny(2026, 11, 20, 15, 59), True, True),
    (ny(2026, 11, 20, 16, 0), False, True),
    (ny(2026, 11, 20, 17, 0), False, False),   # forex shuts Friday 17:00
    (ny(2026, 11, 22, 16, 59), False, False),  # Sunday
    (ny(2026, 11, 22, 17, 0), False, True),    # forex reopens Sunday 17:00
    (ny(2026, 7, 1, 9, 30), True, True),       # summer time: 13:30 UTC
    (ny(2026, 11, 26, 11, 0), False, True),    # Thanksgiving: the exchange is shut all day
    (ny(2026, 11, 27, 12, 59), True, True),    # the day after: a half day ...
    (ny(2026, 11, 27, 13, 0), False, True),    # ... that closes at 13:00
    (ny(2026, 12, 25, 11, 0), False, True),    # Christmas, a Friday: no session
])
def test_sessions(at, equity, forex):
    assert is_open("us_equity", at) is equity
    assert is_open("index", at) is equity and is_open("options", at) is equity  # the NYSE calendar's hours
    assert is_open("forex", at) is forex
    assert is_open("crypto", at)


def test_polled_after_the_bell_for_the_closing_bar_then_not():
    after_close = timedelta(minutes=1, seconds=60)
    assert should_poll("us_equity", ny(2026, 11, 20, 16, 1), after_close)
    assert not should_poll("us_equity", ny(2026, 11, 20, 16, 3), after_close)
    assert should_poll("us_equity", ny(2026, 11, 27, 13, 1), after_close)  # a half day's closing bar
    assert not should_poll("us_equity", ny(2026, 11, 27, 13, 3), after_close)


def test_next_open_skips_the_weekend_and_the_holiday():
    assert next_open("us_equity", ny(2026, 11, 20, 18, 2)) == ny(2026, 11, 23, 9, 30)
    assert next_open("us_equity", ny(2026, 11, 25, 16, 5)) == ny(2026, 11, 27, 9, 30)  # over Thanksgiving
    assert next_open("forex", ny(2026, 11, 21, 12, 0)) == ny(2026, 11, 22, 17, 0)
    now = ny(2026, 11, 21, 3, 7, 12)
    assert next_open("crypto", now) == now


def test_an_index_follows_the_equity_calendar():
    assert next_open("index", ny(2026, 11, 25, 16, 5)) == ny(2026, 11, 27, 9, 30)  # over Thanksgiving
    assert next_open("options", ny(2026, 11, 20, 18, 2)) == ny(2026, 11, 23, 9, 30)
    assert should_poll("index", ny(2026, 11, 27, 13, 1), timedelta(minutes=2))  # the half day's closing bar
    assert not should_poll("index", ny(2026, 11, 26, 11, 0), timedelta(minutes=2))
