"""Real historical bars shipped inside an installed package (backtesting), for the demo
and the tests: no key, no network."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from finstream.core.schema import Bar


@dataclass(frozen=True)
class Dataset:
    name: str
    file: str
    ticker: str
    timespan: str
    timezone: str  # the zone the file's timestamps are in
    description: str


DATASETS = {
    d.name: d
    for d in (
        Dataset("goog-daily", "GOOG.csv", "GOOG", "day", "America/New_York", "GOOG daily bars, 2004-08 to 2013-03"),
        Dataset("eurusd-hourly", "EURUSD.csv", "C:EURUSD", "hour", "UTC", "EUR/USD hourly bars, 2017-04 to 2018-02"),
        Dataset("btcusd-monthly", "BTCUSD.csv", "X:BTCUSD", "month", "UTC", "BTC/USD monthly bars, 2012 to 2024"),
    )
}
ALL = "all"


def _data_dir() -> Path:
    # find_spec does not import backtesting (which would pull in its plotting stack).
    spec = importlib.util.find_spec("backtesting")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the sample data needs the 'backtesting' package: pip install backtesting")
    return Path(next(iter(spec.submodule_search_locations))) / "test"


def dataset_names(name: str) -> list[str]:
    if name == ALL:
        return list(DATASETS)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join([*DATASETS, ALL])}")
    return [name]


def load_bars(name: str) -> list[Bar]:
    """The dataset's bars, oldest first, stamped like Polygon: bar start in epoch ms UTC
    (daily bars start at midnight New York time; monthly bars on the 1st)."""
    dataset = DATASETS[name]
    frame = pd.read_csv(_data_dir() / dataset.file, index_col=0, parse_dates=True)
    starts = frame.index
    if dataset.timespan == "month":
        starts = starts.to_period("M").to_timestamp()
    starts = starts.tz_localize(dataset.timezone).tz_convert("UTC")
    millis = starts.asi8 // 1_000_000
    return [
        Bar(ticker=dataset.ticker, timespan=dataset.timespan, multiplier=1, timestamp=int(ts),
            open=float(row.Open), high=float(row.High), low=float(row.Low), close=float(row.Close),
            volume=float(row.Volume), vwap=None, transactions=None, source=f"replay:{name}")
        for ts, row in zip(millis, frame.itertuples(index=False), strict=True)
    ]
