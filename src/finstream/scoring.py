"""The `lags` features and the trained regressors, in plain Python, for scoring one bar at a
time inside the stream's per-series state step (no Spark job, no JVM round trip).

Both halves reproduce Spark's own arithmetic operation by operation, so that a bar scored
here gets the very same floats as the trainer's window functions and MLlib's `transform`:
- window averages add the frame's values left to right from 0.0, then divide by the count
  (Spark's `Average` over a sliding frame, re-aggregated for every row);
- sample standard deviations follow `CentralMomentAgg`'s update (n, mean, m2) and
  sqrt(m2 / (n - 1)); a division by zero is null, as in Spark;
- the linear model scales with (x - mean) * (1 / std) (`StandardScalerModel`) and takes the
  dot product with four partial sums of fused multiply-adds (the JVM BLAS MLlib calls);
- a tree goes left when feature <= threshold; a forest averages its trees in order; a
  boosted ensemble weights them with the same four-way dot product.
tests/unit/test_scoring.py checks the equality against Spark on generated bars, and the
trainer checks it on the holdout of every model it publishes (finstream.spark.export).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from finstream.schema import FORECAST_FEATURES

# Bars a `lags` feature vector needs: the bar itself and the 20 before it (ret_std_20 looks
# at 20 returns, and the oldest of them needs the close before it).
HISTORY_BARS = 21
HOUR_MS = 3_600_000
WEEKDAY_OF_EPOCH = 3  # 1970-01-01 was a Thursday (Monday = 0)


def _divide(numerator: float, denominator: float) -> float | None:
    """Spark's (non-ANSI) division: null when dividing by zero."""
    return None if denominator == 0 else numerator / denominator


def _mean(values: Sequence[float]) -> float | None:
    total = 0.0
    for value in values:
        total = total + value
    return _divide(total, float(len(values)))


def _stddev_samp(values: Sequence[float]) -> float | None:
    n = mean = m2 = 0.0
    for value in values:
        n = n + 1.0
        delta = value - mean
        delta_n = delta / n
        mean = mean + delta_n
        m2 = m2 + delta * (delta - delta_n)
    if n < 2.0:
        return None
    return math.sqrt(m2 / (n - 1.0))


def lag_features(opens: Sequence[float], highs: Sequence[float], lows: Sequence[float],
                 closes: Sequence[float], volumes: Sequence[float],
                 vwaps: Sequence[float | None]) -> tuple[float, ...] | None:
    """The LAG_FEATURES of the last bar, from it and the bars before it in its series (oldest
    first). None when there are fewer than HISTORY_BARS bars or a feature is undefined (the
    trainer's `eligible` is false for such a bar)."""
    if len(closes) < HISTORY_BARS:
        return None
    c = closes[-HISTORY_BARS:]
    returns = [c[i] / c[i - 1] - 1.0 for i in range(1, HISTORY_BARS)]  # the last 20 bars' ret_1
    close, high, low, open_, volume, vwap = c[-1], highs[-1], lows[-1], opens[-1], volumes[-1], vwaps[-1]
    # Absent volume (index aggregates): a ratio of 1, no information, as the trainer's
    # coalesce; Spark's avg skips absent values, and so does this mean.
    known_volumes = [v for v in volumes[-20:] if v is not None]
    mean_volume = _mean(known_volumes) if known_volumes else None
    mean_close = _mean(c[-20:])
    vwap_gap = (close - vwap) / close if vwap is not None else None
    values = (
        returns[-1], returns[-2], returns[-3],
        _mean(returns[-5:]), _stddev_samp(returns[-5:]),
        _mean(returns), _stddev_samp(returns),
        _divide(high - low, close),
        _divide(close - open_, open_),
        1.0 if volume is None else _divide(volume, mean_volume) if mean_volume is not None else None,
        vwap_gap if vwap_gap is not None else 0.0,
        _divide(close, mean_close) - 1.0 if mean_close else None,
    )
    if any(v is None or math.isnan(v) for v in values):
        return None
    return values


def calendar_features(timestamp: int) -> tuple[float, float]:
    """CALENDAR_FEATURES of a bar starting at `timestamp` (epoch ms, UTC): hour, weekday."""
    hours = timestamp // HOUR_MS
    return float(hours % 24), float((timestamp // (24 * HOUR_MS) + WEEKDAY_OF_EPOCH) % 7)


def forecast_features(window: dict[str, list]) -> dict[str, float] | None:
    """FORECAST_FEATURES of the newest bar of `window` (its series' recent bars, oldest first,
    by column), or None when the trainer would not have a feature row for it."""
    lags = lag_features(*(window[n] for n in ("open", "high", "low", "close", "volume", "vwap")))
    if lags is None:
        return None
    return dict(zip(FORECAST_FEATURES, lags + calendar_features(window["timestamp"][-1]), strict=True))


def _fma(a: float, b: float, c: float) -> float:
    """a * b + c rounded once, as Java's Math.fma (exact integer arithmetic on the floats'
    binary fractions; int / int is correctly rounded). math.fma arrives only in Python 3.13."""
    na, da = a.as_integer_ratio()
    nb, db = b.as_integer_ratio()
    nc, dc = c.as_integer_ratio()
    dp = da * db  # powers of two: one divides the other
    if dp >= dc:
        return (na * nb + nc * (dp // dc)) / dp
    return (na * nb * (dc // dp) + nc) / dc


def _dot(x: Sequence[float], y: Sequence[float]) -> float:
    """ddot as the JVM BLAS MLlib uses on Java 11+ computes it: four interleaved partial sums
    of fused multiply-adds, added in order, then the remainder one by one."""
    sums = [0.0, 0.0, 0.0, 0.0]
    blocks = len(x) - len(x) % 4
    for i in range(0, blocks, 4):
        for lane in range(4):
            sums[lane] = _fma(x[i + lane], y[i + lane], sums[lane])
    total = 0.0 + (sums[0] + sums[1] + sums[2] + sums[3])
    for i in range(blocks, len(x)):
        total = _fma(x[i], y[i], total)
    return total


@dataclass(frozen=True)
class Linear:
    mean: tuple[float, ...]
    scale: tuple[float, ...]  # 1 / std, or 0.0 where std is 0 (StandardScalerModel)
    coefficients: tuple[float, ...]
    intercept: float

    def predict(self, features: Sequence[float]) -> float:
        scaled = [(x - m) * s for x, m, s in zip(features, self.mean, self.scale, strict=True)]
        return _dot(scaled, self.coefficients) + self.intercept


# A tree as flat arrays, node 0 the root: an internal node has feature >= 0 and children;
# a leaf has feature -1 and its prediction in `value`.
@dataclass(frozen=True)
class Tree:
    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]

    def predict(self, features: Sequence[float]) -> float:
        node = 0
        while self.feature[node] >= 0:
            node = self.left[node] if features[self.feature[node]] <= self.threshold[node] else self.right[node]
        return self.value[node]


@dataclass(frozen=True)
class Forest:
    trees: tuple[Tree, ...]

    def predict(self, features: Sequence[float]) -> float:
        total = 0.0
        for tree in self.trees:
            total = total + tree.predict(features)
        return total / len(self.trees)


@dataclass(frozen=True)
class Boosted:
    trees: tuple[Tree, ...]
    weights: tuple[float, ...]

    def predict(self, features: Sequence[float]) -> float:
        return _dot([tree.predict(features) for tree in self.trees], self.weights)


Scorer = Linear | Forest | Boosted


def _tree(spec: dict) -> Tree:
    return Tree(*(tuple(spec[k]) for k in ("feature", "threshold", "left", "right", "value")))


def scorer_from_spec(spec: dict) -> Scorer:
    """A scorer from a regressor's JSON (finstream.spark.export.scoring_spec)."""
    unknown = [name for name in spec["features"] if name not in FORECAST_FEATURES]
    if unknown:
        raise ValueError(f"it was exported for features {spec['features']}, this code computes "
                         f"{list(FORECAST_FEATURES)} (not {unknown}): retrain it")
    kind = spec["kind"]
    if kind == "linear":
        return Linear(tuple(spec["mean"]), tuple(spec["scale"]), tuple(spec["coefficients"]), float(spec["intercept"]))
    if kind == "random_forest":
        return Forest(tuple(_tree(t) for t in spec["trees"]))
    if kind == "gbt":
        return Boosted(tuple(_tree(t) for t in spec["trees"]), tuple(spec["weights"]))
    raise ValueError(f"unknown model kind {kind!r}")
