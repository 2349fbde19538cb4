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

from finstream.core.questions import QUESTIONS

ALPHA = 0.10  # the interval is the central 1 - ALPHA = 90 %
Z_NORMAL = NormalDist().inv_cdf(1 - ALPHA / 2)  # the normal interval's half-width in std units
EWMA_LAMBDA = 0.94  # RiskMetrics' daily decay
VARIANCE_BARS = 20  # squared returns the variance baselines average
RANGE_BARS = 5  # ranges the range baseline averages
# A regressor on squared returns can predict zero or less, where QLIKE and an interval are
# undefined: its variance forecast is never let below this share of the EWMA forecast.
VARIANCE_FLOOR = 0.1
SIGNIFICANCE = 0.05  # a model is served only if the DM test puts it ahead at this level

# --- losses (numpy arrays or floats) ---------------------------------------------------------
def squared_error(forecast, actual):
    """(forecast - actual)^2, elementwise: the loss of the price and range questions."""
    return (forecast - actual) ** 2


def qlike(variance_forecast, realised):
    """Patton's QLIKE loss of a variance forecast, 0 for a perfect forecast.

    Undefined for a zero realised variance (the volatility question leaves such bars out).

    Args:
        variance_forecast: the forecast variance of the log return (> 0), array or float.
        realised: the realised variance (the squared log return), same shape.

    Returns:
        realised / forecast - log(realised / forecast) - 1, elementwise.
    """
    ratio = realised / variance_forecast
    return ratio - np.log(ratio) - 1.0


def interval_score(lower, upper, actual, alpha: float = ALPHA):
    """The interval score: width plus 2/alpha times how far the actual falls outside (smaller is better).

    Args:
        lower: the interval's lower bounds, array or float.
        upper: its upper bounds, same shape and scale (row_loss uses the return scale).
        actual: what happened, same shape and scale.
        alpha: 1 - the interval's nominal coverage (0.10 for the central 90 %).

    Returns:
        The score per element.
    """
    return ((upper - lower) + (2.0 / alpha) * np.maximum(lower - actual, 0.0)
            + (2.0 / alpha) * np.maximum(actual - upper, 0.0))


def floored_variance(predicted, ewma):
    """A regressor's variance forecast, raised to at least VARIANCE_FLOOR x the EWMA forecast."""
    return np.maximum(predicted, VARIANCE_FLOOR * ewma)


# --- the naive baselines, from one series' recent bars (oldest first) -----------------------
def log_returns(closes: Sequence[float]) -> list[float]:
    """The log returns log(close[i] / close[i-1]) of consecutive closes (oldest first): one fewer."""
    return [math.log(closes[i] / closes[i - 1]) for i in range(1, len(closes))]


def ewma_weights() -> list[float]:
    """Weights of the last VARIANCE_BARS squared returns, newest first (normalised by their sum)."""
    return [EWMA_LAMBDA ** k for k in range(VARIANCE_BARS)]


def ewma_variance(returns: Sequence[float]) -> float:
    """The EWMA variance forecast of the next log return: the volatility question's naive baseline.

    The last VARIANCE_BARS squared log returns, the newest weighted 1 and each older one
    EWMA_LAMBDA times less, normalised by the weights' sum; added newest first, as the
    trainer's window expression adds them.

    Args:
        returns: one series' log returns, oldest first; at least VARIANCE_BARS of them.

    Raises:
        IndexError: fewer than VARIANCE_BARS returns.
    """
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
    """The mean of the last VARIANCE_BARS squared log returns (a variance about a zero mean).

    Args:
        returns: one series' log returns, oldest first; the sum is always divided by
            VARIANCE_BARS, so give at least that many.
    """
    total = 0.0
    for r in returns[-VARIANCE_BARS:]:
        total = total + r * r
    return total / VARIANCE_BARS


def mean_range(highs: Sequence[float], lows: Sequence[float]) -> float:
    """The mean log(high / low) of the last RANGE_BARS bars: the range question's naive baseline.

    Args:
        highs: one series' highs, oldest first; at least RANGE_BARS (the sum is always divided
            by RANGE_BARS).
        lows: its lows, aligned with `highs`.
    """
    total = 0.0
    for h, lo in zip(highs[-RANGE_BARS:], lows[-RANGE_BARS:], strict=True):
        total = total + math.log(h / lo)
    return total / RANGE_BARS


def interval_from_variance(close: float, variance: float, quantiles: Sequence[float]) -> tuple[float, float]:
    """The next close's interval from a variance forecast of its log return.

    Args:
        close: the last close, price.
        variance: the forecast variance of the next log return.
        quantiles: the (lower, upper) quantiles of the standardised log return: empirical, from
            training, or the normal ones (-Z_NORMAL, Z_NORMAL).

    Returns:
        (lower, upper) prices: close x exp(quantile x sigma).
    """
    sigma = math.sqrt(variance)
    return close * math.exp(quantiles[0] * sigma), close * math.exp(quantiles[1] * sigma)


# --- significance -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DieboldMariano:
    """A Diebold-Mariano test's result, model against baseline (NaN figures when undefined)."""

    statistic: float  # negative: the model's loss is lower than the baseline's
    p_better: float  # one-sided p-value of "the model is better than the baseline"
    n: int

    def as_dict(self) -> dict:
        """{"dm", "p", "n"}, NaN as None (JSON and Elasticsearch documents have no NaN)."""
        return {"dm": _none_if_nan(self.statistic), "p": _none_if_nan(self.p_better), "n": self.n}


def _none_if_nan(value: float) -> float | None:
    return None if value != value else value


def diebold_mariano(loss: np.ndarray, baseline_loss: np.ndarray, groups: np.ndarray | None = None,
                    horizon: int = 1) -> DieboldMariano:
    """The Diebold-Mariano test of equal expected loss, model against baseline.

    The long-run variance of the loss difference is Newey-West (Bartlett) over horizon - 1
    lags, autocovariances taken within each series, with the Harvey-Leybourne-Newbold
    small-sample correction. p from the normal distribution (the HLN statistic is close to
    t(n-1); n is in the hundreds).

    Args:
        loss: the model's loss per row; rows in time order within each group.
        baseline_loss: the baseline's loss on the same rows.
        groups: each row's series (e.g. its ticker), or None for a single series.
        horizon: the forecast horizon in bars (1: one step ahead, no lags).

    Returns:
        The statistic (negative: the model's loss is lower), the one-sided p of "the model is
        better" and n. Statistic and p are NaN for fewer than 2 rows, or when the loss
        difference does not vary (identical forecasts).
    """
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
    """What the stream serves for a question, and why.

    The model chosen on validation if the holdout's DM test puts it significantly ahead
    (p_better < SIGNIFICANCE) of the question's reference baseline, else that baseline.

    Args:
        question: the question's name (a key of QUESTIONS).
        chosen: the candidate chosen on validation.
        statistic: its holdout DM statistic against the reference (None: nothing to test).
        p_better: the test's one-sided p (None: nothing to test, the reference is served).

    Returns:
        (the model or baseline to serve, one sentence saying why).

    Raises:
        KeyError: an unknown question.
    """
    reference = QUESTIONS[question].reference
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
    """The scored frame's column of candidate `name`'s point forecast: f:<name>."""
    return f"f:{name}"


def interval_columns(name: str) -> tuple[str, str]:
    """The scored frame's columns of candidate `name`'s interval: (lo:<name>, hi:<name>)."""
    return f"lo:{name}", f"hi:{name}"


# The live skill watch: a served model's loss ratio against its naive baseline over its last
# LIVE_WINDOW judged predictions, against the band that windows of that many holdout rows span.
LIVE_WINDOW = 200
LIVE_BAND = (0.025, 0.975)  # the central 95 % of the holdout's windowed ratios


def live_band(loss: np.ndarray, baseline_loss: np.ndarray, window: int = LIVE_WINDOW) -> dict | None:
    """The band a live loss ratio over `window` predictions should stay in, if the holdout holds.

    The 2.5th-97.5th percentiles (LIVE_BAND) of sum(loss) / sum(baseline_loss) over every run
    of `window` consecutive holdout rows (runs whose baseline sum is 0 left out).

    Args:
        loss: the served candidate's loss per holdout row, rows in time order.
        baseline_loss: the reference baseline's loss on the same rows.
        window: predictions per live ratio.

    Returns:
        {"window", "low", "high", "holdout": the ratio over the whole holdout}, or None when the
        holdout is shorter than a window or no run has a positive baseline sum.
    """
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
    """The loss of candidate `name` on each row of a scored frame: what the DM test compares.

    Args:
        kind: the question's kind: price | range | volatility | interval.
        frame: a scored frame (pandas; its columns are described above).
        name: the candidate.

    Returns:
        One loss per row (numpy): QLIKE for volatility, the interval score on the return scale
        (x / last - 1) for interval, else the squared error.
    """
    actual = frame["actual"].to_numpy(float)
    if kind == "interval":
        lo, hi = interval_columns(name)
        last = frame["last"].to_numpy(float)
        return interval_score(frame[lo].to_numpy(float) / last - 1, frame[hi].to_numpy(float) / last - 1,
                              actual / last - 1)
    forecast = frame[forecast_column(name)].to_numpy(float)
    return qlike(forecast, actual) if kind == "volatility" else squared_error(forecast, actual)


def metrics(kind: str, frame, name: str) -> dict[str, float | int | None]:
    """Every metric of one candidate, `loss` being the mean of row_loss.

    Args:
        kind: the question's kind: price | range | volatility | interval.
        frame: a scored frame (pandas).
        name: the candidate.

    Returns:
        n and loss, plus by kind: coverage, width (relative to the last close) and
        interval_score for interval; else rmse and mae, with qlike for volatility, and mse, r2,
        mape (%), return_rmse and direction (share of moves called right) for price. Only n and
        loss (None) for an empty frame.
    """
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
    """Every candidate's metrics, its loss relative to the reference's, and its DM test against it.

    Args:
        kind: the question's kind: price | range | volatility | interval.
        frame: a scored frame (pandas) with a `timestamp` column (epoch ms) and the `groups` column.
        names: the candidates.
        reference: the baseline each candidate is compared with.
        groups: the column naming each row's series; rows are put in time order within each,
            and the DM test's autocovariances stay within one.

    Returns:
        candidate -> metrics(...) plus loss_ratio (None when the reference's mean loss is 0) and
        the DM test's dm, p and n (direction is None for persistence, which never predicts a move).
    """
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
