"""What the stream serves for each forecasting question, one bar at a time: the model a training
run published, or the question's naive baseline when the model was not significantly better
(finstream.skill.served_choice), and how a forecast is judged when the next bar arrives.

A published question's `scorer.json`:
    {"question": "lags", "served": "linear", "regressor": {<finstream.scoring spec>}}
    {"question": "interval", "served": "gbt", "regressor": {...}, "quantiles": [q05, q95]}
    {"question": "range", "served": "mean_range_5"}               (a baseline: no regressor)

Each forecaster maps a series' recent bars (oldest first, by column) and the newest bar's
features to prediction-document fields (finstream.schema.PREDICTION_MAPPING).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from finstream import skill
from finstream.scoring import Scorer, _stddev_samp, scorer_from_spec

# The document fields each question fills, and the fields naming what served it.
FIELDS = {
    "lags": ("predicted_return", "predicted_close"),
    "interval": ("lower", "upper"),
    "range": ("predicted_range", "baseline_range"),
    "volatility": ("predicted_variance", "baseline_variance"),
}
# (model or baseline, registered model/version, MLflow run id)
MODEL_FIELDS = {"lags": ("model", "model_version", "model_run_id"),
                "interval": ("interval_model", "interval_version", "interval_run_id"),
                "range": ("range_model", "range_version", "range_run_id"),
                "volatility": ("volatility_model", "volatility_version", "volatility_run_id")}
MODEL_KINDS = ("linear", "random_forest", "gbt")


@dataclass(frozen=True)
class Regressor:
    features: tuple[str, ...]
    scorer: Scorer

    def predict(self, features: dict[str, float]) -> float:
        return self.scorer.predict([features[name] for name in self.features])


def regressor(spec: dict) -> Regressor:
    return Regressor(tuple(spec["features"]), scorer_from_spec(spec))


def _returns(window: dict[str, list]) -> list[float]:
    return skill.log_returns(window["close"][-(skill.VARIANCE_BARS + 1):])


# --- forecasts per question: (window, features) -> fields, or None when undefined ------------
def _lags(model: Regressor | None, served: str, spec: dict):
    def forecast(window, features):
        close = window["close"][-1]
        predicted_return = model.predict(features) if model else 0.0  # persistence: no move
        return {"predicted_return": predicted_return, "predicted_close": close * (1 + predicted_return)}
    return forecast


def _range(model: Regressor | None, served: str, spec: dict):
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


def _variance(model: Regressor | None, served: str, window, features) -> tuple[float, float] | None:
    """(the served variance forecast, EWMA's), or None when EWMA is 0 (no eligible row)."""
    returns = _returns(window)
    ewma = skill.ewma_variance(returns)
    if ewma <= 0:
        return None
    if model:
        return float(skill.floored_variance(model.predict(features), ewma)), ewma
    return (skill.rolling_variance(returns) if served == "rolling_20" else ewma), ewma


def _volatility(model: Regressor | None, served: str, spec: dict):
    def forecast(window, features):
        variances = _variance(model, served, window, features)
        if variances is None:
            return None
        return {"predicted_variance": variances[0], "baseline_variance": variances[1]}
    return forecast


def _interval(model: Regressor | None, served: str, spec: dict):
    def forecast(window, features):
        close = window["close"][-1]
        if served == "rolling_std_normal":
            std = _stddev_samp(_returns(window))
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


_BUILDERS = {"lags": _lags, "range": _range, "volatility": _volatility, "interval": _interval}


@dataclass(frozen=True)
class Forecaster:
    question: str
    served: str  # a model kind or a baseline's name
    forecast: Callable[[dict, dict], dict | None]


def forecaster(spec: dict) -> Forecaster:
    """A question's forecaster from its scorer.json. Raises ValueError when it cannot serve."""
    if "question" not in spec:  # published before the forecasting questions: a lags regressor
        spec = {"question": "lags", "served": spec["kind"], "regressor": spec}
    question, served = spec["question"], spec["served"]
    if question not in _BUILDERS:
        raise ValueError(f"question {question!r} is not served by the stream")
    model = regressor(spec["regressor"]) if served in MODEL_KINDS else None
    if served in MODEL_KINDS and question == "interval" and len(spec.get("quantiles", ())) != 2:
        raise ValueError("an interval model needs its two training quantiles")
    return Forecaster(question, served, _BUILDERS[question](model, served, spec))


# --- judging a forecast when the next bar arrives ---------------------------------------------
def judged(doc: dict, high: float, low: float, close: float) -> dict:
    """The fields a prediction document gains from the next bar (high, low, close)."""
    last = doc["last_close"]
    fields: dict = {"actual_close": close}
    if doc.get("predicted_close") is not None:
        error = doc["predicted_close"] - close
        fields.update(error=error, abs_error=abs(error), baseline_error=last - close)
    if doc.get("lower") is not None:
        fields["inside_interval"] = 1.0 if doc["lower"] <= close <= doc["upper"] else 0.0
        fields["interval_score"] = float(skill.interval_score(doc["lower"] / last - 1, doc["upper"] / last - 1,
                                                              close / last - 1))
    if doc.get("predicted_range") is not None:
        actual_range = math.log(high / low)
        fields.update(actual_range=actual_range, range_error=doc["predicted_range"] - actual_range,
                      range_baseline_error=doc["baseline_range"] - actual_range)
    if doc.get("predicted_variance") is not None:
        log_return = math.log(close / last)
        actual = log_return * log_return
        fields["actual_variance"] = actual
        if actual > 0:
            fields["variance_loss"] = float(skill.qlike(doc["predicted_variance"], actual))
            fields["variance_baseline_loss"] = float(skill.qlike(doc["baseline_variance"], actual))
    return fields
