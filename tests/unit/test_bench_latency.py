"""The latency benchmark's arithmetic and generated bars (not a timing test)."""

from __future__ import annotations

import pytest

from bench import latency
from finstream.core import schema as S


@pytest.fixture(scope="module")
def bench():
    return latency


def test_latency_is_time_until_the_index_holds_that_many_documents(bench):
    sends = [10.0, 11.0, 12.0, 13.0]
    # base 5 documents before the phase; one poll saw a stale (lower) count
    timeline = [(10.5, 5), (11.2, 6), (11.9, 5), (12.4, 8), (14.0, 9)]
    assert bench.latencies(sends, timeline, base=5) == pytest.approx([1.2, 1.4, 0.4, 1.0])


def test_unseen_documents_are_left_out(bench):
    assert bench.latencies([1.0, 2.0], [(1.5, 1)], base=0) == [0.5]


def test_percentiles_are_nearest_rank(bench):
    values = [float(v) for v in range(1, 101)]
    assert (bench.percentile(values, 50), bench.percentile(values, 99), bench.percentile(values, 100)) == (50, 99, 100)
    assert bench.summary([]) == {"n": 0}


def test_generated_bars_are_valid_and_continue_each_series(bench):
    series = bench.Series(tickers=3, start_ms=1_700_000_000_000)
    first, second = list(series.bars(6)), list(series.bars(3))
    for bar in first + second:
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert bar.timespan in S.TIMESPANS and bar.volume > 0
    by_ticker = {}
    for bar in first + second:
        by_ticker.setdefault(bar.ticker, []).append(bar)
    for bars in by_ticker.values():
        assert [b.timestamp for b in bars] == [1_700_000_000_000 + i * 60_000 for i in range(3)]
        assert all(b.open == a.close for a, b in zip(bars, bars[1:], strict=False))  # each bar opens at the last close


def test_waiting_ends_as_soon_as_the_stream_job_has_exited(bench):
    import subprocess
    import sys
    import time

    job = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    job.wait(timeout=30)
    started = time.monotonic()
    with pytest.raises(SystemExit, match=r"^the stream job exited \(code 3\) while waiting for the bars \(log: x\)$"):
        bench.wait_for(lambda: False, 600, "the bars (log: x)", job)
    assert time.monotonic() - started < 5


def test_waiting_without_a_job_times_out_with_what_it_waited_for(bench):
    with pytest.raises(SystemExit, match=r"^timed out after 0 s waiting for the bars$"):
        bench.wait_for(lambda: False, 0.1, "the bars")
