"""Evaluation that cannot leak: one calendar cut for every series, walk-forward folds, and
each candidate's forecasts (models and naive baselines) collected for finstream.core.skill."""

from __future__ import annotations

import pandas as pd
from pyspark.ml import PipelineModel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from finstream.core import skill
from finstream.core.questions import Question
from finstream.core.schema import SERIES

KEYS = (*SERIES, "timestamp")


class LeakageError(AssertionError):
    """A training row, or its label, is not strictly earlier than every test row of every series."""


def with_position(rows: DataFrame) -> DataFrame:
    """Adds `position` in [0, 1]: where the row's time stands among all rows' times (the
    percent rank: rows strictly earlier / (rows - 1)). One ordering for all series, so a cut
    at a position is one calendar date for every ticker (an equity and a crypto series trade
    on different days; per-series cuts would let one ticker's training rows postdate another's
    test rows). Rows at the same time share it. Ranked over the distinct times, not the rows,
    so the rows keep their partitions (a window over all rows would put them in one)."""
    per_time = rows.groupBy("timestamp").count()
    earlier = F.coalesce(F.sum("count").over(Window.orderBy("timestamp").rowsBetween(Window.unboundedPreceding, -1)),
                         F.lit(0))
    total = F.sum("count").over(Window.partitionBy())
    positions = per_time.select("timestamp", F.when(total > 1, earlier / (total - 1)).otherwise(0.0).alias("position"))
    return rows.join(positions, "timestamp")


def split_at(rows: DataFrame, question: Question, train_end: float,
             test_end: float | None = None) -> tuple[DataFrame, DataFrame]:
    """Rows with position < train_end train, those in [train_end, test_end) test; training
    rows whose label is only known once the test period has begun are left out (an embargo:
    the last bar before the cut would otherwise learn the first test bar's close)."""
    test = rows.where(F.col("position") >= train_end)
    test = test if test_end is None else test.where(F.col("position") < test_end)
    test_start = test.agg(F.min("timestamp")).collect()[0][0]
    train = rows.where(F.col("position") < train_end)
    if test_start is not None:
        train = train.where(F.col(question.target_time) < F.lit(test_start))
    assert_chronological(train, test, question)
    return train, test


def assert_chronological(train: DataFrame, test: DataFrame, question: Question) -> None:
    """Raises LeakageError unless every training row and every training label, of any series,
    come strictly before the first test row of any series."""
    last_train, last_label = train.agg(F.max("timestamp"), F.max(question.target_time)).collect()[0]
    first_test = test.agg(F.min("timestamp")).collect()[0][0]
    if first_test is None or last_train is None:
        return
    if last_train >= first_test or (last_label is not None and last_label >= first_test):
        leaks = (train.where((F.col("timestamp") >= first_test) | (F.col(question.target_time) >= first_test))
                 .groupBy("ticker").count().collect())
        raise LeakageError(f"training data reaches into the test period (first test bar {first_test}): "
                           f"{[r.asDict() for r in leaks]}")


def walk_forward(rows: DataFrame, question: Question, folds: int, start: float = 0.5):
    """Expanding-window folds: fold i trains on everything before block i of the last
    (1 - start) of the period, and tests on block i (cuts shared by every series)."""
    if folds <= 0:
        return
    width = (1.0 - start) / folds
    for i in range(folds):
        lo = start + i * width
        train, test = split_at(rows, question, lo, None if i == folds - 1 else lo + width)
        yield i, train, test


# --- candidates' forecasts -------------------------------------------------------------------
def _interval(center: Column, sigma: Column, quantiles: tuple[float, float]) -> tuple[Column, Column]:
    return center * F.exp(F.lit(quantiles[0]) * sigma), center * F.exp(F.lit(quantiles[1]) * sigma)


def price(question: Question, prediction: Column) -> Column:
    """A price question's regressor output as a price: close x (1 + return) when it fits the
    next return, else the prediction itself."""
    return F.col("close") * (1 + prediction) if question.label == "next_return" else prediction


def model_forecast(question: Question, prediction: Column) -> Column:
    """A regressor's output on the question's target scale (variance forecasts floored)."""
    if question.kind == "price":
        return price(question, prediction)
    if question.kind in ("volatility", "interval"):
        return F.greatest(prediction, F.lit(skill.VARIANCE_FLOOR) * F.col("ewma"))
    return prediction


def standardised_quantiles(rows: DataFrame, variance: Column) -> tuple[float, float]:
    """The ALPHA/2 and 1 - ALPHA/2 quantiles of next_log_return / sqrt(variance) over `rows`."""
    z = rows.select((F.col("next_log_return") / F.sqrt(variance)).alias("z"))
    lo, hi = z.agg(F.expr(f"percentile(z, {skill.ALPHA / 2})"),
                   F.expr(f"percentile(z, {1 - skill.ALPHA / 2})")).collect()[0]
    return float(lo), float(hi)


def baseline_forecasts(question: Question, train: DataFrame) -> dict[str, Column | tuple[Column, Column]]:
    """Each naive baseline's forecast column(s), computed from the row's past (and, for the
    training mean and the empirical EWMA interval, from `train`)."""
    if question.kind == "price":
        mean_price = train.agg(F.avg(question.actual)).collect()[0][0]
        return {"persistence": F.col(question.last_value), "training_mean": F.lit(mean_price)}
    if question.kind == "interval":
        sigma = F.col("log_std_20")
        normal = _interval(F.col("close"), sigma, (-skill.Z_NORMAL, skill.Z_NORMAL))
        empirical = _interval(F.col("close"), F.sqrt("ewma"), standardised_quantiles(train, F.col("ewma")))
        return {"rolling_std_normal": normal, "ewma_empirical": empirical}
    return {name: F.col(name) for name in question.baselines}


def model_quantiles(model: PipelineModel, question: Question, train: DataFrame) -> tuple[float, float]:
    """An interval model's scale: the quantiles of returns standardised by its training forecasts."""
    return standardised_quantiles(model.transform(train), model_forecast(question, F.col("prediction")))


def scored_frame(rows: DataFrame, question: Question, train: DataFrame, models: dict[str, PipelineModel],
                 quantiles: dict[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """Every candidate's forecast for each row of `rows`, collected (finstream.core.skill's frame:
    keys, `close`, `actual`, `f:<name>` or `lo:<name>`/`hi:<name>`)."""
    scored = rows
    for kind, model in models.items():
        scored = (model.transform(scored).withColumn(f"_p_{kind}", F.col("prediction"))
                  .drop("prediction", "raw_features", "features"))
    columns: list[Column] = [*map(F.col, KEYS), F.col(question.last_value).alias("last"),
                             F.col(question.actual).alias("actual")]
    candidates = dict(baseline_forecasts(question, train))
    for kind in models:
        forecast = model_forecast(question, F.col(f"_p_{kind}"))
        candidates[kind] = (_interval(F.col("close"), F.sqrt(forecast), quantiles[kind])
                            if question.kind == "interval" else forecast)
    for name, forecast in candidates.items():
        if isinstance(forecast, tuple):
            lo, hi = skill.interval_columns(name)
            columns += [forecast[0].alias(lo), forecast[1].alias(hi)]
        else:
            columns.append(forecast.alias(skill.forecast_column(name)))
    return scored.select(*columns).toPandas()
