from __future__ import annotations

from datetime import datetime, timezone

from producer import samples


def test_every_dataset_loads_real_distinct_bars():
    for name, dataset in samples.DATASETS.items():
        bars = samples.load_bars(name)
        assert len(bars) > 100
        assert len({b.doc_id for b in bars}) == len(bars)
        assert all(b.ticker == dataset.ticker and b.timespan == dataset.timespan for b in bars)
        assert [b.timestamp for b in bars] == sorted(b.timestamp for b in bars)


def test_daily_bars_start_at_midnight_new_york_like_polygon():
    first = samples.load_bars("goog-daily")[0]
    assert datetime.fromtimestamp(first.timestamp / 1000, timezone.utc) == datetime(2004, 8, 19, 4, tzinfo=timezone.utc)
    assert (first.open, first.close) == (100.0, 100.34)
