"""The forecasting questions, each declared once.

A question says what is forecast (its target and the features a model sees), how a forecast
is judged (its kind: the training loss, and the live loss against its reference baseline),
which naive baselines it is compared with (the first is the reference the stream falls back
to), and what it adds to a prediction document: the forecast's fields, the fields the next
bar adds when it judges the forecast, and the three fields naming what served it. Its
forecaster (how the stream computes the fields, finstream.serving.forecasters) is registered
under the same name.

Everything else is derived from these declarations: the predictions index mapping and the
pipeline-metrics fields (finstream.core.schema), the state step's documents
(finstream.serving.state_step), the live-skill sums and watch (finstream.serving.predictor,
live_skill), the command lines' choices, the Kibana charts (finstream.ops.kibana), the
training report's tables (finstream.training.reporting) and the registry's model names
(finstream.stores.registry). tests/unit/test_questions.py declares a toy question and follows
it through each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from finstream.features.spec import FORECAST_FEATURES, LAG_FEATURES

if TYPE_CHECKING:  # series_sets reads the bar schema, which reads these declarations
    from finstream.core.series_sets import SeriesSet

# How a question's forecasts are judged in training, by kind (finstream.core.skill.row_loss).
TRAINING_LOSSES = {"price": "MSE", "range": "MSE", "volatility": "QLIKE", "interval": "interval score"}


@dataclass(frozen=True)
class LiveSkill:
    """How the stream judges a served forecast against its reference baseline, live.

    `loss` and `baseline` are judged fields (set when the next bar arrives); `squared` says
    whether they are errors to square before summing (a mean squared error) or losses summed
    as they are (QLIKE). The chart is Kibana's live-skill chart of the question.
    """

    loss: str
    baseline: str
    squared: bool
    chart_id: str
    chart_title: str
    chart_description: str
    served_label: str = "served"


@dataclass(frozen=True)
class Question:
    """One question a model answers, from one bar of a series.

    Attributes:
        name: the question's name (`--questions`, the registry's model name, document fields).
        features: the feature names a model sees (finstream.features.spec).
        label: the column a regressor fits in training.
        next_bar: True when it forecasts the next bar (False: explains this bar, the original
            report's questions).
        kind: price | range | volatility | interval: what is forecast and its training loss.
        baselines: the naive baselines beside the models; the first is the reference the DM
            test compares with and the stream serves when no model is significantly better.
        forecast_fields: field -> meaning, the doubles a served forecast adds to a prediction
            document. Empty: the stream does not serve the question.
        judged_fields: field -> meaning, the doubles the next bar adds when it judges it.
        model_field_names: the fields naming what served it (model or baseline, registered
            version, MLflow run); default <name>_model, <name>_version, <name>_run_id.
        live: how its live skill is watched, or None.
    """

    name: str
    features: tuple[str, ...]
    label: str
    next_bar: bool = True
    kind: str = "price"
    baselines: tuple[str, ...] = ("persistence", "training_mean")
    forecast_fields: dict[str, str] = field(default_factory=dict)
    judged_fields: dict[str, str] = field(default_factory=dict)
    model_field_names: tuple[str, str, str] | None = None
    live: LiveSkill | None = None

    @property
    def reference(self) -> str:
        """The naive baseline the DM test compares with and the stream falls back to."""
        return self.baselines[0]

    @property
    def served(self) -> bool:
        """Whether the stream serves it (it adds fields to a prediction document)."""
        return bool(self.forecast_fields)

    @property
    def model_fields(self) -> tuple[str, str, str]:
        """The document fields naming what served it: model or baseline, registered version, MLflow run."""
        return self.model_field_names or (f"{self.name}_model", f"{self.name}_version", f"{self.name}_run_id")

    @property
    def training_loss(self) -> str:
        return TRAINING_LOSSES[self.kind]

    @property
    def actual(self) -> str:
        """The column forecasts are judged on in training (the price for price and interval questions)."""
        return {"range": "next_log_range", "volatility": "next_sq_return"}.get(
            self.kind, "next_close" if self.next_bar else "close")

    @property
    def last_value(self) -> str:
        """The persistence baseline's column: the last close known when predicting."""
        return "close" if self.next_bar else "prev_close"

    @property
    def target_time(self) -> str:
        """When the target becomes known (the leak check's column)."""
        return "next_timestamp" if self.next_bar else "timestamp"


QUESTIONS = {
    q.name: q
    for q in (
        # The original report's questions: this bar's close from its own volume, or its open,
        # high, low and volume. Explanations, not forecasts: trained and reported, never served.
        Question("volume", ("volume",), "close", next_bar=False),
        Question("ohlv", ("open", "high", "low", "volume"), "close", next_bar=False),
        # The next close from what is known at this bar only. The model fits the next return
        # and the price is rebuilt as close x (1 + return): prices trend, and trees cannot
        # predict outside the range they were trained on.
        Question(
            "lags", LAG_FEATURES, "next_return",
            forecast_fields={"predicted_return": "the next bar's return", "predicted_close": "the next close"},
            judged_fields={"error": "predicted_close - actual_close", "abs_error": "|error|",
                           "baseline_error": "last_close - actual_close: persistence's error"},
            model_field_names=("model", "model_version", "model_run_id"),  # the first question served
            live=LiveSkill("error", "baseline_error", squared=True, chart_id="finstream-live-error",
                           chart_title="Live error: model RMSE / persistence RMSE",
                           chart_description="Judged predictions only. Below 1 the model beats 'tomorrow = "
                                             "today'; above 1 it does not.", served_label="model")),
        # The next bar's log(high / low).
        Question(
            "range", FORECAST_FEATURES, "next_log_range", kind="range", baselines=("mean_range_5", "last_range"),
            forecast_fields={"predicted_range": "the next bar's log(high/low)",
                             "baseline_range": "the 5-bar mean range (the reference baseline)"},
            judged_fields={"actual_range": "the next bar's log(high/low)",
                           "range_error": "predicted_range - actual_range",
                           "range_baseline_error": "baseline_range - actual_range"},
            live=LiveSkill("range_error", "range_baseline_error", squared=True, chart_id="finstream-range-skill",
                           chart_title="Live skill: next-bar range RMSE / 5-bar mean range RMSE",
                           chart_description="Judged range forecasts only. Below 1 the served range forecast "
                                             "beats the 5-bar mean; exactly 1 when the 5-bar mean itself is "
                                             "served (no model passed the significance test).")),
        # The next bar's squared log return: a variance forecast.
        Question(
            "volatility", FORECAST_FEATURES, "next_sq_return", kind="volatility", baselines=("ewma", "rolling_20"),
            forecast_fields={"predicted_variance": "the variance of the next bar's log return",
                             "baseline_variance": "EWMA's (the reference baseline)"},
            judged_fields={"actual_variance": "the next bar's squared log return",
                           "variance_loss": "QLIKE; absent when the close did not move",
                           "variance_baseline_loss": "EWMA's QLIKE"},
            live=LiveSkill("variance_loss", "variance_baseline_loss", squared=False,
                           chart_id="finstream-volatility-skill",
                           chart_title="Live skill: variance QLIKE / EWMA QLIKE",
                           chart_description="Judged variance forecasts only (bars whose close moved). Below 1 "
                                             "the served variance forecast beats EWMA (lambda 0.94); exactly 1 "
                                             "when EWMA itself is served.")),
        # A central 90 % interval for the next close, from a variance forecast scaled by the
        # quantiles of the standardised returns in training.
        Question(
            "interval", FORECAST_FEATURES, "next_sq_return", kind="interval",
            baselines=("rolling_std_normal", "ewma_empirical"),
            forecast_fields={"lower": "the 90 % interval's lower end for the next close",
                             "upper": "its upper end"},
            judged_fields={"inside_interval": "1 if lower <= actual_close <= upper, else 0",
                           "interval_score": "on the return scale (finstream.core.skill.interval_score)"}),
    )
}


def registered_model_name(question: str, series_set: SeriesSet | None = None) -> str:
    """The MLflow registered model of a question's versions for a series set:
    finstream-<question>-<set key> (finstream-range-hour1-fx). Without a set: finstream-<question>,
    the one registered model per question of a registry made before series sets."""
    return f"finstream-{question}" + (f"-{series_set.key}" if series_set is not None else "")


def served(questions: Iterable[Question] | None = None) -> tuple[Question, ...]:
    """The questions the stream serves (all declared ones when `questions` is None), in order."""
    return tuple(q for q in (QUESTIONS.values() if questions is None else questions) if q.served)


def watched(questions: Iterable[Question] | None = None) -> tuple[Question, ...]:
    """The served questions whose live skill is watched."""
    return tuple(q for q in served(questions) if q.live is not None)


SERVED = tuple(q.name for q in served())  # the names the stream serves: lags, range, volatility, interval
