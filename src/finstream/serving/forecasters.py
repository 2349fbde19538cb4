"""What the stream serves for each forecasting question, one bar at a time: the model a training
run published, or the question's naive baseline when the model was not significantly better
(finstream.core.skill.served_choice), and how a forecast is judged when the next bar arrives.

A published question's `scorer.json`:
    {"question": "lags", "served": "linear", "regressor": {<finstream.serving.scorers spec>}}
    {"question": "interval", "served": "gbt", "regressor": {...}, "quantiles": [q05, q95]}
    {"question": "range", "served": "mean_range_5"}               (a baseline: no regressor)

Each question (finstream.core.questions) registers two functions here, under its name:
- build(model, served, spec) -> forecast(window, features): maps a series' recent bars (oldest
  first, by column; prices, epoch ms) and the newest bar's features to the question's
  forecast_fields, or None when the forecast is undefined for that bar;
- judge(doc, high, low, close) -> the question's judged_fields, from the next bar's prices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from finstream.core import skill
from finstream.core.questions import QUESTIONS, Question
from finstream.features.scalar import stddev_samp
from finstream.serving.scorers import Scorer, scorer_from_spec

MODEL_KINDS = ("linear", "random_forest", "gbt")
Forecast = Callable[[dict, dict], "dict | None"]
Judge = Callable[[dict, float, float, float], dict]


@dataclass(frozen=True)
class Regressor:
    """A published regressor: the features it reads, in order, and its plain-Python scorer."""

    features: tuple[str, ...]
    scorer: Scorer

    def predict(self, features: dict[str, float]) -> float:
        """The regressor's output for one bar's features (name -> value), on its label's scale."""
        return self.scorer.predict([features[name] for name in self.features])


def regressor(spec: dict) -> Regressor:
    """A Regressor from its exported JSON (finstream.training.export.scoring_spec).

    Raises:
        ValueError: the spec cannot be scored by this code (finstream.serving.scorers.scorer_from_spec).
    """
    return Regressor(tuple(spec["features"]), scorer_from_spec(spec))


def _returns(window: dict[str, list]) -> list[float]:
    """The log returns the variance baselines look at: the window's last VARIANCE_BARS."""
    return skill.log_returns(window["close"][-(skill.VARIANCE_BARS + 1):])


@dataclass(frozen=True)
class QuestionForecaster:
    """A question's two functions (see the module's docstring)."""

    question: Question
    build: Callable[[Regressor | None, str, dict], Forecast]
    judge: Judge


FORECASTERS: dict[str, QuestionForecaster] = {}  # question name -> its functions


def forecasts(question: Question, judge: Judge):
    """Registers the decorated build function, and `judge`, as `question`'s forecaster."""
    def register(build):
        FORECASTERS[question.name] = QuestionForecaster(question, build, judge)
        return build
    return register


# --- lags: the next close ---------------------------------------------------------------------
def _judge_lags(doc: dict, high: float, low: float, close: float) -> dict:
    error = doc["predicted_close"] - close
    return {"error": error, "abs_error": abs(error), "baseline_error": doc["last_close"] - close}


@forecasts(QUESTIONS["lags"], _judge_lags)
def _lags(model: Regressor | None, served: str, spec: dict) -> Forecast:
    def forecast(window, features):
        close = window["close"][-1]
        predicted_return = model.predict(features) if model else 0.0  # persistence: no move
        return {"predicted_return": predicted_return, "predicted_close": close * (1 + predicted_return)}
    return forecast


# --- range: the next bar's log(high / low) ----------------------------------------------------
def _judge_range(doc: dict, high: float, low: float, close: float) -> dict:
    actual_range = math.log(high / low)
    return {"actual_range": actual_range, "range_error": doc["predicted_range"] - actual_range,
            "range_baseline_error": doc["baseline_range"] - actual_range}


@forecasts(QUESTIONS["range"], _judge_range)
def _range(model: Regressor | None, served: str, spec: dict) -> Forecast:
    def forecast(window, features):
        reference = skill.mean_range(window["high"], window["low"])
        if model:
            predicted = model.predict(features)
        elif served == "last_range":
            predicted = math.log(window["high"][-1] / window["low"][-1])
        else:
            predicted = reference
        return {"predicted_range": predicted, "baseline_range": reference}
    return forecast


# --- volatility: the variance of the next log return -------------------------------------------
def _variance(model: Regressor | None, served: str, window, features) -> tuple[float, float] | None:
    """(the served variance forecast, EWMA's), or None when EWMA is 0 (no eligible row)."""
    returns = _returns(window)
    ewma = skill.ewma_variance(returns)
    if ewma <= 0:
        return None
    if model:
        return float(skill.floored_variance(model.predict(features), ewma)), ewma
    return (skill.rolling_variance(returns) if served == "rolling_20" else ewma), ewma


def _judge_volatility(doc: dict, high: float, low: float, close: float) -> dict:
    log_return = math.log(close / doc["last_close"])
    actual = log_return * log_return
    fields = {"actual_variance": actual}
    if actual > 0:  # QLIKE is undefined for a zero realised variance
        fields["variance_loss"] = float(skill.qlike(doc["predicted_variance"], actual))
        fields["variance_baseline_loss"] = float(skill.qlike(doc["baseline_variance"], actual))
    return fields


@forecasts(QUESTIONS["volatility"], _judge_volatility)
def _volatility(model: Regressor | None, served: str, spec: dict) -> Forecast:
    def forecast(window, features):
        variances = _variance(model, served, window, features)
        if variances is None:
            return None
        return {"predicted_variance": variances[0], "baseline_variance": variances[1]}
    return forecast


# --- interval: a central 90 % interval for the next close ----------------------------------------
def _judge_interval(doc: dict, high: float, low: float, close: float) -> dict:
    last = doc["last_close"]
    return {"inside_interval": 1.0 if doc["lower"] <= close <= doc["upper"] else 0.0,
            "interval_score": float(skill.interval_score(doc["lower"] / last - 1, doc["upper"] / last - 1,
                                                         close / last - 1))}


@forecasts(QUESTIONS["interval"], _judge_interval)
def _interval(model: Regressor | None, served: str, spec: dict) -> Forecast:
    if model is not None and len(spec.get("quantiles", ())) != 2:
        raise ValueError("an interval model needs its two training quantiles")

    def forecast(window, features):
        close = window["close"][-1]
        if served == "rolling_std_normal":
            std = stddev_samp(_returns(window))
            if not std:
                return None
            lower, upper = close * math.exp(-skill.Z_NORMAL * std), close * math.exp(skill.Z_NORMAL * std)
        else:  # a model's or EWMA's variance, scaled by the training quantiles
            variances = _variance(model, "ewma", window, features)
            if variances is None:
                return None
            lower, upper = skill.interval_from_variance(close, variances[0], spec["quantiles"])
        return {"lower": lower, "upper": upper}
    return forecast


@dataclass(frozen=True)
class Forecaster:
    """A served question's forecast function, and what serves it (a model kind or a baseline)."""

    question: Question
    served: str
    forecast: Forecast


def forecaster(spec: dict) -> Forecaster:
    """A question's forecaster from its scorer.json (see the module's docstring).

    Raises:
        ValueError: the question is not served by this code, or the spec cannot be served by it.
    """
    if "question" not in spec:  # published before the forecasting questions: a lags regressor
        spec = {"question": "lags", "served": spec["kind"], "regressor": spec}
    question, served = spec["question"], spec["served"]
    if question not in FORECASTERS:
        raise ValueError(f"question {question!r} is not served by the stream")
    model = regressor(spec["regressor"]) if served in MODEL_KINDS else None
    registered = FORECASTERS[question]
    return Forecaster(registered.question, served, registered.build(model, served, spec))


def finite(compute: Callable[[], "dict | None"]) -> dict | None:
    """compute()'s fields, or None when it is undefined: it returned None, a value is not a
    finite number, or the arithmetic failed (an exp that overflows, a log of 0).

    Valid bars can still drive a served model far outside its training range (a price moving
    from 1e-12 to 1e9 is a return of 1e21). Such a forecast is left out of its document, as an
    undefined one is, instead of failing the state step's task, which Spark would retry on the
    same bars for ever, stopping every series' predictions; Elasticsearch could not store an
    infinity either."""
    try:
        fields = compute()
    except (ArithmeticError, ValueError):
        return None
    if fields is None or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in fields.values()):
        return None
    return fields


def judged(doc: dict, high: float, low: float, close: float) -> dict:
    """The fields a prediction document gains from the next bar (its high, low and close):
    the actual close, and each forecast question's judged fields (left out where they are not
    finite: finite())."""
    fields: dict = {"actual_close": close}
    for registered in FORECASTERS.values():
        if all(doc.get(name) is not None for name in registered.question.forecast_fields):
            fields.update(finite(lambda registered=registered: registered.judge(doc, high, low, close)) or {})
    return fields
