"""Features and targets, per series (ticker, timespan, multiplier), ordered by time.

The questions a user can ask (`--questions`):
- volume:     this bar's close from its volume (the original report's question);
- ohlv:       this bar's close from its open, high, low and volume (the report's next step);
- lags:       the NEXT bar's close from what is known at this bar only (real forecasting).
  The model fits the next return and the price is rebuilt as close x (1 + return): prices
  trend, and trees cannot predict outside the range they were trained on;
- range:      the next bar's log(high / low);
- volatility: the next bar's squared log return (a variance forecast);
- interval:   a central 90 % interval for the next close, from a variance forecast scaled
  by the quantiles of the standardised returns in training.
Each forecasting question has naive baselines (finstream.skill), computed here from past
bars with the same formulas the stream uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from finstream import skill
from finstream.schema import FORECAST_FEATURES, LAG_FEATURES
from finstream.scoring import HISTORY_BARS, HOUR_MS, WEEKDAY_OF_EPOCH

SERIES = ("ticker", "timespan", "multiplier")


def series_window() -> Window:
    return Window.partitionBy(*SERIES).orderBy("timestamp")


def trailing(rows: int) -> Window:
    """The current bar and the rows-1 before it, never a later one."""
    return series_window().rowsBetween(-(rows - 1), 0)


@dataclass(frozen=True)
class Question:
    name: str
    features: tuple[str, ...]
    label: str  # what the regressor fits
    next_bar: bool  # True: forecasts the next bar
    kind: str = "price"  # price | range | volatility | interval: what is forecast, how it is judged
    # The naive baselines (columns of with_features) beside the models; the first is the
    # reference the DM test compares with and the stream falls back to.
    baselines: tuple[str, ...] = ("persistence", "training_mean")

    @property
    def reference(self) -> str:
        return self.baselines[0]

    @property
    def actual(self) -> str:
        """What forecasts are judged on (the price for price and interval questions)."""
        return {"range": "next_log_range", "volatility": "next_sq_return"}.get(
            self.kind, "next_close" if self.next_bar else "close")

    @property
    def last_value(self) -> str:
        """The persistence baseline: the last close known when predicting."""
        return "close" if self.next_bar else "prev_close"

    @property
    def target_time(self) -> str:
        """When the predicted price becomes known (for the leak check)."""
        return "next_timestamp" if self.next_bar else "timestamp"

    def price(self, prediction: Column) -> Column:
        """A model's prediction as a price."""
        return F.col("close") * (1 + prediction) if self.label == "next_return" else prediction


QUESTIONS = {
    q.name: q
    for q in (
        Question("volume", ("volume",), "close", next_bar=False),
        Question("ohlv", ("open", "high", "low", "volume"), "close", next_bar=False),
        Question("lags", LAG_FEATURES, "next_return", next_bar=True),
        Question("range", FORECAST_FEATURES, "next_log_range", next_bar=True, kind="range",
                 baselines=("mean_range_5", "last_range")),
        Question("volatility", FORECAST_FEATURES, "next_sq_return", next_bar=True, kind="volatility",
                 baselines=("ewma", "rolling_20")),
        Question("interval", FORECAST_FEATURES, "next_sq_return", next_bar=True, kind="interval",
                 baselines=("rolling_std_normal", "ewma_empirical")),
    )
}
FORECASTS = ("lags", "range", "volatility", "interval")  # the questions the stream serves


def with_neighbours(bars: DataFrame) -> DataFrame:
    """Adds the previous and next bar's close and time within each series."""
    w = series_window()
    return (
        bars.withColumn("prev_close", F.lag("close", 1).over(w))
        .withColumn("next_close", F.lead("close", 1).over(w))
        .withColumn("next_timestamp", F.lead("timestamp", 1).over(w))
        .withColumn("next_return", F.col("next_close") / F.col("close") - 1)
    )


def with_lag_features(bars: DataFrame) -> DataFrame:
    """Adds LAG_FEATURES, each computed from the current and earlier bars only."""
    w = series_window()
    returns = bars.withColumn("ret_1", F.col("close") / F.lag("close", 1).over(w) - 1)
    return (
        returns.withColumn("ret_2", F.lag("ret_1", 1).over(w))
        .withColumn("ret_3", F.lag("ret_1", 2).over(w))
        .withColumn("ret_mean_5", F.avg("ret_1").over(trailing(5)))
        .withColumn("ret_std_5", F.stddev_samp("ret_1").over(trailing(5)))
        .withColumn("ret_mean_20", F.avg("ret_1").over(trailing(20)))
        .withColumn("ret_std_20", F.stddev_samp("ret_1").over(trailing(20)))
        .withColumn("range_pct", (F.col("high") - F.col("low")) / F.col("close"))
        .withColumn("body_pct", (F.col("close") - F.col("open")) / F.col("open"))
        # volume and vwap are optional (index aggregates have neither): 1 and 0 = no information
        # rather than a dropped bar (finstream.scoring.lag_features says the same).
        .withColumn("volume_ratio_20", F.when(F.col("volume").isNull(), F.lit(1.0))
                    .otherwise(F.col("volume") / F.avg("volume").over(trailing(20))))
        .withColumn("vwap_gap", F.coalesce((F.col("close") - F.col("vwap")) / F.col("close"), F.lit(0.0)))
        .withColumn("close_to_mean_20", F.col("close") / F.avg("close").over(trailing(20)) - 1)
        .withColumn("_history", F.count("close").over(trailing(HISTORY_BARS)))
    )


def with_volatility_columns(rows: DataFrame) -> DataFrame:
    """Adds the calendar features, log returns and ranges, the next bar's range and squared
    return (targets), and the naive baselines of the range and volatility questions, each from
    the current and earlier bars only (the formulas of finstream.skill)."""
    w = series_window()
    ewma = F.lit(0.0)
    for k, weight in enumerate(skill.ewma_weights()):  # newest first, as skill.ewma_variance adds them
        ewma = ewma + F.lit(weight) * F.lag("sq_return", k).over(w)
    ewma_norm = 0.0
    for weight in skill.ewma_weights():
        ewma_norm = ewma_norm + weight
    hours = F.expr(f"div(timestamp, {HOUR_MS})")
    return (
        rows.withColumn("hour_of_day", F.pmod(hours, F.lit(24)).cast("double"))
        .withColumn("day_of_week", F.pmod(F.expr(f"div(timestamp, {24 * HOUR_MS})") + WEEKDAY_OF_EPOCH,
                                          F.lit(7)).cast("double"))
        .withColumn("log_return", F.log(F.col("close") / F.col("prev_close")))
        .withColumn("sq_return", F.col("log_return") * F.col("log_return"))
        .withColumn("log_range", F.log(F.col("high") / F.col("low")))
        .withColumn("next_log_return", F.lead("log_return", 1).over(w))
        .withColumn("next_sq_return", F.col("next_log_return") * F.col("next_log_return"))
        .withColumn("next_log_range", F.lead("log_range", 1).over(w))
        .withColumn("last_range", F.col("log_range"))
        .withColumn("mean_range_5", F.avg("log_range").over(trailing(skill.RANGE_BARS)))
        .withColumn("rolling_20", F.avg("sq_return").over(trailing(skill.VARIANCE_BARS)))
        .withColumn("ewma", ewma / F.lit(ewma_norm))
        .withColumn("log_std_20", F.stddev_samp("log_return").over(trailing(skill.VARIANCE_BARS)))
    )


def with_features(bars: DataFrame, question: Question) -> DataFrame:
    """Bars with the question's features, label and baselines' inputs; rows that lack any
    (too little history, or no next bar yet) are kept, marked by `eligible` / `labelled`."""
    rows = with_neighbours(bars)
    if question.name != "volume" and question.name != "ohlv":
        rows = with_volatility_columns(with_lag_features(rows))
    has_features = F.lit(True)
    for name in question.features:
        has_features = has_features & F.col(name).isNotNull() & ~F.isnan(F.col(name))
    if question.next_bar:
        has_features = has_features & (F.col("_history") >= HISTORY_BARS)
    labelled = (F.col(question.label).isNotNull() & F.col(question.actual).isNotNull()
                & F.col(question.last_value).isNotNull())
    if question.kind == "volatility":
        labelled = labelled & (F.col("next_sq_return") > 0)  # QLIKE needs a move (see finstream.skill)
    if question.kind in ("volatility", "interval"):
        has_features = has_features & (F.col("ewma") > 0) & (F.col("log_std_20") > 0)
    return rows.withColumn("eligible", has_features).withColumn("labelled", F.col("eligible") & labelled)


def training_rows(bars: DataFrame, question: Question) -> DataFrame:
    return with_features(bars, question).where(F.col("labelled"))
