"""The features, targets and naive baselines as Spark columns, per series (ticker, timespan,
multiplier) ordered by time: what the trainer fits and evaluates on. The spec is
finstream.features.spec; the stream's implementation is finstream.features.scalar, and
tests/unit/test_feature_parity.py checks that both give the same floats.

Every feature and baseline is computed from the bar and earlier bars of its series only; the
targets (next_*) come from the bar after it. Two selects, because a window function cannot take
another's result in the same one: the per-bar columns, then those over the returns.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from finstream.core import skill
from finstream.core.questions import Question
from finstream.core.schema import SERIES
from finstream.features.spec import HISTORY_BARS, HOUR_MS, LONG_WINDOW, SHORT_WINDOW, WEEKDAY_OF_EPOCH

HISTORY_COUNT = "_history"  # bars in the trailing HISTORY_BARS frame: < HISTORY_BARS is too little history


def series_window() -> Window:
    """Each series' bars in time order."""
    return Window.partitionBy(*SERIES).orderBy("timestamp")


def trailing(rows: int) -> Window:
    """The current bar and the rows-1 before it, never a later one."""
    return series_window().rowsBetween(-(rows - 1), 0)


def neighbour_columns() -> list[Column]:
    """The previous and next bar's close and time, and the next return (the `lags` label)."""
    w = series_window()
    return [F.lag("close", 1).over(w).alias("prev_close"),
            F.lead("close", 1).over(w).alias("next_close"),
            F.lead("timestamp", 1).over(w).alias("next_timestamp"),
            (F.lead("close", 1).over(w) / F.col("close") - 1).alias("next_return")]


def per_bar_columns() -> list[Column]:
    """Features from the bar and windows over raw columns: returns, shape, volume, vwap, calendar."""
    w = series_window()
    log_return = F.log(F.col("close") / F.lag("close", 1).over(w))
    hours = F.expr(f"div(timestamp, {HOUR_MS})")
    return [
        (F.col("close") / F.lag("close", 1).over(w) - 1).alias("ret_1"),
        ((F.col("high") - F.col("low")) / F.col("close")).alias("range_pct"),
        ((F.col("close") - F.col("open")) / F.col("open")).alias("body_pct"),
        # volume and vwap are optional (index aggregates have neither): 1 and 0 = no information
        # rather than a dropped bar (finstream.features.scalar.lag_features says the same).
        F.when(F.col("volume").isNull(), F.lit(1.0))
        .otherwise(F.col("volume") / F.avg("volume").over(trailing(LONG_WINDOW))).alias(f"volume_ratio_{LONG_WINDOW}"),
        F.coalesce((F.col("close") - F.col("vwap")) / F.col("close"), F.lit(0.0)).alias("vwap_gap"),
        (F.col("close") / F.avg("close").over(trailing(LONG_WINDOW)) - 1).alias(f"close_to_mean_{LONG_WINDOW}"),
        F.count("close").over(trailing(HISTORY_BARS)).alias(HISTORY_COUNT),
        F.pmod(hours, F.lit(24)).cast("double").alias("hour_of_day"),
        F.pmod(F.expr(f"div(timestamp, {24 * HOUR_MS})") + WEEKDAY_OF_EPOCH, F.lit(7)).cast("double")
        .alias("day_of_week"),
        log_return.alias("log_return"),
        (log_return * log_return).alias("sq_return"),
        F.log(F.col("high") / F.col("low")).alias("log_range"),
    ]


def return_window_columns() -> list[Column]:
    """Features over the returns, the range and volatility targets, and the naive baselines
    (the formulas of finstream.core.skill)."""
    w = series_window()
    ewma = F.lit(0.0)
    for k, weight in enumerate(skill.ewma_weights()):  # newest first, as skill.ewma_variance adds them
        ewma = ewma + F.lit(weight) * F.lag("sq_return", k).over(w)
    ewma_norm = 0.0
    for weight in skill.ewma_weights():
        ewma_norm = ewma_norm + weight
    next_log_return = F.lead("log_return", 1).over(w)
    return [
        F.lag("ret_1", 1).over(w).alias("ret_2"),
        F.lag("ret_1", 2).over(w).alias("ret_3"),
        F.avg("ret_1").over(trailing(SHORT_WINDOW)).alias(f"ret_mean_{SHORT_WINDOW}"),
        F.stddev_samp("ret_1").over(trailing(SHORT_WINDOW)).alias(f"ret_std_{SHORT_WINDOW}"),
        F.avg("ret_1").over(trailing(LONG_WINDOW)).alias(f"ret_mean_{LONG_WINDOW}"),
        F.stddev_samp("ret_1").over(trailing(LONG_WINDOW)).alias(f"ret_std_{LONG_WINDOW}"),
        next_log_return.alias("next_log_return"),
        (next_log_return * next_log_return).alias("next_sq_return"),
        F.lead("log_range", 1).over(w).alias("next_log_range"),
        F.col("log_range").alias("last_range"),
        F.avg("log_range").over(trailing(skill.RANGE_BARS)).alias("mean_range_5"),
        F.avg("sq_return").over(trailing(skill.VARIANCE_BARS)).alias("rolling_20"),
        (ewma / F.lit(ewma_norm)).alias("ewma"),
        F.stddev_samp("log_return").over(trailing(skill.VARIANCE_BARS)).alias("log_std_20"),
    ]


def eligible(question: Question) -> Column:
    """A bar with every feature of the question (and, forecasting, enough history and a
    positive variance baseline for the variance questions)."""
    has_features = F.lit(True)
    for name in question.features:
        has_features = has_features & F.col(name).isNotNull() & ~F.isnan(F.col(name))
    if question.next_bar:
        has_features = has_features & (F.col(HISTORY_COUNT) >= HISTORY_BARS)
    if question.kind in ("volatility", "interval"):
        has_features = has_features & (F.col("ewma") > 0) & (F.col("log_std_20") > 0)
    return has_features


def labelled(question: Question) -> Column:
    """An eligible bar whose target, actual and last value are known."""
    known = (F.col(question.label).isNotNull() & F.col(question.actual).isNotNull()
             & F.col(question.last_value).isNotNull())
    if question.kind == "volatility":
        known = known & (F.col("next_sq_return") > 0)  # QLIKE needs a move (see finstream.core.skill)
    return F.col("eligible") & known


def with_features(bars: DataFrame, question: Question) -> DataFrame:
    """Bars -> bars with the question's features, label and baselines' inputs.

    Args:
        bars: valid bars (finstream.core.schema.Bar columns), any order.
        question: which features and label (the original report's questions, which explain
            this bar, need neither the return features nor the baselines).

    Returns:
        The bars' columns, prev_close, next_close, next_timestamp, next_return and, for a
        forecasting question, the spec's features, the targets and the baselines; plus
        `eligible` (every feature known) and `labelled` (eligible, and its target known).
        Rows that lack a feature or a target are kept, marked by those two.
    """
    rows = bars.select("*", *neighbour_columns())
    if question.next_bar:  # a forecasting question
        rows = rows.select("*", *per_bar_columns()).select("*", *return_window_columns())
    rows = rows.withColumn("eligible", eligible(question))
    return rows.withColumn("labelled", labelled(question))


def training_rows(bars: DataFrame, question: Question) -> DataFrame:
    """The labelled rows of with_features: what models are fitted and evaluated on."""
    return with_features(bars, question).where(F.col("labelled"))
