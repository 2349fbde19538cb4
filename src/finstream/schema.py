"""The bar message: defined once here. The producer serialises it, the Spark schema and
the Elasticsearch mappings are derived from it, and the tests import it.

A bar is one OHLCV aggregate as the Polygon/Massive aggregates endpoint returns it
(fields o h l c v vw n t), plus where it came from. Kafka key = ticker, value = UTF-8 JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from finstream.skill import LIVE_LOSSES

TIMESPANS = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")
# The longest a bar of each timespan lasts, in seconds (months and years at their longest).
TIMESPAN_SECONDS = {"second": 1, "minute": 60, "hour": 3_600, "day": 86_400, "week": 604_800,
                    "month": 31 * 86_400, "quarter": 92 * 86_400, "year": 366 * 86_400}

# Validation rules the stream job applies (finstream.spark.bars). Kept here, beside the
# fields they constrain, so the README and the tests read the same numbers.
# AAPL, BRK.A, C:EURUSD, X:BTCUSD, I:SPX. It ends with "nothing follows", not `$`: both Python's
# and Java's `$` also match before a final line break ("AAPL\n").
TICKER_PATTERN = r"^[A-Z0-9][A-Z0-9.:\-]{0,31}(?![\s\S])"
MIN_TIMESTAMP_MS = 315_532_800_000  # 1980-01-01: a timestamp in seconds lands in 1970 and is refused
MAX_FUTURE_MS = 86_400_000  # a bar may start at most one day after the time it is processed
MAX_PRICE = 1e9
MAX_VOLUME = 1e15
MAX_MESSAGE_BYTES = 65_536  # a bar is about 250 bytes; a larger message is not a bar
# JSON's whitespace (RFC 8259): what may stand before and after the one object of a message.
JSON_WHITESPACE = " \t\n\r"

# A message refused before its fields are read: one of these reasons, alone.
EMPTY = "empty message"
TOO_LARGE = f"message too large (over {MAX_MESSAGE_BYTES} bytes)"
NOT_UTF8 = "not UTF-8 text"
NOT_OBJECT = "not a JSON object"
MALFORMED = "malformed JSON"
DATA_AFTER_OBJECT = "data after the JSON object"  # one Kafka record holds one bar, never two
# A bar field named twice: JSON leaves it to the reader, and Spark's and Python's differ (Spark
# keeps an earlier value when the later one has the wrong type).
DUPLICATE_FIELD = "duplicate field"


def _field(es_type: str, doc: str, required: bool = True):
    return field(metadata={"es_type": es_type, "doc": doc, "required": required})


@dataclass(frozen=True, kw_only=True)
class Bar:
    ticker: str = _field("keyword", "Polygon ticker, upper-case: AAPL, C:EURUSD, X:BTCUSD")
    timespan: str = _field("keyword", "Bar size unit: " + ", ".join(TIMESPANS))
    multiplier: int = _field("integer", "Bar size = multiplier x timespan")
    timestamp: int = _field("date", "Bar start, epoch milliseconds UTC")
    open: float = _field("double", "First trade price")
    high: float = _field("double", "Highest price")
    low: float = _field("double", "Lowest price")
    close: float = _field("double", "Last trade price")
    # Optional: index aggregates (I:SPX, I:NDX) carry no volume, VWAP or trade count.
    volume: float | None = field(default=None, metadata={
        "es_type": "double", "doc": "Traded volume (fractional for crypto; absent for indices)", "required": False})
    vwap: float | None = field(default=None, metadata={"es_type": "double", "doc": "Volume-weighted average price",
                                                       "required": False})
    transactions: int | None = field(default=None, metadata={"es_type": "long", "doc": "Number of trades",
                                                              "required": False})
    source: str = _field("keyword", "Where the bar came from: polygon, replay:<dataset>, test")

    def to_json(self, allow_nan: bool = False) -> bytes:
        """The Kafka value. NaN and Infinity are not JSON: ValueError, unless `allow_nan` (the
        producer's fallback for an API answer that holds one: the stream job then dead-letters
        the bar naming the field, instead of the producer stopping on it)."""
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"), allow_nan=allow_nan).encode("utf-8")

    @property
    def key(self) -> bytes:
        return self.ticker.encode("utf-8")

    @property
    def doc_id(self) -> str:
        return bar_doc_id(self.ticker, self.timespan, self.multiplier, self.timestamp)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    python_type: str  # "str" | "int" | "float"
    es_type: str
    required: bool
    doc: str


# How a reason names each field type ("wrong type: close (expected number)").
JSON_TYPE_NAMES = {"str": "string", "int": "integer", "float": "number"}


def _python_type(annotation: str) -> str:
    return annotation.split("|")[0].strip()


BAR_FIELDS: tuple[FieldSpec, ...] = tuple(
    FieldSpec(f.name, _python_type(f.type), f.metadata["es_type"], f.metadata["required"], f.metadata["doc"])
    for f in dataclasses.fields(Bar)
)
BAR_FIELD_NAMES = tuple(f.name for f in BAR_FIELDS)
REQUIRED_FIELDS = tuple(f.name for f in BAR_FIELDS if f.required)
# The largest value of each integer field: what its Elasticsearch type holds, and below 2**53,
# where a JSON reader that reads numbers as doubles (Spark's here) starts to round (2**53 + 1
# reads as 2**53).
INTEGER_LIMITS = {f.name: 2**31 - 1 if f.es_type == "integer" else 2**53 - 1 for f in BAR_FIELDS
                  if f.python_type == "int"}
PRICE_FIELDS = ("open", "high", "low", "close")

# The document id: one bar = one document, whatever the number of replays.
DOC_ID_FIELDS = ("ticker", "multiplier", "timespan", "timestamp")
DOC_ID_SEPARATOR = "|"


def bar_doc_id(ticker: str, timespan: str, multiplier: int, timestamp: int) -> str:
    values = {"ticker": ticker, "timespan": timespan, "multiplier": multiplier, "timestamp": timestamp}
    return DOC_ID_SEPARATOR.join(str(values[name]) for name in DOC_ID_FIELDS)


def bar_from_dict(values: dict[str, Any]) -> Bar:
    return Bar(**{name: values.get(name) for name in BAR_FIELD_NAMES})


MAX_EXACT_INTEGER = 2**53  # beyond it a JSON number read as a double no longer holds every integer


def as_integer(value: Any) -> Any:
    """The value of an integer field (multiplier, a timestamp, a trade count) as an int when it
    is integral, however the market-data API's JSON encoder spelled it: 1412331, 1412331.0 and
    1.412331e+06 all give 1412331 (a float within +-2**53, where a double is exact). Anything
    else comes back unchanged - a fractional count such as 1412331.5, a string, None - so that
    the stream job dead-letters the bar with its reason ("not an integer: transactions")."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT_INTEGER:
        return int(value)
    return value


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- Elasticsearch documents ----------------------------------------------------------------
# Fields the stream job adds to each bar document (not part of the Kafka message).
BAR_DOCUMENT_EXTRA = {
    "doc_id": {"type": "keyword"},
    "published_at": {"type": "date", "format": "epoch_millis"},  # Kafka record timestamp
    "indexed_at": {"type": "date", "format": "epoch_millis"},  # micro-batch time
    "kafka_partition": {"type": "integer"},
    "kafka_offset": {"type": "long"},
}

DEAD_LETTER_MAPPING = {
    "doc_id": {"type": "keyword"},  # topic|partition|offset
    "reason": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}},
    "reasons": {"type": "keyword"},  # one entry per rule broken, for counting by reason
    "raw": {"type": "keyword", "ignore_above": 8191},  # UTF-8 text of the value (kept whole in _source)
    "raw_base64": {"type": "keyword", "index": False, "doc_values": False},  # set when not valid UTF-8
    "key": {"type": "keyword", "ignore_above": 1024},
    "topic": {"type": "keyword"},
    "partition": {"type": "integer"},
    "offset": {"type": "long"},
    "published_at": {"type": "date", "format": "epoch_millis"},
    "indexed_at": {"type": "date", "format": "epoch_millis"},
}


def _es_property(spec: FieldSpec) -> dict[str, Any]:
    if spec.es_type == "date":
        return {"type": "date", "format": "epoch_millis"}
    return {"type": spec.es_type}


def strict_mapping(properties: dict[str, Any]) -> dict[str, Any]:
    """strict: a field the schema does not know is a bug in the job, not data to guess at."""
    return {"dynamic": "strict", "properties": dict(properties)}


def bar_mapping() -> dict[str, Any]:
    # Not bounded (bounded_keywords): a bar whose `source` is over Lucene's term limit is refused
    # by Elasticsearch and dead-lettered with its reason; indexed without it, no search would find it.
    properties = {spec.name: _es_property(spec) for spec in BAR_FIELDS}
    properties.update(BAR_DOCUMENT_EXTRA)
    return strict_mapping(properties)


# Only on the dead letter of a document Elasticsearch refused (written by the ES-Hadoop error
# handler, stack/es-dead-letters): the index that refused it and the document's id there.
REFUSED_DOCUMENT_FIELDS = {
    "refused_index": {"type": "keyword"},
    "refused_id": {"type": "keyword"},
}

# Lucene refuses a term over 32 766 bytes, and with it the whole document ("immense term").
# Every keyword of the documents the project writes itself is bounded: ignore_above counts
# characters, and 8 191 of up to 4 UTF-8 bytes each stay under the limit (a longer value stays
# in _source, unindexed). The bars' `source` is not (bar_mapping): see there.
KEYWORD_IGNORE_ABOVE = 8191


def bounded_keywords(properties: dict[str, Any]) -> dict[str, Any]:
    """The properties with ignore_above on every keyword (and keyword sub-field) that has none."""
    def bound(spec: dict[str, Any]) -> dict[str, Any]:
        spec = dict(spec)
        if spec.get("type") == "keyword":
            spec.setdefault("ignore_above", KEYWORD_IGNORE_ABOVE)
        for nested in ("properties", "fields"):
            if nested in spec:
                spec[nested] = bounded_keywords(spec[nested])
        return spec
    return {name: bound(spec) for name, spec in properties.items()}


def dead_letter_mapping() -> dict[str, Any]:
    return strict_mapping(bounded_keywords({**DEAD_LETTER_MAPPING, **REFUSED_DOCUMENT_FIELDS}))


# A candidate's figures (finstream.skill.metrics, compare): each question fills its own.
MODEL_METRICS = ("loss", "loss_ratio", "dm", "p", "validation_loss", "rmse", "mae", "mse", "r2", "mape",
                 "direction", "return_rmse", "qlike", "coverage", "width", "interval_score")

MODEL_METRICS_MAPPING = {
    "run_id": {"type": "keyword"},
    "created_at": {"type": "date"},
    "question": {"type": "keyword"},
    "target": {"type": "keyword"},
    "model": {"type": "keyword"},
    "evaluation": {"type": "keyword"},  # holdout | walk_forward_fold | walk_forward_mean
    "fold": {"type": "integer"},
    "chosen": {"type": "boolean"},
    "model_version": {"type": "keyword"},
    "mlflow_run_id": {"type": "keyword"},
    "source": {"type": "keyword"},
    "fingerprint": {"type": "keyword"},
    "tickers": {"type": "keyword"},
    "n": {"type": "long"},
    "series": {"type": "keyword"},  # a ticker, or "all" for the pooled figures
    "served": {"type": "boolean"},  # the candidate the stream serves for this question
    **{name: {"type": "double"} for name in MODEL_METRICS},
}


def model_metrics_mapping() -> dict[str, Any]:
    return strict_mapping(bounded_keywords(MODEL_METRICS_MAPPING))


# --- Predictions ---------------------------------------------------------------------------
# What the `lags` model sees of a bar: computed from the bar and the 20 before it in its
# series (finstream.spark.features), by the trainer and by the stream alike.
LAG_FEATURES = (
    "ret_1", "ret_2", "ret_3", "ret_mean_5", "ret_std_5", "ret_mean_20", "ret_std_20",
    "range_pct", "body_pct", "volume_ratio_20", "vwap_gap", "close_to_mean_20",
)
# When the bar starts (UTC hour 0-23, weekday Monday = 0): intraday volatility has a daily
# pattern. Integers held as doubles, computed exactly by Spark and by the stream alike.
CALENDAR_FEATURES = ("hour_of_day", "day_of_week")
# What the range, volatility and interval models see.
FORECAST_FEATURES = LAG_FEATURES + CALENDAR_FEATURES

# One document per predicted bar, id = the bar's doc id (so it sits "beside" the bar and a
# replayed batch overwrites it). The actual_* and error fields arrive with the next bar.
PREDICTION_MAPPING = {
    "doc_id": {"type": "keyword"},
    "ticker": {"type": "keyword"},
    "timespan": {"type": "keyword"},
    "multiplier": {"type": "integer"},
    "timestamp": {"type": "date", "format": "epoch_millis"},  # the bar the prediction is made at
    "target": {"type": "keyword"},  # next_close: the following bar's close
    "last_close": {"type": "double"},  # this bar's close: what persistence predicts
    "predicted_return": {"type": "double"},
    "predicted_close": {"type": "double"},
    "model": {"type": "keyword"},  # the model or baseline (persistence) serving next_close
    "model_version": {"type": "keyword"},  # the registered model and version: finstream-lags/3
    "model_run_id": {"type": "keyword"},  # the MLflow run that trained it
    # The central 90 % interval for the next close, the next bar's log(high/low) and the
    # variance of its log return; each with the model or naive baseline that served it, and
    # the reference baseline's forecast beside it (for the live skill charts).
    "lower": {"type": "double"},
    "upper": {"type": "double"},
    "interval_model": {"type": "keyword"},
    "interval_version": {"type": "keyword"},
    "interval_run_id": {"type": "keyword"},
    "predicted_range": {"type": "double"},
    "baseline_range": {"type": "double"},
    "range_model": {"type": "keyword"},
    "range_version": {"type": "keyword"},
    "range_run_id": {"type": "keyword"},
    "predicted_variance": {"type": "double"},
    "baseline_variance": {"type": "double"},
    "volatility_model": {"type": "keyword"},
    "volatility_version": {"type": "keyword"},
    "volatility_run_id": {"type": "keyword"},
    "features": {"type": "object", "dynamic": "strict",
                 "properties": {name: {"type": "double"} for name in FORECAST_FEATURES}},
    "published_at": {"type": "date", "format": "epoch_millis"},  # the bar's Kafka record timestamp
    "predicted_at": {"type": "date", "format": "epoch_millis"},  # when its micro-batch began writing
    "latency_ms": {"type": "long"},  # predicted_at - published_at
    "actual_timestamp": {"type": "date", "format": "epoch_millis"},  # the next bar's start
    "actual_close": {"type": "double"},
    "error": {"type": "double"},  # predicted_close - actual_close
    "abs_error": {"type": "double"},
    "baseline_error": {"type": "double"},  # last_close - actual_close: persistence's error
    "inside_interval": {"type": "double"},  # 1 if lower <= actual_close <= upper, else 0
    "interval_score": {"type": "double"},  # on the return scale (finstream.skill.interval_score)
    "actual_range": {"type": "double"},
    "range_error": {"type": "double"},  # predicted_range - actual_range
    "range_baseline_error": {"type": "double"},  # baseline_range - actual_range
    "actual_variance": {"type": "double"},  # the next bar's squared log return
    "variance_loss": {"type": "double"},  # QLIKE; absent when the close did not move
    "variance_baseline_loss": {"type": "double"},
}


def prediction_mapping() -> dict[str, Any]:
    return strict_mapping(bounded_keywords(PREDICTION_MAPPING))


# What the stream job counts per micro-batch: index-bars' messages by outcome, and
# predict-bars' rows by status (a new bar predicted; an earlier prediction judged, i.e. given
# its actual; a new bar not scored: no model, another series' model, too little history; a
# late bar; a duplicate bar).
MESSAGE_COUNTS = ("bars", "dead_letters")
PREDICTION_STATUSES = ("predicted", "judged", "unscored", "late", "duplicate")

PIPELINE_METRICS_MAPPING = {
    "query": {"type": "keyword"},
    "query_id": {"type": "keyword"},
    "run_id": {"type": "keyword"},
    "batch_id": {"type": "long"},
    "timestamp": {"type": "date"},
    "input_rows": {"type": "long"},
    "input_rows_per_second": {"type": "double"},
    "processed_rows_per_second": {"type": "double"},
    "batch_duration_ms": {"type": "long"},
    "offsets_behind_latest": {"type": "long"},
    "state_rows": {"type": "long"},  # rows kept by stateful operators (the predictor's bar history)
    "rows_dropped_by_watermark": {"type": "long"},
    # Observed per micro-batch (finstream.spark.bars.message_counts, serving.status_counts).
    **{name: {"type": "long"} for name in (*MESSAGE_COUNTS, *PREDICTION_STATUSES)},
    # The live skill watch (finstream.live_skill), per question with a naive baseline.
    **{f"live_{q}_{name}": {"type": kind} for q in LIVE_LOSSES for name, kind in (
        ("loss_ratio", "double"), ("version", "keyword"), ("judged", "long"), ("band_low", "double"),
        ("band_high", "double"))},
}


def pipeline_metrics_mapping() -> dict[str, Any]:
    return strict_mapping(bounded_keywords(PIPELINE_METRICS_MAPPING))


# --- the indices ---------------------------------------------------------------------------------
# Every index the project writes: the setting that names it (finstream.config.Settings field)
# and its mapping. Templates, dashboards, benchmarks and tests all read this table.
INDEX_MAPPINGS = {
    "es_index_bars": bar_mapping,
    "es_index_dead_letters": dead_letter_mapping,
    "es_index_predictions": prediction_mapping,
    "es_index_model_metrics": model_metrics_mapping,
    "es_index_pipeline_metrics": pipeline_metrics_mapping,
}


def index_mappings(settings: Any) -> dict[str, dict[str, Any]]:
    """Index name (as `settings` names it) -> its mapping."""
    return {getattr(settings, field): mapping() for field, mapping in INDEX_MAPPINGS.items()}
