"""Kafka records -> validated bars and dead letters. Pure DataFrame -> DataFrame functions.

    records ─▶ decode_records ─▶ parse_messages ─▶ check_messages ─┬─▶ valid_bars
                                                                   └─▶ dead_letters
Every input record ends up in exactly one of the two outputs.

One record is one message: one JSON object (RFC 8259, as Python's json.loads reads it, plus
NaN and Infinity so that the finite-number rule can name them). finstream.ingest.messages applies
the same rules in plain Python for the producer's own reader, and tests/unit/test_messages.py
holds the two to the same verdict and reasons on every message of tests/catalogue.py.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from finstream.core import schema as S
from finstream.ingest.spark_types import (
    CORRUPT_RECORD,
    message_schema,
    number_text_schema,
    presence_schema,
    probe_schema,
    spark_type,
)

JSON_OPTIONS = {
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": CORRUPT_RECORD,
    # NaN and Infinity parse as numbers so that the finite-number rule can name them.
    "allowNonNumericNumbers": "true",
    # Spark's reader takes 'single-quoted' names and strings by default; JSON does not.
    "allowSingleQuotes": "false",
}
# What Spark's reader renders into a string field from a value of another JSON type (its text;
# NaN and Infinity quoted): a string field whose text looks like one is read again as each of
# those types.
_OTHER_JSON_TYPES = (T.DoubleType(), T.BooleanType(), T.MapType(T.StringType(), T.StringType()),
                     T.ArrayType(T.StringType()))
_RENDERED_NON_STRING = r'^(-?[0-9]|true$|false$|[{\["])'
_STRING_FIELDS = tuple(spec.name for spec in S.BAR_FIELDS if spec.python_type == "str")
_NUMBER_FIELDS = tuple(spec.name for spec in S.BAR_FIELDS if spec.python_type in ("int", "float"))
# What Spark's reader renders into a string field from a number (NaN and the infinities quoted):
# a number field whose text does not look like one was given a string ("NaN", "Infinity", "-INF").
_RENDERED_NUMBER = r'^(-?[0-9]|")'
_WHITESPACE_SQL = S.JSON_WHITESPACE.encode("unicode_escape").decode()  # as escapes in a SQL string literal


def _not_utf8() -> Column:
    """The value's bytes do not survive a round trip through text: not valid UTF-8."""
    return F.encode(F.col("raw"), "UTF-8") != F.col("value_bytes")


def now_millis() -> Column:
    """The wall clock when a row is processed, in epoch ms (long), read per row at run time.

    Not current_timestamp(): the optimizer folds that into a new literal every micro-batch, so
    each batch's generated code differs from the last one's, misses Spark's code cache and
    keeps the JVM's JIT compiling (measured: the C2 compiler at a third of a core in a
    steady 1 000 bars/s stream).
    """
    return F.expr("reflect('java.lang.System', 'currentTimeMillis')").cast("long")


def epoch_millis(ts: Column) -> Column:
    """A timestamp column as epoch ms (long), sub-millisecond digits truncated."""
    return (ts.cast("double") * 1000).cast("long")


def decode_records(records: DataFrame) -> DataFrame:
    """Kafka source rows -> message text plus its Kafka coordinates.

    Args:
        records: the Kafka source's columns (key, value, topic, partition, offset, timestamp).

    Returns:
        key (string), value_bytes (binary), raw (the value as text), topic, partition, offset
        and published_at (the record's timestamp, epoch ms).
    """
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
    """Parses each message's JSON, adding the columns `bar`, `present`, `probes` and `number_texts`.

    Args:
        messages: decode_records' columns (`raw` at least).

    Returns:
        The input columns plus `bar` (struct of message_schema: typed fields, null where absent
        or mistyped, and _corrupt_record), `present` (each field rendered as text, for telling
        a missing field from a mistyped one; null when the message parsed cleanly with every
        required field) and `probes` (the string fields read as each other JSON type, for
        telling "AAPL" from 42; null unless a string field's text looks like another type) and
        `number_texts` (the number fields read as text, for telling the string "NaN", which
        Spark's reader takes for a number, from the number NaN; null unless a number is not finite).
    """
    raw = F.col("raw")
    parsed = F.from_json(raw, message_schema(), JSON_OPTIONS)
    # Only messages that did not parse cleanly need the second, presence-only parse, and only
    # those with a string field that reads like another type need the probes.
    needs_presence = parsed.getField(CORRUPT_RECORD).isNotNull() | _any_required_null(parsed)
    looks_rendered = F.lit(False)
    for name in _STRING_FIELDS:
        looks_rendered = looks_rendered | parsed.getField(name).rlike(_RENDERED_NON_STRING)
    probes = F.struct(*[F.from_json(raw, probe_schema(t), JSON_OPTIONS).alias(f"as_{i}")
                        for i, t in enumerate(_OTHER_JSON_TYPES)])
    nonfinite = F.lit(False)
    for name in _NUMBER_FIELDS:
        nonfinite = nonfinite | _is_nonfinite(parsed.getField(name))
    return messages.select(
        "*", parsed.alias("bar"),
        F.when(needs_presence, F.from_json(raw, presence_schema(), JSON_OPTIONS)).alias("present"),
        F.when(looks_rendered, probes).alias("probes"),
        F.when(nonfinite, F.from_json(raw, number_text_schema(), JSON_OPTIONS)).alias("number_texts"))


def _is_nonfinite(number: Column) -> Column:
    """NaN, Infinity or -Infinity (Spark's JSON reader takes all three for a double)."""
    return F.isnan(number) | (F.abs(number) == float("inf"))


def _any_required_null(parsed: Column) -> Column:
    cond = F.lit(False)
    for name in S.REQUIRED_FIELDS:
        cond = cond | parsed.getField(name).isNull()
    return cond


def _rule(broken: Column, reason: str) -> Column:
    return F.when(broken, F.lit(reason))


def _given_another_type(name: str, probes: Column) -> Column:
    """A string field that the message gave a number, boolean, object or array."""
    given = F.lit(False)
    for i in range(len(_OTHER_JSON_TYPES)):
        given = given | probes.getField(f"as_{i}").getField(name).isNotNull()
    return F.coalesce(given, F.lit(False))


def _given_a_string(name: str, number_texts: Column) -> Column:
    """A number field that the message gave a string Spark's reader took for a number ("NaN")."""
    return F.coalesce(~number_texts.getField(name).rlike(_RENDERED_NUMBER), F.lit(False))


def _field_rules(bar: Column, present: Column, probes: Column, number_texts: Column) -> list[Column]:
    rules = []
    for spec in S.BAR_FIELDS:
        value, shown = bar.getField(spec.name), present.getField(spec.name)
        expected = S.JSON_TYPE_NAMES[spec.python_type]
        mistyped = value.isNull() & shown.isNotNull()
        if spec.python_type == "str":
            mistyped = mistyped | _given_another_type(spec.name, probes)
        else:
            mistyped = mistyped | _given_a_string(spec.name, number_texts)
        rules.append(_rule(mistyped, f"wrong type: {spec.name} (expected {expected})"))
        if spec.required:
            rules.append(_rule(value.isNull() & shown.isNull(), f"missing field: {spec.name}"))
    return rules


def _value_rules(bar: Column, probes: Column, number_texts: Column, now_ms: Column) -> list[Column]:
    def raw(name: str) -> Column:
        # A string field given another JSON type is absent for the value rules. (A number field
        # given a string is too: Spark's reader takes only non-finite spellings, and f() drops those.)
        value = bar.getField(name)
        return F.when(~_given_another_type(name, probes), value) if name in _STRING_FIELDS else value

    def f(name: str) -> Column:
        # Non-finite numbers get their own reason; the other rules see them as absent.
        return F.when(~_is_nonfinite(raw(name)), raw(name)) if name in _NUMBER_FIELDS else raw(name)

    rules = [_rule(_is_nonfinite(raw(name)) & ~_given_a_string(name, number_texts), f"not a finite number: {name}")
             for name in _NUMBER_FIELDS]
    for name, limit in S.INTEGER_LIMITS.items():
        rules.append(_rule(f(name) % 1 != 0, f"not an integer: {name}"))
        rules.append(_rule(F.abs(f(name)) > limit, f"absurd magnitude: {name} above {limit}"))
    for name in (*S.PRICE_FIELDS, "vwap"):
        rules.append(_rule(f(name) <= 0, f"non-positive price: {name}"))
        rules.append(_rule(f(name) > S.MAX_PRICE, f"absurd magnitude: {name} above {S.MAX_PRICE:g}"))
        rules.append(_rule((f(name) > 0) & (f(name) < S.MIN_PRICE),
                           f"absurd magnitude: {name} below {S.MIN_PRICE:g}"))
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


def check_messages(parsed: DataFrame, now_ms: Column | None = None) -> DataFrame:
    """Adds `reasons`: every rule the message breaks (empty for a valid bar).

    A message refused before its fields are read (empty, too large, not UTF-8, not an object,
    malformed, data after the object, duplicate field) gets that one reason, alone; any other,
    every field and value rule it breaks.

    Args:
        parsed: parse_messages' columns.
        now_ms: the clock the future-timestamp rule reads, a long column of epoch ms (default:
            now_millis()).

    Returns:
        The input columns plus `reasons` (array of strings).
    """
    now_ms = now_millis() if now_ms is None else now_ms
    bar, present, probes, number_texts = F.col("bar"), F.col("present"), F.col("probes"), F.col("number_texts")
    is_empty = F.col("value_bytes").isNull() | (F.length(F.col("value_bytes")) == 0)
    not_utf8 = _not_utf8()
    not_object = ~F.expr(f"trim(LEADING '{_WHITESPACE_SQL}' FROM raw)").startswith("{")
    # A mistyped field also fills the corrupt-record column; malformed = not even a JSON object
    # of any values could be read (every value reads into a string). The cheap test first: `&`
    # stops there for the messages that parsed (nearly all).
    malformed = bar.getField(CORRUPT_RECORD).isNotNull() & _as_map().isNull()
    content_rules = F.array(*_field_rules(bar, present, probes, number_texts),
                            *_value_rules(bar, probes, number_texts, now_ms))
    too_large = F.length(F.col("value_bytes")) > S.MAX_MESSAGE_BYTES
    reasons = (
        F.when(is_empty, F.array(F.lit(S.EMPTY)))
        .when(too_large, F.array(F.lit(S.TOO_LARGE)))
        .when(not_utf8, F.array(F.lit(S.NOT_UTF8)))
        .when(not_object, F.array(F.lit(S.NOT_OBJECT)))
        .when(malformed, F.array(F.lit(S.MALFORMED)))
        .when(~_one_value(), F.array(F.lit(S.DATA_AFTER_OBJECT)))
        .when(_duplicate_field(), F.array(F.lit(S.DUPLICATE_FIELD)))
        .otherwise(F.filter(content_rules, lambda r: r.isNotNull()))
    )
    return parsed.withColumn("reasons", reasons)


def _duplicate_field() -> Column:
    """A bar field named twice at the top level of the object.

    Reading the object's keys parses the whole text again, and a plain bar does not need it.
    Every string in the text, key or value, is delimited by two unescaped quotes. Each bar
    field the parse set has a key of its own, each string field set a string value of its own
    (when `probes` is null: Spark's reader renders any other JSON value into a string field as
    text that `probes` tests for), and a field named twice has one more key. So a text with no
    more quotes than twice that count cannot name a field twice. Only other texts have their
    keys read: e.g. unknown fields, a field given as null (a bar without its trade count), an
    escaped quote, a string field holding another type or a string like "42".
    """
    # `&` evaluates its right side only when the left is true: the keys read only for those.
    return ~_names_no_field_twice() & _keys_name_a_field_twice()


def _names_no_field_twice() -> Column:
    """`raw` has no more quotes than two per bar field `bar` has set and two per string field set,
    and `probes` is null (no string field set from another JSON type's text)."""
    bar = F.col("bar")
    strings = sum(bar.getField(spec.name).isNotNull().cast("int") * (2 if spec.python_type == "str" else 1)
                  for spec in S.BAR_FIELDS)
    # In bytes: a quote is one byte, and octet_length reads a length where length() counts characters.
    quotes = F.octet_length(F.col("raw")) - F.octet_length(F.expr("""replace(raw, '"', '')"""))
    return F.col("probes").isNull() & (quotes <= 2 * strings)


def _as_map() -> Column:
    """`raw` read as one JSON object of any values (each rendered as text), every key kept as
    often as it occurs (Spark's reader does not merge repeated keys into a map); null when the
    text is not such an object."""
    return F.from_json(F.col("raw"), T.MapType(T.StringType(), T.StringType()), JSON_OPTIONS)


def _keys_name_a_field_twice() -> Column:
    """The object's top-level keys (read from `raw`) name some bar field twice.

    json_object_keys reads keys alone, the cheapest read, but with its own JSON options: without
    NaN and Infinity, it gives no keys for a text holding one. Such a text's keys come from the
    dearer map read with the message's options.
    """
    keys = F.coalesce(F.expr("json_object_keys(raw)"), F.map_keys(_as_map()))
    named = F.filter(keys, lambda key: key.isin(*S.BAR_FIELD_NAMES))
    return F.coalesce(F.size(named) != F.size(F.array_distinct(named)), F.lit(False))


def _one_value() -> Column:
    """True when the text `raw` is one JSON value and nothing but whitespace after it, for a
    text already known to hold a readable object (check_messages asks only then).

    Spark's JSON functions read the first value and ignore the rest (a second bar after a
    newline would vanish), and none says where the value ended. So the text is read as the
    first element of an array whose second element is a seal, the text's own hash: the array
    reads as exactly [text, seal] only when the text is a single value (a text that forged the
    seal would have to contain its own hash).

    That second full parse is most of the rule's cost, and a plain bar does not need it: when
    the text's first '}' is its last character but for trailing whitespace, the object can only
    close there, so nothing follows it. Only texts with a '}' before the end (a brace in a
    string, a nested object, a second object) are sealed and read again. This assumes the sealed
    read refuses nothing the first read took: true of Spark 3.4's Jackson (2.14), which has no
    nesting-depth limit; with a later Jackson's (1 000), a text nested exactly that deep would
    pass here and be refused sealed, so an upgrade should also require no '[' for the shortcut.
    """
    # `|` evaluates its right side only when the left is false: the sealed read only for those.
    return _closes_at_the_end() | _sealed_read_is_one_value()


def _closes_at_the_end() -> Column:
    """The first '}' in `raw` is its last character but for trailing JSON whitespace."""
    return F.instr(F.col("raw"), "}") == F.length(F.expr(f"trim(TRAILING '{_WHITESPACE_SQL}' FROM raw)"))


def _sealed_read_is_one_value() -> Column:
    """`raw` read as the first element of [raw, seal] leaves exactly the seal as the second."""
    raw = F.col("raw")
    seal = F.xxhash64(raw).cast("string")
    sealed = F.from_json(F.concat(F.lit("["), raw, F.lit(","), seal, F.lit("]")), T.ArrayType(T.StringType()),
                         JSON_OPTIONS)
    return F.coalesce((F.size(sealed) == 2) & (sealed.getItem(1) == seal), F.lit(False))


def checked_messages(records: DataFrame, now_ms: Column | None = None) -> DataFrame:
    """Kafka records -> every message decoded, parsed and checked.

    The one chain the stream job, the replay and the tests use.

    Args:
        records: the Kafka source's columns (or records shaped like them).
        now_ms: as for check_messages.

    Returns:
        decode_records' columns, parse_messages' and `reasons` (empty for a valid bar).
    """
    return check_messages(parse_messages(decode_records(records)), now_ms)


def doc_id(ticker: Column, timespan: Column, multiplier: Column, timestamp: Column) -> Column:
    """The same id as finstream.core.schema.bar_doc_id, as a Spark column of those four columns."""
    parts = {"ticker": ticker, "timespan": timespan, "multiplier": multiplier, "timestamp": timestamp}
    return F.concat_ws(S.DOC_ID_SEPARATOR, *[parts[name].cast("string") for name in S.DOC_ID_FIELDS])


def bar_doc_id_column() -> Column:
    """The doc id of the bar in the current row's ticker, timespan, multiplier and timestamp."""
    return doc_id(F.col("ticker"), F.col("timespan"), F.col("multiplier"), F.col("timestamp"))


def _bar_values() -> dict[str, Column]:
    """A bar document's fields: the schema's fields plus id and provenance."""
    values = {spec.name: F.col("bar").getField(spec.name).cast(spark_type(spec)) for spec in S.BAR_FIELDS}
    return {**values, "published_at": F.col("published_at"), "kafka_partition": F.col("partition"),
            "kafka_offset": F.col("offset"),
            "doc_id": doc_id(values["ticker"], values["timespan"], values["multiplier"], values["timestamp"])}


def valid_bars(checked: DataFrame, indexed_at: Column | None = None) -> DataFrame:
    """Valid messages as bar documents.

    Args:
        checked: check_messages' columns.
        indexed_at: the indexing time, a long column of epoch ms (default: now_millis()).

    Returns:
        One row per message with no reasons: the Bar fields (typed as bar_schema), published_at,
        kafka_partition, kafka_offset, doc_id and indexed_at.
    """
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
    """Refused messages as dead-letter documents: their reasons, raw value and Kafka coordinates.

    Args:
        checked: check_messages' columns.
        indexed_at: the indexing time, a long column of epoch ms (default: now_millis()).

    Returns:
        One row per message with reasons: doc_id (topic|partition|offset), reason (the reasons
        joined by "; "), reasons, raw, raw_base64 (set when not UTF-8), key, topic, partition,
        offset, published_at and indexed_at.
    """
    indexed_at = now_millis() if indexed_at is None else indexed_at
    values = _dead_letter_values()
    return checked.where(F.size(F.col("reasons")) > 0).select(
        *[value.alias(name) for name, value in values.items()], indexed_at.alias("indexed_at"))


def message_counts() -> list[Column]:
    """Aggregates for DataFrame.observe over checked messages: the valid bars and the dead letters.

    Observed by the query, they are reported in its progress: no extra job.

    Returns:
        Two long sum columns, named after core.schema.MESSAGE_COUNTS ("bars", "dead_letters").
    """
    refused = F.size(F.col("reasons")) > 0
    bars, dead_letters = S.MESSAGE_COUNTS
    return [F.sum((~refused).cast("long")).alias(bars), F.sum(refused.cast("long")).alias(dead_letters)]


TARGET_INDEX = "target_index"  # which index a document goes to (not written into it)


def index_document_columns(bars_index: str, dead_letters_index: str,
                           indexed_at: Column | None = None) -> list[Column]:
    """The columns of index_documents, over check_messages' columns: built once, they can be
    selected batch after batch (a micro-batch then pays no Python-to-JVM calls to build them).

    Args:
        bars_index: the bars index's name.
        dead_letters_index: the dead-letters index's name.
        indexed_at: the indexing time, a long column of epoch ms (default: now_millis(), read per row).

    Returns:
        TARGET_INDEX, then the union of valid_bars' and dead_letters' columns (see index_documents).
    """
    indexed_at = now_millis() if indexed_at is None else indexed_at
    is_bar = F.size(F.col("reasons")) == 0
    bar, letter = _bar_values(), _dead_letter_values()

    def value(name: str) -> Column:
        if name in bar and name in letter:
            return F.when(is_bar, bar[name]).otherwise(letter[name])
        return F.when(is_bar, bar[name]) if name in bar else F.when(~is_bar, letter[name])

    return [F.when(is_bar, F.lit(bars_index)).otherwise(F.lit(dead_letters_index)).alias(TARGET_INDEX),
            *[value(name).alias(name) for name in dict.fromkeys([*bar, *letter])], indexed_at.alias("indexed_at")]


def index_documents(checked: DataFrame, bars_index: str, dead_letters_index: str,
                    indexed_at: Column | None = None) -> DataFrame:
    """Every checked message as one document, a bar or a dead letter, with the index it belongs in.

    A bar has valid_bars' fields, a dead letter dead_letters'. The other kind's fields are
    null, and null fields are not written, so one ES-Hadoop write fills both indices in one
    pass over the batch (no cache, no second job).

    Args:
        checked: check_messages' columns.
        bars_index: the bars index's name.
        dead_letters_index: the dead-letters index's name.
        indexed_at: the indexing time, a long column of epoch ms (default: now_millis()).

    Returns:
        One row per message: TARGET_INDEX (the index's name, not a document field), then the
        union of valid_bars' and dead_letters' columns.
    """
    return checked.select(*index_document_columns(bars_index, dead_letters_index, indexed_at))


def latest_per_doc_id(bars: DataFrame, order_col: str = "kafka_offset") -> DataFrame:
    """One row per bar: where a bar was published more than once, the latest copy wins.

    Args:
        bars: bar documents (valid_bars' columns, `doc_id` and `order_col` at least).
        order_col: the column whose highest value marks the latest copy.

    Returns:
        The same columns, one row per doc_id.
    """
    latest_first = Window.partitionBy("doc_id").orderBy(F.col(order_col).desc())
    return bars.withColumn("_rank", F.row_number().over(latest_first)).where(F.col("_rank") == 1).drop("_rank")
