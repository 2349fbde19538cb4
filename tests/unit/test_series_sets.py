"""Series sets: keys, coverage, the set a run trains on, and the most specific champion rule."""

from __future__ import annotations

import pytest

from finstream.core.series_sets import SeriesSet, asset_class, most_specific


def test_asset_classes_come_from_the_tickers_prefix():
    assert [asset_class(t) for t in ("GOOG", "BRK.A", "C:EURUSD", "X:BTCUSD", "I:SPX", "O:AAPL250117C00150000")] == [
        "stocks", "stocks", "fx", "crypto", "indices", "options"]


@pytest.mark.parametrize("series_set, key", [
    (SeriesSet("hour", 1), "hour1"),
    (SeriesSet("hour", 1, "fx"), "hour1-fx"),
    (SeriesSet("day", 1, tickers=frozenset({"GOOG", "AAPL"})), "day1-t-AAPL+GOOG"),
    (SeriesSet("minute", 5, tickers=frozenset({"X:BTCUSD", "BRK.A"})), "minute5-t-BRK.A+X_BTCUSD"),
])
def test_a_sets_key_names_it_and_parses_back(series_set, key):
    assert series_set.key == key
    assert SeriesSet.parse(key) == series_set
    assert SeriesSet.from_dict(series_set.as_dict()) == series_set


@pytest.mark.parametrize("key", ["", "hour", "1hour", "hour1-", "hour1-bonds", "fortnight1", "hour0", "day1-t-"])
def test_a_bad_key_is_refused_with_what_a_key_looks_like(key):
    with pytest.raises(ValueError, match="series set|timespan|asset class|multiplier"):
        SeriesSet.parse(key)


def test_coverage():
    fx = SeriesSet("hour", 1, "fx")
    assert fx.covers("C:EURUSD", "hour", 1)
    assert not fx.covers("C:EURUSD", "hour", 4) and not fx.covers("C:EURUSD", "day", 1)
    assert not fx.covers("GOOG", "hour", 1)
    assert SeriesSet("hour", 1).covers("GOOG", "hour", 1)
    listed = SeriesSet("day", 1, tickers=frozenset({"GOOG"}))
    assert listed.covers("GOOG", "day", 1) and not listed.covers("AAPL", "day", 1)


def test_a_run_trains_for_its_listed_tickers_else_their_common_class_else_the_timespan():
    assert SeriesSet.trained_on("hour", 1, ["C:EURUSD", "C:GBPUSD"], listed=False) == SeriesSet("hour", 1, "fx")
    assert SeriesSet.trained_on("day", 1, ["GOOG"], listed=True) == SeriesSet("day", 1, tickers=frozenset({"GOOG"}))
    assert SeriesSet.trained_on("day", 1, ["GOOG", "X:BTCUSD"], listed=False) == SeriesSet("day", 1)
    # a registry made before sets: the version's metadata has no asset class
    assert SeriesSet.from_dict({"timespan": "day", "multiplier": 1, "tickers": []}) == SeriesSet("day", 1)


def test_the_most_specific_covering_set_wins_with_overlapping_sets():
    champions = [(SeriesSet("day", 1), "day"), (SeriesSet("day", 1, "stocks"), "stocks"),
                 (SeriesSet("day", 1, tickers=frozenset({"GOOG", "AAPL"})), "goog+aapl"),
                 (SeriesSet("day", 1, tickers=frozenset({"AAPL", "MSFT"})), "aapl+msft"),
                 (SeriesSet("hour", 1, "fx"), "fx")]
    assert most_specific(champions, "GOOG", "day", 1) == "goog+aapl"  # tickers beat a class
    assert most_specific(champions, "MSFT", "day", 1) == "aapl+msft"
    assert most_specific(champions, "AAPL", "day", 1) == "goog+aapl"  # two lists: the first key, stably
    assert most_specific(champions, "NVDA", "day", 1) == "stocks"  # a class beats a bare timespan
    assert most_specific(champions, "X:BTCUSD", "day", 1) == "day"
    assert most_specific(champions, "C:EURUSD", "hour", 1) == "fx"
    assert most_specific(champions, "GOOG", "hour", 1) is None  # no set covers it: the baseline serves
    assert most_specific(list(reversed(champions)), "AAPL", "day", 1) == "goog+aapl"  # order does not matter
