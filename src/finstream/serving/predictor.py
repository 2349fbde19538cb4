"""Real-time prediction, the Spark side: every new bar of a served series is forecast inside the per-series
state step, in one Spark job per micro-batch: the next close with its 90 % interval, the next
bar's range and its variance, each by the model or naive baseline its training run published.

    bars ─▶ per series, Spark state: the last HISTORY_BARS bars
         │                                and the prediction made at the newest of them
         └▶ for each new bar, in time order: judge the prediction made at the bar before it
            (actual close, errors, interval hit, range error, variance loss), compute its
            features (finstream.features.scalar, equal to the trainer's window functions) and the
            forecasts of each served question (finstream.serving.forecasters)
            ─▶ prediction documents, id = the bar's doc id

The models are read by the Python worker itself (MODEL_DIR/<question>/CHAMPION, which the
driver writes when the registry's champion alias moves; re-read when the file changes, cached
per worker), so no model, feature or earlier prediction crosses
between the JVM and Python, and nothing is read back from Elasticsearch: the earlier
prediction lives in the series' state.

Order and lateness rest on each series' own bar times, never on a clock: bars of one
micro-batch may arrive in any order (they are sorted). A bar older than the newest one already
remembered is `late`, and one whose time is already remembered is a `duplicate`: both are
indexed as bars by the index query, neither is predicted or added to the history (predictions
already made stay as they are). No bar is dropped for its time: Spark's watermark is one per
query, so a watermark on the bars' or the Kafka records' times would let one series' era, or
one writer's clock (55 minutes ahead, or a timestamp in seconds), declare every other series
late. The watermark follows this job's own clock instead (the time a row is read, which the
next batch never falls behind): it only paces the state's idle timeouts. A series' state is
dropped once it has sent nothing for its idle time on that clock, so no writer's clock can
expire it either. (Spark's processing-time timeout would say the same, but makes a query run
an empty micro-batch every trigger, for ever: `--available-now` would never end.)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from finstream.core import schema as S
from finstream.core.config import Settings
from finstream.core.questions import Question, watched
from finstream.core.schema import SERIES
from finstream.features.spec import FORECAST_FEATURES
from finstream.ingest.es_sink import write_documents
from finstream.ingest.spark_types import ES_SPARK_TYPES, bar_schema
from finstream.ingest.validation import now_millis
from finstream.serving import worker
from finstream.serving.installed import ServedForecasts
from finstream.serving.state_step import (
    BASELINE_VERSION,
    FEATURE_PREFIX,
    HISTORY_COLUMNS,
    STATUSES,
    WRITTEN,
    empty_window,
    idle_timeout_ms,
    transition,
)

log = logging.getLogger(__name__)

# The watermark trails the job's clock by this much: a row is read after the rows of earlier
# batches, so none is ever behind it, unless the machine's clock steps back further than this.
RECEIVED_SLACK = "10 minutes"

_BAR_TYPES = {f.name: f.dataType for f in bar_schema().fields}
STATE_SCHEMA = T.StructType(
    [T.StructField(name, T.ArrayType(_BAR_TYPES[name])) for name in HISTORY_COLUMNS]
    # The prediction made at the newest remembered bar (its whole document, JSON), until the
    # next bar judges it: the judged document is then written whole, by a plain index request.
    + [T.StructField("prediction", T.StringType())])


def output_schema(questions: Iterable[Question] | None = None) -> T.StructType:
    """The state step's output rows: the prediction document's fields (features flattened:
    pandas output columns are flat), and the row's status."""
    mapping = S.prediction_properties(questions)
    return T.StructType(
        [T.StructField(name, ES_SPARK_TYPES[spec["type"]]) for name, spec in mapping.items() if name != "features"]
        + [T.StructField(FEATURE_PREFIX + name, T.DoubleType()) for name in FORECAST_FEATURES]
        + [T.StructField("status", T.StringType())])


OUTPUT_SCHEMA = output_schema()
_OUTPUT_DTYPES = {f.name: np.float64 if isinstance(f.dataType, T.DoubleType) else object
                  for f in OUTPUT_SCHEMA.fields}


# --- the stateful step (runs in the Python workers) ---------------------------------------------
def _output_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> the output schema's columns. Integers and strings stay Python objects (None
    is null for Arrow), doubles are float64 (NaN is null)."""
    return pd.DataFrame({name: np.array([row.get(name) for row in rows], dtype=dtype)
                         for name, dtype in _OUTPUT_DTYPES.items()}, copy=False)


def predict_series(key: tuple, frames: Iterator[pd.DataFrame], state: GroupState, *, model_dir: str,
                   idle_hours: float, clock=time.time) -> Iterator[pd.DataFrame]:
    """applyInPandasWithState body for one series: its GroupState in and out around the pure
    transition (finstream.serving.state_step.transition), and its idle timeout.

    Args:
        key: (ticker, timespan, multiplier).
        frames: the batch's bars of the series (HISTORY_COLUMNS, published_at, kafka_offset).
        state: the series' GroupState (STATE_SCHEMA).
        model_dir: where the served models are installed (read once per worker).
        idle_hours: the configured idle time (idle_timeout_ms).
        clock: seconds since the epoch (the job's clock).

    Yields:
        One frame of output rows (OUTPUT_SCHEMA), or nothing for a timed-out or empty group.
    """
    if state.hasTimedOut:
        state.remove()
        return
    incoming = pd.concat(list(frames), ignore_index=True)
    if incoming.empty:
        return
    champions = worker.served_models(model_dir).current()
    if state.exists:
        stored = state.get
        window = {name: list(values) for name, values in zip(HISTORY_COLUMNS, stored[:-1], strict=True)}
        pending = json.loads(stored[-1]) if stored[-1] else None
    else:
        window, pending = empty_window(), None
    # Plain Python values (tolist), not numpy scalars: the state and the scorer take floats.
    bars = {name: incoming[name].tolist() for name in (*HISTORY_COLUMNS, "published_at", "kafka_offset")}
    now_ms = int(clock() * 1000)
    step = transition(key, window, pending, bars, champions, now_ms)
    kept = json.dumps(step.pending) if step.pending is not None else None
    state.update(tuple(step.window[name] for name in HISTORY_COLUMNS) + (kept,))
    timeout = now_ms + idle_timeout_ms(key[1], int(key[2]), idle_hours)
    state.setTimeoutTimestamp(max(timeout, state.getCurrentWatermarkMs() + 1))
    yield _output_frame(step.rows)


def prediction_rows(bars: DataFrame, settings: Settings) -> DataFrame:
    """Streaming valid bars -> per micro-batch, a row per incoming bar (see STATUSES) and per
    earlier prediction judged.

    Columns in: SERIES, HISTORY_COLUMNS, published_at, kafka_offset. Out: OUTPUT_SCHEMA.
    """
    received = F.timestamp_seconds(now_millis() / 1000).alias("received")  # the job's clock, never a writer's
    return (
        bars.select(*SERIES, *HISTORY_COLUMNS, "published_at", "kafka_offset", received)
        .withWatermark("received", RECEIVED_SLACK)
        .groupBy(*SERIES)
        .applyInPandasWithState(
            partial(predict_series, model_dir=str(settings.model_path), idle_hours=settings.stream_series_idle_hours),
            OUTPUT_SCHEMA, STATE_SCHEMA, "update", GroupStateTimeout.EventTimeTimeout)
    )


# --- per micro-batch (pure DataFrame -> DataFrame) --------------------------------------------
def status_counts() -> list[Column]:
    """Rows of each status, observed by the query (reported in its progress: no extra job)."""
    return [F.sum((F.col("status") == s).cast("long")).alias(s) for s in STATUSES]


def live_skill_sums(questions: Iterable[Question] | None = None) -> list[Column]:
    """Per watched question (finstream.core.questions: its `live` loss), the predictions judged
    in the batch as live_<question>_judged_rows: a list of (version, loss, baseline), the served
    forecast's loss term and its reference baseline's, for the watch to sum per version, so
    that every series set's champion is watched on its own (observed by the query, so no
    extra job).

    Columns in: OUTPUT_SCHEMA. Out: one array<struct<version, loss, baseline>> per question.
    """
    columns = []
    for question in watched(questions):
        live = question.live
        version = F.col(question.model_fields[1])
        # A prediction is judged once: in its own batch when the next bar came with it, else as
        # the `judged` rewrite when the next bar arrives. Only then has it a loss. The reference
        # baseline serving a series no champion covers is its own baseline: nothing to watch.
        scored = (F.col("status").isin(*WRITTEN) & F.col(live.loss).isNotNull() & F.col(live.baseline).isNotNull()
                  & (version != BASELINE_VERSION))
        terms = [F.col(name) * F.col(name) if live.squared else F.col(name) for name in (live.loss, live.baseline)]
        judged = F.struct(version.alias("version"), terms[0].alias("loss"), terms[1].alias("baseline"))
        columns.append(F.collect_list(F.when(scored, judged)).alias(S.live_field(question.name, "judged_rows")))
    return columns


def document_columns() -> list[Column]:
    """The columns of documents(), over OUTPUT_SCHEMA: built once, they can be selected batch
    after batch (a micro-batch then pays no Python-to-JVM calls to build them)."""
    features = F.struct(*[F.col(FEATURE_PREFIX + name).alias(name) for name in FORECAST_FEATURES])
    return [features.alias(name) if name == "features" else F.col(name) for name in S.PREDICTION_MAPPING]


def documents(rows: DataFrame, columns: list[Column] | None = None) -> DataFrame:
    """The writes to the predictions index, whole documents: new predictions, and earlier
    ones again with their actual close and errors (null fields are not written).

    Columns in: OUTPUT_SCHEMA. Out: the predictions mapping's fields, features nested.
    `columns`: document_columns(), when the caller keeps them between batches.
    """
    return rows.where(F.col("status").isin(*WRITTEN)).select(*(columns or document_columns()))


@dataclass
class PredictionWriter:
    """foreachBatch body of predict-bars. The state step has scored the new bars and judged
    the predictions they answer (predict_series); this writes their documents, whole,
    by id: a replayed batch rewrites the same ones."""

    settings: Settings
    es_options: dict[str, str]
    models: ServedForecasts  # the driver's view of the served models, for the log only
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    _columns: list[Column] | None = field(default=None, init=False, repr=False)  # built at the first batch

    def __call__(self, rows: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        self.models.current()  # logs a new or refused version once
        if self._columns is None:
            self._columns = document_columns()
        write_documents(documents(rows, self._columns), self.settings.es_index_predictions, self.es_options,
                        self.settings, self.sleep)
        log.info("predict-bars batch %d written (%.2f s)", batch_id, time.perf_counter() - started)
