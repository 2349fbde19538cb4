"""The market-minute benchmark's bursts and arithmetic (not a timing test)."""

from __future__ import annotations

import argparse

import pytest

from bench import latency, market_minute


def test_a_burst_closes_one_bar_per_ticker_at_the_same_minute():
    series = latency.Series(tickers=5, start_ms=1_700_000_000_000, prefix="MKT")
    list(series.bars(10))  # two minutes of history each
    list(series.minute(2))  # the first two tickers close minute 3; the others skip it
    burst = list(series.minute(5))
    assert [b.ticker for b in burst] == [f"MKT{i:04d}" for i in range(5)]
    assert {b.timestamp for b in burst} == {1_700_000_000_000 + 3 * 60_000}
    assert series.steps == [4] * 5


def test_times_count_to_the_first_poll_that_saw_every_document():
    timeline = [(1.0, 100), (1.5, 140), (1.6, 130), (2.2, 150), (2.9, 160)]
    assert market_minute.first_time_at(timeline, 150) == 2.2
    assert market_minute.first_time_at(timeline, 161) is None
    burst = market_minute.burst_result(50, [1.0, 1.25], 2.2, 2.9, {"index-bars": 0.8})
    assert burst == {"tickers": 50, "publish_s": 0.25, "last_bar_searchable_s": 1.2,
                     "last_prediction_searchable_s": 1.9, "median_batch_s": {"index-bars": 0.8}}


def test_the_table_gives_the_median_and_the_spread_of_the_runs():
    runs = [market_minute.burst_result(1000, [0.0, 0.1], b, p, {"index-bars": 1.0, "predict-bars": 2.0})
            for b, p in ((1.0, 2.0), (3.0, 4.0), (2.0, 9.0))]
    row = market_minute.table(runs).splitlines()[2]
    assert row == ("| 1,000 | 3 | 0.10 (0.10-0.10) | 2.00 (1.00-3.00) | 4.00 (2.00-9.00) "
                   "| 1.0 / 2.0; 1.0 / 2.0; 1.0 / 2.0 |")


@pytest.mark.parametrize("text", ["0", "1000,20000", "", "inf", "1.5", "-1"])
def test_sizes_outside_one_to_ten_thousand_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        market_minute.positive_sizes(text)
