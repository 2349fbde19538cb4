"""Real-time prediction: every new bar of a served series is forecast inside the per-series
state step, in one Spark job per micro-batch: the next close with its 90 % interval, the next
bar's range and its variance, each by the model or naive baseline its training run published.

    bars ─▶ per series, Spark state: the last HISTORY_BARS bars
         │                                and the prediction made at the newest of them
         └▶ for each new bar, in time order: judge the prediction made at the bar before it
            (actual close, errors, interval hit, range error, variance loss), compute its
            features (finstream.scoring, equal to the trainer's window functions) and the
            forecasts of each served question (finstream.forecasts)
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
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from finstream import schema as S
from finstream import skill
from finstream.config import Settings
from finstream.forecasts import MODEL_FIELDS, judged
from finstream.modelstore import ServedForecasts
from finstream.scoring import HISTORY_BARS, forecast_features
from finstream.spark.bars import now_millis
from finstream.spark.features import FORECASTS, SERIES
from finstream.spark.schema import ES_SPARK_TYPES, bar_schema
from finstream.spark.worker_setup import keep_zip_directories

# The watermark trails the job's clock by this much: a row is read after the rows of earlier
# batches, so none is ever behind it, unless the machine's clock steps back further than this.
RECEIVED_SLACK = "10 minutes"
HISTORY_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "vwap")
# What each output row is: a new bar's prediction, a prediction made in an earlier batch
# given its actual and errors (its whole document again), or a bar that leads to no write (new but
# not scored: no model, another series' model, too little history; late; duplicate).
STATUSES = S.PREDICTION_STATUSES
PREDICTED, JUDGED, UNSCORED, LATE, DUPLICATE = STATUSES
NEW = "new"  # an incoming bar before it is scored
WRITTEN = (PREDICTED, JUDGED)
FEATURE_PREFIX = "feature_"

_BAR_TYPES = {f.name: f.dataType for f in bar_schema().fields}
STATE_SCHEMA = T.StructType(
    [T.StructField(name, T.ArrayType(_BAR_TYPES[name])) for name in HISTORY_COLUMNS]
    # The prediction made at the newest remembered bar (its whole document, JSON), until the
    # next bar judges it: the judged document is then written whole, by a plain index request.
    + [T.StructField("prediction", T.StringType())])

_DOCUMENT_FIELDS = [name for name in S.PREDICTION_MAPPING if name != "features"]
# The state step's output: the prediction document's fields (features flattened: pandas
# output columns are flat), and the row's status.
OUTPUT_SCHEMA = T.StructType(
    [T.StructField(name, ES_SPARK_TYPES[S.PREDICTION_MAPPING[name]["type"]]) for name in _DOCUMENT_FIELDS]
    + [T.StructField(FEATURE_PREFIX + name, T.DoubleType()) for name in S.FORECAST_FEATURES]
    + [T.StructField("status", T.StringType())])
_OUTPUT_DTYPES = {f.name: np.float64 if isinstance(f.dataType, T.DoubleType) else object
                  for f in OUTPUT_SCHEMA.fields}


# --- the stateful step (runs in the Python workers) ---------------------------------------------
def idle_timeout_ms(timespan: str, multiplier: int, idle_hours: float) -> int:
    """How long a series may publish nothing before its history is dropped: the configured
    time, or three of its bars if that is longer (a monthly series waits a month per bar)."""
    return int(max(idle_hours * 3_600_000, 3 * S.TIMESPAN_SECONDS[timespan] * int(multiplier) * 1000))


_MODELS: dict[str, ServedForecasts] = {}  # per Python worker (workers are reused across batches)
keep_zip_directories()  # when this module is loaded by a worker, for its next tasks


def served_models(model_dir: str) -> ServedForecasts:
    if model_dir not in _MODELS:
        _MODELS[model_dir] = ServedForecasts(Path(model_dir), FORECASTS, report=False)
    return _MODELS[model_dir]


def mark_incoming(bars: dict[str, list], remembered: list[int]) -> list[int]:
    """The order in which to take a batch's bars of one series (by time, then offset), each
    marked new, late or duplicate in bars["status"]. Several copies of a bar in one batch:
    the last published wins, as in the bars index."""
    timestamps = bars["timestamp"]
    order = sorted(range(len(timestamps)), key=lambda i: (timestamps[i], bars["kafka_offset"][i]))
    newest = max(remembered) if remembered else None
    known = set(remembered)
    status = [NEW] * len(order)
    for position, i in enumerate(order):
        later_copy = position + 1 < len(order) and timestamps[order[position + 1]] == timestamps[i]
        if later_copy or timestamps[i] in known:
            status[i] = DUPLICATE
        elif newest is not None and timestamps[i] < newest:
            status[i] = LATE
    bars["status"] = status
    return order


def _output_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> the output schema's columns. Integers and strings stay Python objects (None
    is null for Arrow), doubles are float64 (NaN is null)."""
    return pd.DataFrame({name: np.array([row.get(name) for row in rows], dtype=dtype)
                         for name, dtype in _OUTPUT_DTYPES.items()}, copy=False)


def predict_series(key: tuple, frames: Iterator[pd.DataFrame], state: GroupState, *, model_dir: str,
                   idle_hours: float, clock=time.time) -> Iterator[pd.DataFrame]:
    """applyInPandasWithState body for one series: scores its new bars in time order, judges
    the predictions they answer, and remembers the newest HISTORY_BARS bars and the
    prediction made at the newest one."""
    if state.hasTimedOut:
        state.remove()
        return
    incoming = pd.concat(list(frames), ignore_index=True)
    if incoming.empty:
        return
    ticker, timespan, multiplier = key[0], key[1], int(key[2])
    stored = state.get if state.exists else ([[] for _ in HISTORY_COLUMNS] + [None])
    window = {name: list(values) for name, values in zip(HISTORY_COLUMNS, stored[:-1], strict=True)}
    earlier = json.loads(stored[-1]) if stored[-1] else None  # the prediction at window's newest bar
    # Plain Python values (tolist), not numpy scalars: the state and the scorer take floats.
    bars = {name: incoming[name].tolist() for name in (*HISTORY_COLUMNS, "published_at", "kafka_offset")}
    order = mark_incoming(bars, window["timestamp"])

    served = {question: model for question, model in served_models(model_dir).current().items()
              if model.covers(ticker, timespan, multiplier)}
    predicted_at = int(clock() * 1000)
    rows: list[dict] = []
    for i in order:
        bar = {name: values[i] for name, values in bars.items()}
        doc_id = S.bar_doc_id(ticker, timespan, multiplier, bar["timestamp"])
        if bar["status"] != NEW:
            rows.append({"doc_id": doc_id, "status": bar["status"]})
            continue
        if earlier is not None:
            earlier.update(actual_timestamp=bar["timestamp"], **judged(earlier, bar["high"], bar["low"], bar["close"]))
            if earlier["status"] != PREDICTED:  # made in an earlier batch: written again, whole
                rows.append(earlier)
        for name in HISTORY_COLUMNS:
            value = bar[name]
            window[name] = (window[name] + [None if value != value else value])[-HISTORY_BARS:]  # NaN: absent
        earlier = None
        features = forecast_features(window) if served else None
        forecasts = {}
        for question, model in served.items() if features is not None else ():
            fields = model.forecaster.forecast(window, features)
            if fields is not None:
                name_field, version_field, run_field = MODEL_FIELDS[question]
                forecasts.update(fields, **{name_field: model.kind, version_field: model.version,
                                            run_field: model.run_id})
        if not forecasts:
            rows.append({"doc_id": doc_id, "status": UNSCORED})
            continue
        earlier = {
            "doc_id": doc_id, "ticker": ticker, "timespan": timespan, "multiplier": multiplier,
            "timestamp": bar["timestamp"], "target": "next_close", "last_close": bar["close"], **forecasts,
            "published_at": bar["published_at"], "predicted_at": predicted_at,
            "latency_ms": predicted_at - bar["published_at"], "status": PREDICTED,
            **{FEATURE_PREFIX + name: value for name, value in features.items()},
        }
        rows.append(earlier)

    kept = json.dumps({**earlier, "status": JUDGED}) if earlier is not None else None
    state.update(tuple(window[name] for name in HISTORY_COLUMNS) + (kept,))
    timeout = predicted_at + idle_timeout_ms(timespan, multiplier, idle_hours)
    state.setTimeoutTimestamp(max(timeout, state.getCurrentWatermarkMs() + 1))
    yield _output_frame(rows)


def prediction_rows(bars: DataFrame, settings: Settings) -> DataFrame:
    """Streaming valid bars -> per micro-batch, a row per incoming bar (see STATUSES) and per
    earlier prediction judged."""
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


def live_skill_sums() -> list[Column]:
    """Per watched question, over the predictions judged in the batch: the served forecast's
    summed loss, its baseline's, how many, and the versions that made them (finstream.skill
    LIVE_LOSSES; observed by the query, so no extra job)."""
    columns = []
    for question, (loss, baseline, form) in skill.LIVE_LOSSES.items():
        # A prediction is judged once: in its own batch when the next bar came with it, else as
        # the `judged` rewrite when the next bar arrives. Only then has it a loss.
        scored = F.col("status").isin(*WRITTEN) & F.col(loss).isNotNull() & F.col(baseline).isNotNull()
        summed = [F.sum(F.when(scored, F.col(name) * F.col(name) if form == "squared" else F.col(name)))
                  for name in (loss, baseline)]
        version = F.when(scored, F.col(MODEL_FIELDS[question][1]))
        columns += [summed[0].alias(f"live_{question}_loss"), summed[1].alias(f"live_{question}_baseline"),
                    F.sum(scored.cast("long")).alias(f"live_{question}_judged"),
                    F.max(version).alias(f"live_{question}_version"),
                    F.min(version).alias(f"live_{question}_first_version")]
    return columns


def documents(rows: DataFrame) -> DataFrame:
    """The writes to the predictions index, whole documents: new predictions, and earlier
    ones again with their actual close and errors (null fields are not written)."""
    features = F.struct(*[F.col(FEATURE_PREFIX + name).alias(name) for name in S.FORECAST_FEATURES])
    return rows.where(F.col("status").isin(*WRITTEN)).select(
        *[features.alias(name) if name == "features" else F.col(name) for name in S.PREDICTION_MAPPING])
