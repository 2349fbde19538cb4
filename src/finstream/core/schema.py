"""The bar message: defined once here. The producer serialises it, the Spark schema and
the Elasticsearch mappings are derived from it, and the tests import it.

A bar is one OHLCV aggregate as the Polygon/Massive aggregates endpoint returns it
(fields o h l c v vw n t), plus where it came from. Kafka key = ticker, value = UTF-8 JSON.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from finstream.core.questions import Question, served
from finstream.features.spec import FORECAST_FEATURES

TIMESPANS = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")
# The longest a bar of each timespan lasts, in seconds (months and years at their longest).
TIMESPAN_SECONDS = {"second": 1, "minute": 60, "hour": 3_600, "day": 86_400, "week": 604_800,
                    "month": 31 * 86_400, "quarter": 92 * 86_400, "year": 366 * 86_400}
# A series: one ticker's bars of one size. Features, state and evaluation are per series.
SERIES = ("ticker", "timespan", "multiplier")
# Java's int: Spark's IntegerType, Elasticsearch's `integer`, and most Kafka and Spark settings.
JAVA_INT_MAX = 2**31 - 1

# Validation rules the stream job applies (finstream.ingest.validation; finstream.ingest.messages
# in plain Python). Kept here, beside the fields they constrain, so that both and the tests read
# the same numbers; docs/data.md states them for readers (change it with them).
# AAPL, BRK.A, C:EURUSD, X:BTCUSD, I:SPX. It ends with "nothing follows", not `$`: both Python's
# and Java's `$` also match before a final line break ("AAPL\n").
TICKER_PATTERN = r"^[A-Z0-9][A-Z0-9.:\-]{0,31}(?![\s\S])"
MIN_TIMESTAMP_MS = 315_532_800_000  # 1980-01-01: a timestamp in seconds lands in 1970 and is refused
MAX_FUTURE_MS = 86_400_000  # a bar may start at most one day after the time it is processed
MAX_PRICE = 1e9
# The smallest price a bar may have. A real quote sits far above it (a meme coin trades near 1e-9);
# a denormal such as 5e-324 would make a log return -inf or its ratio overflow, so it is refused.
# MAX_PRICE / MIN_PRICE = 1e21 keeps every log return and its square finite.
MIN_PRICE = 1e-12
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
    """One OHLCV bar as it travels on Kafka: the fields of the message's JSON object.

    Each field's metadata gives its Elasticsearch type, its description and whether a message
    must carry it; BAR_FIELDS, the Spark schemas and the index mappings are derived from them.
    """

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
        """The Kafka value: the bar as compact UTF-8 JSON.

        Args:
            allow_nan: write NaN and Infinity (not JSON) instead of refusing them. The producer's
                fallback for an API answer that holds one: the stream job then dead-letters the
                bar naming the field, instead of the producer stopping on it.

        Raises:
            ValueError: a field is NaN or infinite and `allow_nan` is False.
        """
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"), allow_nan=allow_nan).encode("utf-8")

    @property
    def key(self) -> bytes:
        """The Kafka key: the ticker, UTF-8 (so a ticker's bars share a partition, in order)."""
        return self.ticker.encode("utf-8")

    @property
    def doc_id(self) -> str:
        """The bar's Elasticsearch document id (bar_doc_id)."""
        return bar_doc_id(self.ticker, self.timespan, self.multiplier, self.timestamp)


@dataclass(frozen=True)
class FieldSpec:
    """One bar field as the rest of the pipeline reads it (derived from Bar's metadata).

    Attributes:
        name: the JSON key and document field.
        python_type: "str", "int" or "float" (the annotation without `| None`).
        es_type: its Elasticsearch type: keyword, integer, long, date (epoch ms) or double.
        required: whether a message must carry it.
        doc: what it holds.
    """

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
INTEGER_LIMITS = {f.name: JAVA_INT_MAX if f.es_type == "integer" else 2**53 - 1 for f in BAR_FIELDS
                  if f.python_type == "int"}
PRICE_FIELDS = ("open", "high", "low", "close")

# The document id: one bar = one document, whatever the number of replays.
DOC_ID_FIELDS = ("ticker", "multiplier", "timespan", "timestamp")
DOC_ID_SEPARATOR = "|"


def bar_doc_id(ticker: str, timespan: str, multiplier: int, timestamp: int) -> str:
    """A bar's document id: its DOC_ID_FIELDS joined by "|", e.g. "AAPL|1|minute|1700000000000".

    finstream.ingest.validation.doc_id builds the same id as a Spark column.

    Args:
        ticker: e.g. AAPL, X:BTCUSD.
        timespan: one of TIMESPANS.
        multiplier: bars of multiplier x timespan.
        timestamp: the bar's start, epoch ms.
    """
    values = {"ticker": ticker, "timespan": timespan, "multiplier": multiplier, "timestamp": timestamp}
    return DOC_ID_SEPARATOR.join(str(values[name]) for name in DOC_ID_FIELDS)


def bar_from_dict(values: dict[str, Any]) -> Bar:
    """A Bar from a dict of its fields: a missing field becomes None, other keys are ignored."""
    return Bar(**{name: values.get(name) for name in BAR_FIELD_NAMES})


MAX_EXACT_INTEGER = 2**53  # beyond it a JSON number read as a double no longer holds every integer


def as_integer(value: Any) -> Any:
    """An integer field's value as an int when it is integral, however the JSON spelled it.

    For the multiplier, a timestamp or a trade count as the market-data API's JSON encoder
    writes it: 1412331, 1412331.0 and 1.412331e+06 all give 1412331 (a float within +-2**53,
    where a double is exact). Anything else comes back unchanged - a fractional count such as
    1412331.5, a string, None - so that the stream job dead-letters the bar with its reason
    ("not an integer: transactions").
    """
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT_INTEGER:
        return int(value)
    return value


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
    """A mapping of `properties` with `dynamic: strict`.

    Strict: a field the schema does not know is a bug in the job, not data to guess at.
    """
    return {"dynamic": "strict", "properties": dict(properties)}


def bar_mapping() -> dict[str, Any]:
    """The bars index's mapping: the Bar fields (dates as epoch_millis) and BAR_DOCUMENT_EXTRA."""
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
    """The dead-letters index's mapping, with the fields of a document Elasticsearch refused."""
    return strict_mapping(bounded_keywords({**DEAD_LETTER_MAPPING, **REFUSED_DOCUMENT_FIELDS}))


# A candidate's figures (finstream.core.skill.metrics, compare): each question fills its own.
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
    """The model-metrics index's mapping: the trainer's figures per question and candidate."""
    return strict_mapping(bounded_keywords(MODEL_METRICS_MAPPING))


# --- Predictions ---------------------------------------------------------------------------
# One document per predicted bar, id = the bar's doc id (so it sits "beside" the bar and a
# replayed batch overwrites it). The actual_* and judged fields arrive with the next bar.
# Each served question adds its own fields (finstream.core.questions).
PREDICTION_BASE_MAPPING = {
    "doc_id": {"type": "keyword"},
    "ticker": {"type": "keyword"},
    "timespan": {"type": "keyword"},
    "multiplier": {"type": "integer"},
    "timestamp": {"type": "date", "format": "epoch_millis"},  # the bar the prediction is made at
    "target": {"type": "keyword"},  # next_close: the following bar's close
    "last_close": {"type": "double"},  # this bar's close: what persistence predicts
    "features": {"type": "object", "dynamic": "strict",
                 "properties": {name: {"type": "double"} for name in FORECAST_FEATURES}},
    "published_at": {"type": "date", "format": "epoch_millis"},  # the bar's Kafka record timestamp
    "predicted_at": {"type": "date", "format": "epoch_millis"},  # when its micro-batch began writing
    "latency_ms": {"type": "long"},  # predicted_at - published_at
    "actual_timestamp": {"type": "date", "format": "epoch_millis"},  # the next bar's start
    "actual_close": {"type": "double"},
}


def prediction_properties(questions: Iterable[Question] | None = None) -> dict[str, Any]:
    """The predictions index's fields, with those of each served question.

    The base fields come first, then per served question its forecast fields (double), the
    fields naming what served it (keyword) and its judged fields (double).

    Args:
        questions: the questions to include (default: every declared one; unserved ones add nothing).

    Returns:
        field name -> its mapping property, e.g. {"type": "double"}.
    """
    properties = dict(PREDICTION_BASE_MAPPING)
    for question in served(questions):
        properties.update({name: {"type": "double"} for name in question.forecast_fields})
        properties.update({name: {"type": "keyword"} for name in question.model_fields})
        properties.update({name: {"type": "double"} for name in question.judged_fields})
    return properties


PREDICTION_MAPPING = prediction_properties()


def prediction_mapping(questions: Iterable[Question] | None = None) -> dict[str, Any]:
    """The predictions index's mapping: prediction_properties, strict, every keyword bounded.

    Args:
        questions: as for prediction_properties (default: every declared one).
    """
    return strict_mapping(bounded_keywords(prediction_properties(questions)))


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
    "state_rows": {"type": "long"},  # rows kept by stateful operators (the predictor's buckets of series)
    "rows_dropped_by_watermark": {"type": "long"},
    # Observed per micro-batch (finstream.ingest.validation.message_counts,
    # finstream.serving.predictor.status_counts).
    **{name: {"type": "long"} for name in (*MESSAGE_COUNTS, *PREDICTION_STATUSES)},
}
# The live skill watch's documents (finstream.serving.live_skill): one per batch and watched
# version (each question's champion of each series set), beside the batch's own document.
LIVE_SKILL_MAPPING = {
    "live_question": {"type": "keyword"},
    "live_version": {"type": "keyword"},  # finstream-range-hour1-fx/3
    "live_set": {"type": "keyword"},  # the series set's key: hour1-fx
    "live_loss_ratio": {"type": "double"},  # its loss over its reference baseline's, last window
    "live_judged": {"type": "long"},  # the judged predictions in that window
    "live_band_low": {"type": "double"},  # the holdout's band (finstream.core.skill.live_band)
    "live_band_high": {"type": "double"},
}


def live_field(question: str, name: str) -> str:
    """An observed metric of a question's live skill: live_<question>_<name>."""
    return f"live_{question}_{name}"


def pipeline_metrics_properties() -> dict[str, Any]:
    """The pipeline-metrics index's fields: the batches' and the live skill watch's."""
    return {**PIPELINE_METRICS_MAPPING, **LIVE_SKILL_MAPPING}


def pipeline_metrics_mapping() -> dict[str, Any]:
    """The pipeline-metrics index's mapping: pipeline_metrics_properties, strict, keywords bounded."""
    return strict_mapping(bounded_keywords(pipeline_metrics_properties()))


# --- the indices ---------------------------------------------------------------------------------
# Every index the project writes: the setting that names it (finstream.core.config.Settings field)
# and its mapping. Templates, dashboards, benchmarks and tests all read this table.
INDEX_MAPPINGS = {
    "es_index_bars": bar_mapping,
    "es_index_dead_letters": dead_letter_mapping,
    "es_index_predictions": prediction_mapping,
    "es_index_model_metrics": model_metrics_mapping,
    "es_index_pipeline_metrics": pipeline_metrics_mapping,
}


def index_mappings(settings: Any) -> dict[str, dict[str, Any]]:
    """Index name (as `settings` names it) -> its mapping, for every index in INDEX_MAPPINGS.

    Args:
        settings: a finstream.core.config.Settings (anything with its es_index_* attributes).
    """
    return {getattr(settings, field): mapping() for field, mapping in INDEX_MAPPINGS.items()}
