"""Features and targets, per series (ticker, timespan, multiplier), ordered by time.

Three questions a user can ask (`--features`):
- volume: this bar's close from its volume (the original report's question);
- ohlv:   this bar's close from its open, high, low and volume (the report's next step);
- lags:   the NEXT bar's close from what is known at this bar only (real forecasting).
  The model fits the next return and the price is rebuilt as close x (1 + return): prices
  trend, and trees cannot predict outside the range they were trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from finstream.schema import LAG_FEATURES
from finstream.scoring import HISTORY_BARS

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
    next_bar: bool  # True: predicts the next bar's close

    @property
    def actual(self) -> str:
        """The price predictions are judged on."""
        return "next_close" if self.next_bar else "close"

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
    )
}


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
        .withColumn("volume_ratio_20", F.col("volume") / F.avg("volume").over(trailing(20)))
        # vwap is optional in a bar; 0 = no information rather than a dropped bar.
        .withColumn("vwap_gap", F.coalesce((F.col("close") - F.col("vwap")) / F.col("close"), F.lit(0.0)))
        .withColumn("close_to_mean_20", F.col("close") / F.avg("close").over(trailing(20)) - 1)
        .withColumn("_history", F.count("close").over(trailing(HISTORY_BARS)))
    )


def with_features(bars: DataFrame, question: Question) -> DataFrame:
    """Bars with the question's features, label and baselines' inputs; rows that lack any
    (too little history, or no next bar yet) are kept, marked by `eligible` / `labelled`."""
    rows = with_lag_features(with_neighbours(bars)) if question.name == "lags" else with_neighbours(bars)
    has_features = F.lit(True)
    for name in question.features:
        has_features = has_features & F.col(name).isNotNull() & ~F.isnan(F.col(name))
    if question.name == "lags":
        has_features = has_features & (F.col("_history") >= HISTORY_BARS)
    labelled = F.col(question.label).isNotNull() & F.col(question.actual).isNotNull() & F.col(question.last_value).isNotNull()
    return rows.withColumn("eligible", has_features).withColumn("labelled", F.col("eligible") & labelled)


def training_rows(bars: DataFrame, question: Question) -> DataFrame:
    return with_features(bars, question).where(F.col("labelled"))
