"""Real-time prediction: every new bar of a served series is scored in the stream by the
latest `lags` model, with the trainer's own feature code.

    bars ─▶ watermark (publish time) ─▶ per series, Spark state: the last HISTORY_BARS bars
         ─▶ micro-batch rows: each series' remembered bars ("history") + its new ones ("new")
         ─▶ with_features (the trainer's function) ─▶ model at MODEL_DIR/lags/LATEST
         ├─▶ prediction documents, id = the bar's doc id
         └─▶ actual and error on the earlier predictions the new bars answer

Order and lateness, per series: bars of one micro-batch may arrive in any order (they are
sorted). A bar older than the newest one already remembered is `late`, and one whose time is
already remembered is a `duplicate`: both are indexed as bars by the index query, neither is
predicted or added to the history (predictions already made stay as they are). Records
published more than STREAM_WATERMARK_DELAY behind the newest record seen are dropped by the
watermark before the state (counted in the progress metrics as rows_dropped_by_watermark).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.ml import PipelineModel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from finstream import modelstore
from finstream import schema as S
from finstream.config import Settings
from finstream.spark.bars import bar_doc_id
from finstream.spark.features import HISTORY_BARS, QUESTIONS, SERIES, with_features
from finstream.spark.training import predict

log = logging.getLogger("finstream.predict")

QUESTION = QUESTIONS["lags"]  # the one question that forecasts: the next bar's close
HISTORY_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "vwap")
# Row status: a remembered bar (ANSWERED: the newest one, when new bars follow it), a new bar,
# or an incoming bar that is not used (late or duplicate).
HISTORY, ANSWERED, NEW, LATE, DUPLICATE = "history", "answered", "new", "late", "duplicate"

STATE_SCHEMA = T.StructType(
    [T.StructField("timestamp", T.ArrayType(T.LongType()))]
    + [T.StructField(name, T.ArrayType(T.DoubleType())) for name in HISTORY_COLUMNS[1:]])
ROW_SCHEMA = T.StructType(
    [T.StructField("ticker", T.StringType()), T.StructField("timespan", T.StringType()),
     T.StructField("multiplier", T.IntegerType()), T.StructField("timestamp", T.LongType())]
    + [T.StructField(name, T.DoubleType()) for name in HISTORY_COLUMNS[1:]]
    + [T.StructField("published_at", T.LongType()), T.StructField("status", T.StringType())])
ROW_COLUMNS = tuple(ROW_SCHEMA.fieldNames())


# --- the stateful step (runs on executors) ------------------------------------------------------
def idle_timeout_ms(timespan: str, multiplier: int, idle_hours: float) -> int:
    """How long a series may publish nothing before its history is dropped: the configured
    time, or three of its bars if that is longer (a monthly series waits a month per bar)."""
    return int(max(idle_hours * 3_600_000, 3 * S.TIMESPAN_SECONDS[timespan] * int(multiplier) * 1000))


def keep_history(key: tuple, frames: Iterator[pd.DataFrame], state: GroupState, *,
                 idle_hours: float) -> Iterator[pd.DataFrame]:
    """applyInPandasWithState body for one series: emits its remembered bars and this
    batch's bars (each marked new, late or duplicate), and remembers the newest HISTORY_BARS."""
    if state.hasTimedOut:
        state.remove()
        return
    incoming = pd.concat(list(frames), ignore_index=True)
    if incoming.empty:
        return
    history = pd.DataFrame(dict(zip(HISTORY_COLUMNS, state.get))) if state.exists else \
        pd.DataFrame({name: pd.Series(dtype="int64" if name == "timestamp" else "float64") for name in HISTORY_COLUMNS})
    # Several copies of a bar in one batch: the last published wins, as in the bars index.
    incoming = incoming.sort_values(["timestamp", "kafka_offset"], kind="stable")
    repeated = incoming.duplicated("timestamp", keep="last") | incoming["timestamp"].isin(history["timestamp"])
    late = incoming["timestamp"] < (history["timestamp"].max() if len(history) else np.iinfo("int64").min)
    incoming["status"] = np.select([repeated, late], [DUPLICATE, LATE], NEW)

    remembered = pd.concat([history, incoming.loc[incoming["status"] == NEW, list(HISTORY_COLUMNS)]],
                           ignore_index=True).tail(HISTORY_BARS)
    state.update(tuple(_nullable_list(remembered[name]) for name in HISTORY_COLUMNS))
    ticker, timespan, multiplier = key
    timeout = int(incoming["published_at"].max()) + idle_timeout_ms(timespan, multiplier, idle_hours)
    state.setTimeoutTimestamp(max(timeout, state.getCurrentWatermarkMs() + 1))

    history = history.assign(published_at=np.nan, status=HISTORY)
    if len(history) and (incoming["status"] == NEW).any():
        history.loc[history.index[-1], "status"] = ANSWERED
    rows = pd.concat([history, incoming], ignore_index=True)
    rows["ticker"], rows["timespan"], rows["multiplier"] = ticker, timespan, int(multiplier)
    yield rows[list(ROW_COLUMNS)]


def _nullable_list(values: pd.Series) -> list:
    return [None if pd.isna(v) else v.item() if hasattr(v, "item") else v for v in values]


def series_rows(bars: DataFrame, settings: Settings) -> DataFrame:
    """Streaming valid bars -> per micro-batch, each series' remembered and new bars."""
    published = F.timestamp_seconds(F.col("published_at") / 1000).alias("published")
    return (
        bars.select(*SERIES, *HISTORY_COLUMNS, "published_at", "kafka_offset", published)
        .withWatermark("published", settings.stream_watermark_delay)
        .groupBy(*SERIES)
        .applyInPandasWithState(partial(keep_history, idle_hours=settings.stream_series_idle_hours),
                                ROW_SCHEMA, STATE_SCHEMA, "update", GroupStateTimeout.EventTimeTimeout)
    )


# --- the model being served (driver) ---------------------------------------------------------
@dataclass(frozen=True)
class ServedModel:
    version: str
    kind: str
    model: PipelineModel
    timespan: str
    multiplier: int
    tickers: tuple[str, ...]  # empty: every ticker of the timespan

    def covers(self) -> Column:
        """The series this model was trained for."""
        cond = (F.col("timespan") == self.timespan) & (F.col("multiplier") == self.multiplier)
        return cond & F.col("ticker").isin(*self.tickers) if self.tickers else cond


class ModelRegistry:
    """MODEL_DIR/lags/LATEST, re-read before every micro-batch: a version published by
    train.py is served from the next batch on, without a restart."""

    def __init__(self, model_dir: Path, loader=PipelineModel.load) -> None:
        self.model_dir = model_dir
        self._loader = loader
        self._served: ServedModel | None = None
        self._tried: str | None = None
        self._warned = False

    def current(self) -> ServedModel | None:
        version = modelstore.latest_version(self.model_dir, QUESTION.name)
        if version is None:
            if not self._warned:
                log.warning("no model at %s yet: bars are indexed but not predicted; run jobs/train.py and "
                            "predictions start with the next micro-batch",
                            self.model_dir / QUESTION.name / modelstore.LATEST)
                self._warned = True
            return None
        if version != self._tried:
            self._tried = version
            try:
                self._served = self._load(version)
                log.info("serving model %s (%s) for %s bars x%d%s", version, self._served.kind,
                         self._served.timespan, self._served.multiplier,
                         f" of {', '.join(self._served.tickers)}" if self._served.tickers else "")
            except Exception as exc:  # noqa: BLE001 - a bad model must not stop the stream
                log.error("cannot serve model %s (%s); %s", version, str(exc).splitlines()[0][:300],
                          f"still serving {self._served.version}" if self._served else "no predictions until one loads")
        return self._served

    def _load(self, version: str) -> ServedModel:
        metadata = modelstore.load_metadata(self.model_dir, QUESTION.name, version)
        if tuple(metadata["features"]) != QUESTION.features:
            raise ValueError(f"it was trained on features {metadata['features']}, this code computes "
                             f"{list(QUESTION.features)}: retrain it")
        series = metadata["series"]
        model = self._loader(str(modelstore.version_dir(self.model_dir, QUESTION.name, version) / "model"))
        return ServedModel(version, metadata["model"], model, series["timespan"], int(series["multiplier"]),
                           tuple(series.get("tickers") or ()))


# --- per micro-batch (pure DataFrame -> DataFrame) --------------------------------------------
def feature_rows(rows: DataFrame) -> DataFrame:
    """History and new bars through the trainer's feature function: a new bar with 20
    remembered bars before it gets exactly the features training computes for it."""
    return with_features(rows.where(F.col("status").isin(HISTORY, ANSWERED, NEW)), QUESTION)


def _judged(predicted: Column, last_close: Column, actual: Column) -> list[Column]:
    return [(predicted - actual).alias("error"), F.abs(predicted - actual).alias("abs_error"),
            (last_close - actual).alias("baseline_error")]


def prediction_documents(featured: DataFrame, served: ServedModel, predicted_at_ms: int) -> DataFrame:
    """One document per new, eligible bar of a served series. When the next bar came in the
    same batch, the document already carries the actual close and the errors."""
    scored = predict(served.model, featured.where((F.col("status") == NEW) & F.col("eligible") & served.covers()),
                     QUESTION)
    predicted_at = F.lit(predicted_at_ms).cast("long")
    return scored.select(
        bar_doc_id(scored).alias("doc_id"), *SERIES, "timestamp",
        F.lit(QUESTION.actual).alias("target"),
        F.col("close").alias("last_close"),
        F.col("prediction").alias("predicted_return"),
        F.col("predicted_close"),
        F.lit(served.kind).alias("model"),
        F.lit(served.version).alias("model_version"),
        F.struct(*QUESTION.features).alias("features"),
        F.col("published_at"),
        predicted_at.alias("predicted_at"),
        (predicted_at - F.col("published_at")).alias("latency_ms"),
        F.col("next_timestamp").alias("actual_timestamp"),
        F.col("next_close").alias("actual_close"),
        *_judged(F.col("predicted_close"), F.col("close"), F.col("next_close")),
    )


def actual_updates(answered: DataFrame, earlier: DataFrame) -> DataFrame:
    """Partial documents for earlier predictions (doc_id, predicted_close): actual and error."""
    answered = answered.select(bar_doc_id(answered).alias("doc_id"), "close", "next_close", "next_timestamp")
    return answered.join(earlier, "doc_id").select(
        "doc_id",
        F.col("next_timestamp").alias("actual_timestamp"),
        F.col("next_close").alias("actual_close"),
        *_judged(F.col("predicted_close"), F.col("close"), F.col("next_close")),
    )


@dataclass(frozen=True)
class BatchSummary:
    counts: dict[str, int]  # rows per status
    answered: list[str]  # doc ids of remembered bars whose next bar arrived

    def __getitem__(self, status: str) -> int:
        return self.counts.get(status, 0)


def summarize(rows: DataFrame) -> BatchSummary:
    """One pass over the batch's rows: how many of each status, and which earlier predictions
    (if any were made) the new bars answer."""
    answered_id = F.when(F.col("status") == ANSWERED, bar_doc_id(rows))
    row = rows.agg(*[F.sum((F.col("status") == s).cast("long")).alias(s) for s in (NEW, LATE, DUPLICATE)],
                   F.collect_list(answered_id).alias("answered")).first()
    return BatchSummary({s: int(row[s] or 0) for s in (NEW, LATE, DUPLICATE)}, list(row.answered))


def documents(featured: DataFrame, served: ServedModel | None, predicted_at_ms: int,
              earlier: dict[str, float]) -> DataFrame | None:
    """This batch's writes to the predictions index: new predictions (if a model is served)
    and partial documents judging earlier ones ({doc_id: predicted_close} found in the index)."""
    parts = []
    if served is not None:
        parts.append(prediction_documents(featured, served, predicted_at_ms))
    if earlier:
        found = featured.sparkSession.createDataFrame(list(earlier.items()), "doc_id string, predicted_close double")
        parts.append(actual_updates(featured.where(F.col("status") == ANSWERED), found))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1], allowMissingColumns=True)
