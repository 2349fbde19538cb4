"""Kafka records -> validated bars and dead letters. Pure DataFrame -> DataFrame functions.

    records ─▶ decode_records ─▶ parse_messages ─▶ check_messages ─┬─▶ valid_bars
                                                                   └─▶ dead_letters
Every input record ends up in exactly one of the two outputs.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from finstream import schema as S
from finstream.spark.schema import CORRUPT_RECORD, message_schema, presence_schema

JSON_OPTIONS = {
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": CORRUPT_RECORD,
    # NaN and Infinity parse as numbers so that the finite-number rule can name them.
    "allowNonNumericNumbers": "true",
}


def _not_utf8() -> Column:
    """The value's bytes do not survive a round trip through text: not valid UTF-8."""
    return F.encode(F.col("raw"), "UTF-8") != F.col("value_bytes")


def now_millis() -> Column:
    """The wall clock when a row is processed, read per row at run time. Not
    current_timestamp(): the optimizer folds that into a new literal every micro-batch, so
    each batch's generated code differs from the last one's, misses Spark's code cache and
    keeps the JVM's JIT compiling (measured: the C2 compiler at a third of a core in a
    steady 1 000 bars/s stream)."""
    return F.expr("reflect('java.lang.System', 'currentTimeMillis')").cast("long")


def epoch_millis(ts: Column) -> Column:
    return (ts.cast("double") * 1000).cast("long")


def decode_records(records: DataFrame) -> DataFrame:
    """Kafka source rows -> message text plus its Kafka coordinates."""
    value = F.col("value")
    return records.select(
        F.col("key").cast("string").alias("key"),
        value.alias("value_bytes"),
        value.cast("string").alias("raw"),
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        epoch_millis(F.col("timestamp")).alias("published_at"),
    )


def parse_messages(messages: DataFrame) -> DataFrame:
    """Adds `bar` (typed fields, null where absent or mistyped) and `present` (each field
    rendered as text, for telling a missing field from a mistyped one)."""
    parsed = F.from_json(F.col("raw"), message_schema(), JSON_OPTIONS)
    # Only messages that did not parse cleanly need the second, presence-only parse.
    needs_presence = parsed.getField(CORRUPT_RECORD).isNotNull() | _any_required_null(parsed)
    return messages.withColumn("bar", parsed).withColumn(
        "present", F.when(needs_presence, F.from_json(F.col("raw"), presence_schema()))
    )


def _any_required_null(parsed: Column) -> Column:
    cond = F.lit(False)
    for name in S.REQUIRED_FIELDS:
        cond = cond | parsed.getField(name).isNull()
    return cond


def _rule(broken: Column, reason: str) -> Column:
    return F.when(broken, F.lit(reason))


def _field_rules(bar: Column, present: Column) -> list[Column]:
    rules = []
    for spec in S.BAR_FIELDS:
        value, shown = bar.getField(spec.name), present.getField(spec.name)
        expected = {"str": "string", "int": "integer", "float": "number"}[spec.python_type]
        rules.append(_rule(value.isNull() & shown.isNotNull(), f"wrong type: {spec.name} (expected {expected})"))
        if spec.required:
            rules.append(_rule(value.isNull() & shown.isNull(), f"missing field: {spec.name}"))
    return rules


def _value_rules(bar: Column, now_ms: Column) -> list[Column]:
    raw = bar.getField

    def is_nonfinite(name: str) -> Column:
        return F.isnan(raw(name)) | (F.abs(raw(name)) == float("inf"))

    def f(name: str) -> Column:
        # Non-finite numbers get their own reason; the other rules see them as absent.
        return F.when(~is_nonfinite(name), raw(name)) if name in _NUMBER_FIELDS else raw(name)

    rules = [_rule(is_nonfinite(name), f"not a finite number: {name}") for name in _NUMBER_FIELDS]
    for name in (*S.PRICE_FIELDS, "vwap"):
        rules.append(_rule(f(name) <= 0, f"non-positive price: {name}"))
        rules.append(_rule(f(name) > S.MAX_PRICE, f"absurd magnitude: {name} above {S.MAX_PRICE:g}"))
    rules += [
        _rule(f("high") < f("low"), "high below low"),
        _rule((f("open") < f("low")) | (f("open") > f("high")), "open outside [low, high]"),
        _rule((f("close") < f("low")) | (f("close") > f("high")), "close outside [low, high]"),
        _rule(f("volume") < 0, "negative volume"),
        _rule(f("volume") > S.MAX_VOLUME, f"absurd magnitude: volume above {S.MAX_VOLUME:g}"),
        _rule(f("transactions") < 0, "negative transactions"),
        _rule(f("multiplier") < 1, "multiplier below 1"),
        _rule(~f("timespan").isin(*S.TIMESPANS), "unknown timespan"),
        _rule(~f("ticker").rlike(S.TICKER_PATTERN), "invalid ticker (1-32 of A-Z 0-9 . : -)"),
        _rule(f("timestamp") < S.MIN_TIMESTAMP_MS, "timestamp before 1980 (seconds instead of milliseconds?)"),
        _rule(f("timestamp") > now_ms + S.MAX_FUTURE_MS, "timestamp in the future"),
    ]
    return rules


_NUMBER_FIELDS = (*S.PRICE_FIELDS, "vwap", "volume")


def check_messages(parsed: DataFrame, now_ms: Column | None = None) -> DataFrame:
    """Adds `reasons`: every rule the message breaks (empty for a valid bar)."""
    now_ms = now_millis() if now_ms is None else now_ms
    bar, present = F.col("bar"), F.col("present")
    is_empty = F.col("value_bytes").isNull() | (F.length(F.col("value_bytes")) == 0)
    not_utf8 = _not_utf8()
    not_object = ~F.ltrim(F.col("raw")).startswith("{")
    # json_object_keys is strict JSON; Spark's parser also takes NaN/Infinity, which
    # the finite-number rule then names. Malformed = neither of them could read it.
    # The cheap test first: `&` stops there for the messages that parsed (nearly all).
    malformed = bar.getField(CORRUPT_RECORD).isNotNull() & F.expr("json_object_keys(raw)").isNull()
    content_rules = F.array(*_field_rules(bar, present), *_value_rules(bar, now_ms))
    too_large = F.length(F.col("value_bytes")) > S.MAX_MESSAGE_BYTES
    reasons = (
        F.when(is_empty, F.array(F.lit("empty message")))
        .when(too_large, F.array(F.lit(f"message too large (over {S.MAX_MESSAGE_BYTES} bytes)")))
        .when(not_utf8, F.array(F.lit("not UTF-8 text")))
        .when(not_object, F.array(F.lit("not a JSON object")))
        .when(malformed, F.array(F.lit("malformed JSON")))
        .otherwise(F.filter(content_rules, lambda r: r.isNotNull()))
    )
    return parsed.withColumn("reasons", reasons)


def checked_messages(records: DataFrame, now_ms: Column | None = None) -> DataFrame:
    """Kafka records (or records shaped like them) -> every message decoded, parsed and checked
    (`reasons` empty for a valid bar): the one chain the stream job, the replay and the tests use."""
    return check_messages(parse_messages(decode_records(records)), now_ms)


def doc_id(ticker: Column, timespan: Column, multiplier: Column, timestamp: Column) -> Column:
    """The same id as finstream.schema.bar_doc_id, as a Spark column."""
    parts = {"ticker": ticker, "timespan": timespan, "multiplier": multiplier, "timestamp": timestamp}
    return F.concat_ws(S.DOC_ID_SEPARATOR, *[parts[name].cast("string") for name in S.DOC_ID_FIELDS])


def bar_doc_id_column() -> Column:
    """The doc id of the bar in the current row's ticker, timespan, multiplier and timestamp."""
    return doc_id(F.col("ticker"), F.col("timespan"), F.col("multiplier"), F.col("timestamp"))


def _bar_values() -> dict[str, Column]:
    """A bar document's fields: the schema's fields plus id and provenance."""
    values = {name: F.col("bar").getField(name) for name in S.BAR_FIELD_NAMES}
    return {**values, "published_at": F.col("published_at"), "kafka_partition": F.col("partition"),
            "kafka_offset": F.col("offset"),
            "doc_id": doc_id(values["ticker"], values["timespan"], values["multiplier"], values["timestamp"])}


def valid_bars(checked: DataFrame, indexed_at: Column | None = None) -> DataFrame:
    """Valid messages as bar documents."""
    indexed_at = now_millis() if indexed_at is None else indexed_at
    return checked.where(F.size(F.col("reasons")) == 0).select(
        *[value.alias(name) for name, value in _bar_values().items()], indexed_at.alias("indexed_at"))


def _dead_letter_values() -> dict[str, Column]:
    """A dead letter's fields. The id is topic|partition|offset, so reprocessing a batch
    rewrites the same dead letter."""
    return {
        "doc_id": F.concat_ws(S.DOC_ID_SEPARATOR, F.col("topic"), F.col("partition").cast("string"),
                              F.col("offset").cast("string")),
        "reason": F.concat_ws("; ", F.col("reasons")),
        "reasons": F.col("reasons"),
        "raw": F.coalesce(F.col("raw"), F.lit("")),
        "raw_base64": F.when(_not_utf8(), F.base64(F.col("value_bytes"))),
        "key": F.col("key"),
        "topic": F.col("topic"),
        "partition": F.col("partition"),
        "offset": F.col("offset"),
        "published_at": F.col("published_at"),
    }


def dead_letters(checked: DataFrame, indexed_at: Column | None = None) -> DataFrame:
    """Refused messages with their reasons, raw value and Kafka coordinates."""
    indexed_at = now_millis() if indexed_at is None else indexed_at
    values = _dead_letter_values()
    return checked.where(F.size(F.col("reasons")) > 0).select(
        *[value.alias(name) for name, value in values.items()], indexed_at.alias("indexed_at"))


def message_counts() -> list[Column]:
    """Valid bars and dead letters among checked messages, observed by the query (reported
    in its progress: no extra job)."""
    refused = F.size(F.col("reasons")) > 0
    bars, dead_letters = S.MESSAGE_COUNTS
    return [F.sum((~refused).cast("long")).alias(bars), F.sum(refused.cast("long")).alias(dead_letters)]


TARGET_INDEX = "target_index"  # which index a document goes to (not written into it)


def index_documents(checked: DataFrame, bars_index: str, dead_letters_index: str,
                    indexed_at: Column | None = None) -> DataFrame:
    """Every checked message as one document: a bar (valid_bars' fields) or a dead letter
    (dead_letters' fields), with the index it belongs in. The other kind's fields are null,
    and null fields are not written, so one ES-Hadoop write fills both indices in one pass
    over the batch (no cache, no second job)."""
    indexed_at = now_millis() if indexed_at is None else indexed_at
    is_bar = F.size(F.col("reasons")) == 0
    bar, letter = _bar_values(), _dead_letter_values()

    def value(name: str) -> Column:
        if name in bar and name in letter:
            return F.when(is_bar, bar[name]).otherwise(letter[name])
        return F.when(is_bar, bar[name]) if name in bar else F.when(~is_bar, letter[name])

    return checked.select(
        F.when(is_bar, F.lit(bars_index)).otherwise(F.lit(dead_letters_index)).alias(TARGET_INDEX),
        *[value(name).alias(name) for name in dict.fromkeys([*bar, *letter])], indexed_at.alias("indexed_at"))


def latest_per_doc_id(bars: DataFrame, order_col: str = "kafka_offset") -> DataFrame:
    """One row per bar: where a bar was published more than once, the latest copy wins."""
    latest_first = Window.partitionBy("doc_id").orderBy(F.col(order_col).desc())
    return bars.withColumn("_rank", F.row_number().over(latest_first)).where(F.col("_rank") == 1).drop("_rank")
