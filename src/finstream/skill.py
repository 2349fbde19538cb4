"""Forecast skill: the losses each question is judged by, the naive baselines' formulas, and
the Diebold-Mariano test that decides whether a model is served or its baseline is.

Pure Python and numpy, shared by the trainer (on collected holdout frames) and the stream (one
bar at a time), so both judge a forecast with the same arithmetic.

Per question, the target and its loss:
- lags (next close):        squared error of the price; persistence is the naive baseline;
- range (next log(h/l)):    squared error; the 5-bar mean range is the naive baseline;
- volatility (next r^2):    QLIKE, r = log return; EWMA (lambda 0.94) is the naive baseline;
- interval (next close):    interval score of the central 90 % interval on the return scale
                            (Gneiting & Raftery 2007); a rolling-std normal interval is the
                            naive baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

ALPHA = 0.10  # the interval is the central 1 - ALPHA = 90 %
Z_NORMAL = NormalDist().inv_cdf(1 - ALPHA / 2)  # the normal interval's half-width in std units
EWMA_LAMBDA = 0.94  # RiskMetrics' daily decay
VARIANCE_BARS = 20  # squared returns the variance baselines average
RANGE_BARS = 5  # ranges the range baseline averages
# A regressor on squared returns can predict zero or less, where QLIKE and an interval are
# undefined: its variance forecast is never let below this share of the EWMA forecast.
VARIANCE_FLOOR = 0.1
SIGNIFICANCE = 0.05  # a model is served only if the DM test puts it ahead at this level

# Each forecasting question's naive baseline: what the stream serves when no model is
# significantly better on the holdout.
REFERENCE = {"lags": "persistence", "range": "mean_range_5", "volatility": "ewma",
             "interval": "rolling_std_normal", "volume": "persistence", "ohlv": "persistence"}


# --- losses (numpy arrays or floats) ---------------------------------------------------------
def squared_error(forecast, actual):
    return (forecast - actual) ** 2


def qlike(variance_forecast, realised):
    """Patton's QLIKE, 0 for a perfect forecast; undefined for a zero realised variance (the
    volatility question leaves such bars out)."""
    ratio = realised / variance_forecast
    return ratio - np.log(ratio) - 1.0


def interval_score(lower, upper, actual, alpha: float = ALPHA):
    """Width plus 2/alpha times how far the actual falls outside (smaller is better)."""
    return ((upper - lower) + (2.0 / alpha) * np.maximum(lower - actual, 0.0)
            + (2.0 / alpha) * np.maximum(actual - upper, 0.0))


def floored_variance(predicted, ewma):
    return np.maximum(predicted, VARIANCE_FLOOR * ewma)


# --- the naive baselines, from one series' recent bars (oldest first) -----------------------
def log_returns(closes: Sequence[float]) -> list[float]:
    return [math.log(closes[i] / closes[i - 1]) for i in range(1, len(closes))]


def ewma_weights() -> list[float]:
    """Weights of the last VARIANCE_BARS squared returns, newest first (normalised by their sum)."""
    return [EWMA_LAMBDA ** k for k in range(VARIANCE_BARS)]


def ewma_variance(returns: Sequence[float]) -> float:
    """EWMA over the last VARIANCE_BARS log returns, newest weighted 1, normalised; added newest
    first, as the trainer's window expression adds them."""
    weights = ewma_weights()
    total = 0.0
    for k, weight in enumerate(weights):
        r = returns[-1 - k]
        total = total + weight * (r * r)
    norm = 0.0
    for weight in weights:
        norm = norm + weight
    return total / norm


def rolling_variance(returns: Sequence[float]) -> float:
    total = 0.0
    for r in returns[-VARIANCE_BARS:]:
        total = total + r * r
    return total / VARIANCE_BARS


def mean_range(highs: Sequence[float], lows: Sequence[float]) -> float:
    total = 0.0
    for h, lo in zip(highs[-RANGE_BARS:], lows[-RANGE_BARS:], strict=True):
        total = total + math.log(h / lo)
    return total / RANGE_BARS


def interval_from_variance(close: float, variance: float, quantiles: Sequence[float]) -> tuple[float, float]:
    """The next close's interval from a variance forecast of its log return, scaled by the
    standardised returns' quantiles (empirical, from training; or the normal ones)."""
    sigma = math.sqrt(variance)
    return close * math.exp(quantiles[0] * sigma), close * math.exp(quantiles[1] * sigma)


# --- significance -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DieboldMariano:
    statistic: float  # negative: the model's loss is lower than the baseline's
    p_better: float  # one-sided p-value of "the model is better than the baseline"
    n: int

    def as_dict(self) -> dict:
        return {"dm": _none_if_nan(self.statistic), "p": _none_if_nan(self.p_better), "n": self.n}


def _none_if_nan(value: float) -> float | None:
    return None if value != value else value


def diebold_mariano(loss: np.ndarray, baseline_loss: np.ndarray, groups: np.ndarray | None = None,
                    horizon: int = 1) -> DieboldMariano:
    """DM test of equal expected loss, with a Newey-West (Bartlett) long-run variance of the
    loss difference over horizon - 1 lags, autocovariances taken within each series (rows are
    in time order within `groups`), and the Harvey-Leybourne-Newbold small-sample correction.
    p from the normal distribution (the HLN statistic is close to t(n-1); n is in the hundreds)."""
    d = np.asarray(loss, dtype=float) - np.asarray(baseline_loss, dtype=float)
    n = len(d)
    if n < 2:
        return DieboldMariano(float("nan"), float("nan"), n)
    centred = d - d.mean()
    variance = float(centred @ centred) / n
    groups = np.zeros(n) if groups is None else np.asarray(groups)
    same = groups[1:] == groups[:-1]
    for k in range(1, horizon):
        lagged = np.ones(n - k, dtype=bool)
        for j in range(k):
            lagged &= same[j:n - k + j]
        gamma = float((centred[k:] * centred[:-k])[lagged].sum()) / n
        variance += 2.0 * (1.0 - k / horizon) * gamma
    if variance <= 0:
        return DieboldMariano(float("nan"), float("nan"), n)  # identical forecasts
    statistic = d.mean() / math.sqrt(variance / n)
    statistic *= math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    return DieboldMariano(statistic, NormalDist().cdf(statistic), n)


def served_choice(question: str, chosen: str, statistic: float | None, p_better: float | None) -> tuple[str, str]:
    """What the stream serves for a question: the model chosen on validation if the holdout's DM
    test puts it significantly ahead of the naive baseline, else the baseline; and why."""
    reference = REFERENCE[question]
    if p_better is not None and p_better < SIGNIFICANCE:
        return chosen, (f"{chosen} beats {reference} on the holdout: DM {statistic:.2f}, "
                        f"p {p_better:.3g} < {SIGNIFICANCE}")
    figures = "no difference" if p_better is None else f"DM {statistic:.2f}, p {p_better:.3g} >= {SIGNIFICANCE}"
    return reference, (f"{chosen} (chosen on validation) is not significantly better than {reference} on "
                       f"the holdout ({figures}): serving {reference}")


# --- metrics of one candidate over a frame of forecasts ----------------------------------------
# A scored frame (pandas) has, per row: `actual` (the question's target: next close, next
# log range, next squared return), `last` (the last close known when forecasting), and per
# candidate either
# `f:<name>` (a point forecast on the target's scale) or `lo:<name>` / `hi:<name>` (interval).
def forecast_column(name: str) -> str:
    return f"f:{name}"


def interval_columns(name: str) -> tuple[str, str]:
    return f"lo:{name}", f"hi:{name}"


# The live skill watch: a served model's loss ratio against its naive baseline over its last
# LIVE_WINDOW judged predictions, against the band that windows of that many holdout rows span.
LIVE_WINDOW = 200
LIVE_BAND = (0.025, 0.975)  # the central 95 % of the holdout's windowed ratios
# question -> the judged fields (finstream.forecasts.judged) whose sums make the live ratio:
# the served forecast's loss and its reference baseline's, as row_loss computes them.
LIVE_LOSSES = {"lags": ("error", "baseline_error", "squared"),
               "range": ("range_error", "range_baseline_error", "squared"),
               "volatility": ("variance_loss", "variance_baseline_loss", "as_is")}


def live_band(loss: np.ndarray, baseline_loss: np.ndarray, window: int = LIVE_WINDOW) -> dict | None:
    """The band a live loss ratio over `window` predictions should stay in, if the holdout
    (rows in time order) holds: the 2.5th-97.5th percentiles of the ratio over every run of
    `window` consecutive holdout rows. None when the holdout is shorter than a window."""
    loss, baseline_loss = np.asarray(loss, float), np.asarray(baseline_loss, float)
    if len(loss) < window:
        return None
    sums, baseline_sums = np.convolve(loss, np.ones(window), "valid"), np.convolve(baseline_loss, np.ones(window),
                                                                                    "valid")
    ratios = sums[baseline_sums > 0] / baseline_sums[baseline_sums > 0]
    if not len(ratios):
        return None
    low, high = np.quantile(ratios, LIVE_BAND)
    return {"window": window, "low": float(low), "high": float(high),
            "holdout": float(loss.sum() / baseline_loss.sum())}


def row_loss(kind: str, frame, name: str) -> np.ndarray:
    """The loss of candidate `name` on each row: what the DM test compares."""
    actual = frame["actual"].to_numpy(float)
    if kind == "interval":
        lo, hi = interval_columns(name)
        last = frame["last"].to_numpy(float)
        return interval_score(frame[lo].to_numpy(float) / last - 1, frame[hi].to_numpy(float) / last - 1,
                              actual / last - 1)
    forecast = frame[forecast_column(name)].to_numpy(float)
    return qlike(forecast, actual) if kind == "volatility" else squared_error(forecast, actual)


def metrics(kind: str, frame, name: str) -> dict[str, float | int | None]:
    """Every metric of one candidate, `loss` being the mean of row_loss."""
    actual = frame["actual"].to_numpy(float)
    loss = row_loss(kind, frame, name)
    result: dict[str, float | int | None] = {"n": len(frame), "loss": float(loss.mean()) if len(loss) else None}
    if not len(frame):
        return result
    if kind == "interval":
        lo, hi = (frame[c].to_numpy(float) for c in interval_columns(name))
        last = frame["last"].to_numpy(float)
        result.update(coverage=float(((lo <= actual) & (actual <= hi)).mean()),
                      width=float(((hi - lo) / last).mean()), interval_score=result["loss"])
        return result
    forecast = frame[forecast_column(name)].to_numpy(float)
    error = forecast - actual
    result.update(rmse=math.sqrt(float((error * error).mean())), mae=float(np.abs(error).mean()))
    if kind == "volatility":
        result["qlike"] = result["loss"]
    if kind == "price":
        last = frame["last"].to_numpy(float)
        variance = float(actual.var())
        result.update(
            mse=result["loss"], r2=1 - result["loss"] / variance if variance else None,
            mape=100 * float((np.abs(error) / np.abs(actual)).mean()),
            # The error of the implied return, (forecast - actual) / last: comparable across prices.
            return_rmse=math.sqrt(float(((error / last) ** 2).mean())),
            direction=float((np.sign(forecast - last) == np.sign(actual - last)).mean()))
    return result


def compare(kind: str, frame, names: Sequence[str], reference: str, groups: str = "ticker") -> dict[str, dict]:
    """Metrics of every candidate, its loss relative to the reference's, and its DM test
    against the reference (rows in time order within each series)."""
    ordered = frame.sort_values([groups, "timestamp"], kind="stable")
    base = row_loss(kind, ordered, reference)
    result = {}
    for name in names:
        m = metrics(kind, ordered, name)
        if name == "persistence":
            m["direction"] = None  # it never predicts a move
        m["loss_ratio"] = m["loss"] / float(base.mean()) if len(base) and base.mean() else None
        m.update(diebold_mariano(row_loss(kind, ordered, name), base, ordered[groups].to_numpy()).as_dict())
        result[name] = m
    return result
