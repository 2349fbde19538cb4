"""The features a model sees of a bar, specified once: each one's name, the bars it looks at,
and what it means. Computed from the bar and earlier bars of its series only, by the trainer
(finstream.features.columns, Spark) and by the stream (finstream.features.scalar, plain
Python) alike. A leaf module: imports nothing from finstream, so every package may use it.
"""

from __future__ import annotations

from dataclasses import dataclass

SHORT_WINDOW = 5  # returns in the short mean and standard deviation
LONG_WINDOW = 20  # returns, volumes and closes in the long ones
# Bars one feature row needs: the bar itself and the LONG_WINDOW before it (ret_std_20 looks
# at 20 returns, and the oldest of them needs the close before it). A bar with fewer is not
# eligible: the trainer leaves it out, the stream does not score it.
HISTORY_BARS = LONG_WINDOW + 1
HOUR_MS = 3_600_000
WEEKDAY_OF_EPOCH = 3  # 1970-01-01 was a Thursday (Monday = 0)


@dataclass(frozen=True)
class Feature:
    """One feature: its name (a column in training, a key in the stream) and its meaning."""

    name: str
    description: str


# What the `lags` model sees: the bar's recent returns and shape. Returns are simple returns
# (close / previous close - 1); "absent" volume or vwap (index aggregates) is no information.
LAG = (
    Feature("ret_1", "this bar's return"),
    Feature("ret_2", "the previous bar's return"),
    Feature("ret_3", "the return two bars back"),
    Feature(f"ret_mean_{SHORT_WINDOW}", f"mean of the last {SHORT_WINDOW} returns"),
    Feature(f"ret_std_{SHORT_WINDOW}", f"sample standard deviation of the last {SHORT_WINDOW} returns"),
    Feature(f"ret_mean_{LONG_WINDOW}", f"mean of the last {LONG_WINDOW} returns"),
    Feature(f"ret_std_{LONG_WINDOW}", f"sample standard deviation of the last {LONG_WINDOW} returns"),
    Feature("range_pct", "(high - low) / close"),
    Feature("body_pct", "(close - open) / open"),
    Feature(f"volume_ratio_{LONG_WINDOW}", f"volume / mean volume of the last {LONG_WINDOW} bars (1 without volume)"),
    Feature("vwap_gap", "(close - vwap) / close (0 without vwap)"),
    Feature(f"close_to_mean_{LONG_WINDOW}", f"close / mean close of the last {LONG_WINDOW} bars - 1"),
)
# When the bar starts (UTC hour 0-23, weekday Monday = 0): intraday volatility has a daily
# pattern. Integers held as doubles, exact in both implementations.
CALENDAR = (
    Feature("hour_of_day", "UTC hour the bar starts in, 0-23"),
    Feature("day_of_week", "UTC weekday the bar starts on, Monday = 0"),
)

LAG_FEATURES = tuple(f.name for f in LAG)
CALENDAR_FEATURES = tuple(f.name for f in CALENDAR)
# What the range, volatility and interval models see.
FORECAST_FEATURES = LAG_FEATURES + CALENDAR_FEATURES
