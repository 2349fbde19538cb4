"""Evaluation that cannot leak: chronological splits per series, walk-forward folds,
baselines, and metrics on the price scale."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from finstream.spark.features import SERIES, Question


class LeakageError(AssertionError):
    """A training row is not strictly earlier than every test row of its series."""


def with_position(rows: DataFrame) -> DataFrame:
    """Adds `position` in [0, 1]: where the row stands in its series' time order."""
    w = Window.partitionBy(*SERIES).orderBy("timestamp")
    return rows.withColumn("position", F.percent_rank().over(w))


def split_at(rows: DataFrame, question: Question, train_end: float, test_end: float | None = None) -> tuple[DataFrame, DataFrame]:
    """Rows with position < train_end train, those in [train_end, test_end) test; training
    rows whose label is only known inside the test period are left out (an embargo: the
    last bar before the test period would otherwise learn the first test bar's close)."""
    test = rows.where(F.col("position") >= train_end)
    test = test if test_end is None else test.where(F.col("position") < test_end)
    test_start = test.groupBy(*SERIES).agg(F.min("timestamp").alias("_test_start"))
    train = (
        rows.where(F.col("position") < train_end)
        .join(test_start, list(SERIES), "left")
        .where(F.col("_test_start").isNull() | (F.col(question.target_time) < F.col("_test_start")))
        .drop("_test_start")
    )
    assert_chronological(train, test, question)
    return train, test


def assert_chronological(train: DataFrame, test: DataFrame, question: Question) -> None:
    """Raises LeakageError unless, in every series, every training row and every training
    label come strictly before the first test row."""
    train_end = train.groupBy(*SERIES).agg(
        F.max("timestamp").alias("last_train"), F.max(question.target_time).alias("last_label"))
    test_start = test.groupBy(*SERIES).agg(F.min("timestamp").alias("first_test"))
    leaks = (
        train_end.join(test_start, list(SERIES))
        .where((F.col("last_train") >= F.col("first_test")) | (F.col("last_label") >= F.col("first_test")))
        .collect()
    )
    if leaks:
        raise LeakageError(f"training data reaches into the test period: {[r.asDict() for r in leaks]}")


def walk_forward(rows: DataFrame, question: Question, folds: int, start: float = 0.5):
    """Expanding-window folds: fold i trains on everything before block i of the last
    (1 - start) of each series, and tests on block i."""
    if folds <= 0:
        return
    width = (1.0 - start) / folds
    for i in range(folds):
        lo = start + i * width
        train, test = split_at(rows, question, lo, None if i == folds - 1 else lo + width)
        yield i, train, test


@dataclass(frozen=True)
class Metrics:
    n: int
    rmse: float
    mae: float
    mse: float
    r2: float
    mape: float
    direction: float | None  # share of next-bar moves predicted with the right sign

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


def price_metrics(predictions: DataFrame, question: Question, predicted: str = "predicted_close",
                  directional: bool = True) -> Metrics:
    """Metrics of `predicted` against the actual price, in one pass."""
    actual, last = F.col(question.actual), F.col(question.last_value)
    error = F.col(predicted) - actual
    row = predictions.agg(
        F.count(F.lit(1)).alias("n"),
        F.avg(error * error).alias("mse"),
        F.avg(F.abs(error)).alias("mae"),
        F.avg(F.abs(error) / F.abs(actual)).alias("mape"),
        F.var_pop(actual).alias("variance"),
        F.avg((F.signum(F.col(predicted) - last) == F.signum(actual - last)).cast("double")).alias("direction"),
    ).collect()[0]
    if not row.n:
        raise ValueError("no rows to evaluate: too little data for this split")
    r2 = 1 - row.mse / row.variance if row.variance else float("nan")
    return Metrics(row.n, math.sqrt(row.mse), row.mae, row.mse, r2, 100 * row.mape,
                   row.direction if question.next_bar and directional else None)


def with_baselines(test: DataFrame, question: Question, train: DataFrame) -> dict[str, DataFrame]:
    """The baselines every report shows: the training mean of the price, and persistence
    (the last close known at prediction time)."""
    mean_price = train.agg(F.avg(question.actual)).collect()[0][0]
    return {
        "baseline_mean": test.withColumn("predicted_close", F.lit(mean_price)),
        "baseline_last_value": test.withColumn("predicted_close", F.col(question.last_value)),
    }
