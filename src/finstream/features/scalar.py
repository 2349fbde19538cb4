"""The features, in plain Python, one bar at a time: what the stream's per-series state step
computes for each new bar (finstream.serving.state_step), with no Spark job and no JVM round
trip. The spec is finstream.features.spec; the trainer's implementation is
finstream.features.columns.

It reproduces Spark's own arithmetic operation by operation, so that a bar gets the very same
floats as the trainer's window functions:
- window averages add the frame's values left to right from 0.0, then divide by the count
  (Spark's `Average` over a sliding frame, re-aggregated for every row);
- sample standard deviations follow `CentralMomentAgg`'s update (n, mean, m2) and
  sqrt(m2 / (n - 1)); a division by zero is null, as in Spark.
tests/unit/test_feature_parity.py checks the equality against Spark on generated bars.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from finstream.features.spec import (
    FORECAST_FEATURES,
    HISTORY_BARS,
    HOUR_MS,
    LONG_WINDOW,
    SHORT_WINDOW,
    WEEKDAY_OF_EPOCH,
)


def divide(numerator: float, denominator: float) -> float | None:
    """Spark's (non-ANSI) division: None (null) when dividing by zero."""
    return None if denominator == 0 else numerator / denominator


def mean(values: Sequence[float]) -> float | None:
    """Spark's `avg` over a window frame: added left to right from 0.0; None when empty."""
    total = 0.0
    for value in values:
        total = total + value
    return divide(total, float(len(values)))


def stddev_samp(values: Sequence[float]) -> float | None:
    """Spark's `stddev_samp` (CentralMomentAgg's update); None for fewer than two values."""
    n = centre = m2 = 0.0
    for value in values:
        n = n + 1.0
        delta = value - centre
        delta_n = delta / n
        centre = centre + delta_n
        m2 = m2 + delta * (delta - delta_n)
    if n < 2.0:
        return None
    return math.sqrt(m2 / (n - 1.0))


def lag_features(opens: Sequence[float], highs: Sequence[float], lows: Sequence[float],
                 closes: Sequence[float], volumes: Sequence[float],
                 vwaps: Sequence[float | None]) -> tuple[float, ...] | None:
    """The LAG_FEATURES of the last bar, in spec order.

    Args:
        opens, highs, lows, closes, volumes, vwaps: the bar and the bars before it in its series,
            oldest first, prices as floats; a volume or vwap may be None (absent).

    Returns:
        12 floats, or None when there are fewer than HISTORY_BARS bars or a feature is undefined
        (the trainer's `eligible` is false for such a bar).
    """
    if len(closes) < HISTORY_BARS:
        return None
    c = closes[-HISTORY_BARS:]
    returns = [c[i] / c[i - 1] - 1.0 for i in range(1, HISTORY_BARS)]  # the last LONG_WINDOW bars' ret_1
    close, high, low, open_, volume, vwap = c[-1], highs[-1], lows[-1], opens[-1], volumes[-1], vwaps[-1]
    # Absent volume (index aggregates): a ratio of 1, no information, as the trainer's
    # coalesce; Spark's avg skips absent values, and so does this mean.
    known_volumes = [v for v in volumes[-LONG_WINDOW:] if v is not None]
    mean_volume = mean(known_volumes) if known_volumes else None
    mean_close = mean(c[-LONG_WINDOW:])
    vwap_gap = (close - vwap) / close if vwap is not None else None
    values = (
        returns[-1], returns[-2], returns[-3],
        mean(returns[-SHORT_WINDOW:]), stddev_samp(returns[-SHORT_WINDOW:]),
        mean(returns), stddev_samp(returns),
        divide(high - low, close),
        divide(close - open_, open_),
        1.0 if volume is None else divide(volume, mean_volume) if mean_volume is not None else None,
        vwap_gap if vwap_gap is not None else 0.0,
        divide(close, mean_close) - 1.0 if mean_close else None,
    )
    if any(v is None or math.isnan(v) for v in values):
        return None
    return values


def calendar_features(timestamp: int) -> tuple[float, float]:
    """CALENDAR_FEATURES of a bar starting at `timestamp` (epoch ms, UTC): hour, weekday."""
    hours = timestamp // HOUR_MS
    return float(hours % 24), float((timestamp // (24 * HOUR_MS) + WEEKDAY_OF_EPOCH) % 7)


def forecast_features(window: dict[str, list]) -> dict[str, float] | None:
    """FORECAST_FEATURES of the newest bar of `window`.

    Args:
        window: the series' recent bars by column (timestamp in epoch ms, open, high, low, close,
            volume, vwap), oldest first.

    Returns:
        feature name -> value, or None when the trainer would not have a feature row for it.
    """
    lags = lag_features(*(window[n] for n in ("open", "high", "low", "close", "volume", "vwap")))
    if lags is None:
        return None
    return dict(zip(FORECAST_FEATURES, lags + calendar_features(window["timestamp"][-1]), strict=True))
