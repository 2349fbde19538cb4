"""Real-time prediction, the Spark side: every new bar of a served series is forecast inside the per-series
state step, in one Spark job per micro-batch: the next close with its 90 % interval, the next
bar's range and its variance, each by the model or naive baseline its training run published.

    bars ─▶ per series, in Spark state: the last HISTORY_BARS bars
         │                                and the prediction made at the newest of them
         │  (kept in STREAM_STATE_BUCKETS buckets of series, one state step call per bucket)
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
from finstream.ingest.source import local_threads
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

# A bucket's state: per series (its key, SERIES as a JSON list) its window and the prediction
# made at its newest bar (JSON: floats round-trip exactly), and when it is forgotten.
STATE_SCHEMA = T.StructType([
    T.StructField("series", T.MapType(T.StringType(), T.StringType())),
    T.StructField("expires", T.MapType(T.StringType(), T.LongType())),
])
BUCKET = "state_bucket"  # the state's key column: which bucket a series belongs to
_SERIES_TYPES = {f.name: f.dataType for f in bar_schema().fields if f.name in SERIES}
# How a series is hashed to its bucket (xxhash64 hashes an int and a long differently): kept in
# the checkpoint beside the bucket count, since either change moves series to other buckets.
BUCKET_HASH = "xxhash64(" + ", ".join(f"{name} {_SERIES_TYPES[name].simpleString()}" for name in SERIES) + ")"
INPUT_COLUMNS = (*SERIES, *HISTORY_COLUMNS, "published_at", "kafka_offset")


def output_schema(questions: Iterable[Question] | None = None) -> T.StructType:
    """The state step's output rows: the prediction document's fields (features flattened:
    pandas output columns are flat), and the row's status."""
    mapping = S.prediction_properties(questions)
    return T.StructType(
        [T.StructField(name, ES_SPARK_TYPES[spec["type"]]) for name, spec in mapping.items() if name != "features"]
        + [T.StructField(FEATURE_PREFIX + name, T.DoubleType()) for name in FORECAST_FEATURES]
        + [T.StructField("status", T.StringType())])


OUTPUT_SCHEMA = output_schema()
_DOUBLES = [f.name for f in OUTPUT_SCHEMA.fields if isinstance(f.dataType, T.DoubleType)]
_OBJECTS = [f.name for f in OUTPUT_SCHEMA.fields if not isinstance(f.dataType, T.DoubleType)]


# --- the stateful step (runs in the Python workers) ---------------------------------------------
def _output_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> the output schema's columns (Spark takes them by name). Doubles are float64
    (NaN is null), integers and strings stay Python objects (None is null for Arrow). Built as
    two blocks, not column by column: half the time for a bucket's few rows."""
    if not rows:
        return pd.DataFrame({name: pd.Series(dtype=np.float64 if name in _DOUBLES else object)
                             for name in OUTPUT_SCHEMA.names})
    doubles = pd.DataFrame(np.array([[row.get(name) for name in _DOUBLES] for row in rows], dtype=np.float64),
                           columns=_DOUBLES)
    objects = pd.DataFrame(np.array([[row.get(name) for name in _OBJECTS] for row in rows], dtype=object),
                           columns=_OBJECTS)
    return pd.concat([doubles, objects], axis=1, copy=False)


def series_key(series: tuple) -> str:
    """A series' key in a bucket's state: (ticker, timespan, multiplier) as a JSON list."""
    return json.dumps([series[0], series[1], int(series[2])])


def _columns(frames: Iterator[pd.DataFrame]) -> dict[str, list]:
    """The group's frames as plain Python lists per INPUT_COLUMNS (tolist: floats and ints, not
    numpy scalars, which the state and the scorers take); no frame is concatenated."""
    columns: dict[str, list] = {name: [] for name in INPUT_COLUMNS}
    for frame in frames:
        for name, values in columns.items():
            values.extend(frame[name].tolist())
    return columns


def _by_series(columns: dict[str, list]) -> dict[tuple, list[int]]:
    """Series -> the positions of its bars in the group, in arrival order."""
    rows: dict[tuple, list[int]] = {}
    for i, series in enumerate(zip(*(columns[name] for name in SERIES), strict=True)):
        rows.setdefault(series, []).append(i)
    return rows


def predict_bucket(key: tuple, frames: Iterator[pd.DataFrame], state: GroupState, *, model_dir: str,
                   idle_hours: float, clock=time.time) -> Iterator[pd.DataFrame]:
    """applyInPandasWithState body for one bucket of series: each series' remembered window and
    pending prediction in and out around the pure transition
    (finstream.serving.state_step.transition), and each series' idle time.

    Spark calls this once per bucket with bars in the micro-batch, not once per series: its
    per-call cost (the group's pandas frames in and out) is paid by a few hundred buckets when a
    whole market closes a minute, not by every series.

    Args:
        key: (bucket,).
        frames: the batch's bars of the bucket's series (INPUT_COLUMNS), any order and series.
        state: the bucket's GroupState (STATE_SCHEMA).
        model_dir: where the served models are installed (read once per worker).
        idle_hours: the configured idle time (idle_timeout_ms).
        clock: seconds since the epoch (the job's clock).

    Yields:
        One frame of output rows (OUTPUT_SCHEMA) for the bucket's bars, or nothing when it had
        none (a timeout: its idle series are forgotten).
    """
    entries, expires = ({}, {}) if not state.exists else (dict(state.get[0] or {}), dict(state.get[1] or {}))
    now_ms = int(clock() * 1000)
    columns = {} if state.hasTimedOut else _columns(frames)
    rows: list[dict] = []
    touched = set()
    if columns and columns["timestamp"]:
        champions = worker.served_models(model_dir).current()
        for series, positions in _by_series(columns).items():
            name = series_key(series)
            touched.add(name)
            remembered = json.loads(entries[name]) if name in entries else None
            window = remembered["window"] if remembered else empty_window()
            pending = remembered["pending"] if remembered else None
            bars = {column: [columns[column][i] for i in positions]
                    for column in (*HISTORY_COLUMNS, "published_at", "kafka_offset")}
            step = transition(series, window, pending, bars, champions, now_ms)
            rows.extend(step.rows)
            entries[name] = json.dumps({"window": step.window, "pending": step.pending}, separators=(",", ":"))
            expires[name] = now_ms + idle_timeout_ms(series[1], int(series[2]), idle_hours)
    # A series without bars here whose idle time has passed on the watermark (the job's clock)
    # is forgotten, as its own GroupState timeout would have: Spark times a bucket out at its
    # earliest series.
    watermark = state.getCurrentWatermarkMs()
    for name in [name for name, at in expires.items() if at < watermark and name not in touched]:
        entries.pop(name, None)
        del expires[name]
    if entries:
        state.update((entries, expires))
        state.setTimeoutTimestamp(max(min(expires.values()), watermark + 1))
    elif state.exists:
        state.remove()
    if rows:
        yield _output_frame(rows)


def state_partitions(configured: int, master: str, shuffle_partitions: int, cores: int | None) -> int:
    """The state step's tasks per micro-batch (its shuffle partitions) for a new checkpoint.

    Args:
        configured: STREAM_STATE_PARTITIONS (0: choose).
        master: spark.master, e.g. "local[*]", "local[2]", "spark://host:7077".
        shuffle_partitions: spark.sql.shuffle.partitions.
        cores: the driver JVM's processors (source.jvm_cores), for local[*].

    Returns:
        `configured` when set; on a local master, its threads (one task per core: each task
        is a Python round trip, a state-store commit and a bulk request whatever its rows, so
        more tasks than cores only queue); on a cluster, spark.sql.shuffle.partitions.
    """
    if configured > 0:
        return configured
    threads = local_threads(master, cores)
    return shuffle_partitions if threads is None else threads


def state_buckets(settings: Settings) -> Column:
    """The bucket of each bar's series: a hash of (ticker, timespan, multiplier) modulo
    STREAM_STATE_BUCKETS (xxhash64: the same on every JVM and at every restart)."""
    return F.pmod(F.xxhash64(*SERIES), F.lit(settings.stream_state_buckets)).alias(BUCKET)


def prediction_rows(bars: DataFrame, settings: Settings) -> DataFrame:
    """Streaming valid bars -> per micro-batch, a row per incoming bar (see STATUSES) and per
    earlier prediction judged.

    Columns in: SERIES, HISTORY_COLUMNS, published_at, kafka_offset. Out: OUTPUT_SCHEMA.
    """
    received = F.timestamp_seconds(now_millis() / 1000).alias("received")  # the job's clock, never a writer's
    return (
        bars.select(*INPUT_COLUMNS, received, state_buckets(settings))
        .withWatermark("received", RECEIVED_SLACK)
        .groupBy(BUCKET)
        .applyInPandasWithState(
            partial(predict_bucket, model_dir=str(settings.model_path), idle_hours=settings.stream_series_idle_hours),
            OUTPUT_SCHEMA, STATE_SCHEMA, "update", GroupStateTimeout.EventTimeTimeout)
    )


# --- per micro-batch (pure DataFrame -> DataFrame) --------------------------------------------
def status_counts() -> list[Column]:
    """Rows of each status, observed by the query (reported in its progress: no extra job)."""
    return [F.sum((F.col("status") == s).cast("long")).alias(s) for s in STATUSES]


def live_skill_sums(questions: Iterable[Question] | None = None) -> list[Column]:
    """Per watched question (finstream.core.questions: its `live` loss), the predictions judged
    in the batch, summed per served version in Spark, so that every series set's champion is
    watched on its own: live_<question>_judged, one (version, loss, baseline, judged) per
    version, the served forecasts' summed loss terms, their reference baselines', and how
    many (observed by the query, so no extra job; a catch-up batch of 200 000 predictions
    sends the driver a few sums, not 200 000 rows).

    Columns in: OUTPUT_SCHEMA. Out: one array<struct<version, loss, baseline, judged>> per question.
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
        judged = F.collect_list(F.when(scored, F.struct(version.alias("version"), terms[0].alias("loss"),
                                                        terms[1].alias("baseline"))))
        columns.append(_summed_per_version(judged).alias(S.live_field(question.name, "judged")))
    return columns


def _summed_per_version(judged: Column) -> Column:
    """array<struct<version, loss, baseline>> -> one struct<version, loss, baseline, judged> per
    distinct version (sorted), the terms summed in one pass over the array per version."""
    def summed(served: Column) -> Column:  # one parameter: transform passes the element only
        def add(total: Column, row: Column) -> Column:
            mine = row["version"] == served
            return F.struct((total["loss"] + F.when(mine, row["loss"]).otherwise(0.0)).alias("loss"),
                            (total["baseline"] + F.when(mine, row["baseline"]).otherwise(0.0)).alias("baseline"),
                            (total["judged"] + mine.cast("int")).alias("judged"))
        zero = F.struct(F.lit(0.0).alias("loss"), F.lit(0.0).alias("baseline"), F.lit(0).alias("judged"))
        totals = F.aggregate(judged, zero, add)
        return F.struct(served.alias("version"), totals["loss"].alias("loss"), totals["baseline"].alias("baseline"),
                        totals["judged"].alias("judged"))
    return F.transform(F.array_sort(F.array_distinct(judged.getField("version"))), summed)


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
    the predictions they answer (predict_bucket); this writes their documents, whole,
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
