"""Spark schemas derived from finstream.core.schema.BAR_FIELDS (never restated by hand)."""

from __future__ import annotations

from pyspark.sql import types as T

from finstream.core.schema import BAR_FIELDS, FieldSpec

CORRUPT_RECORD = "_corrupt_record"

_SPARK_TYPES = {
    ("str", "keyword"): T.StringType(),
    ("int", "integer"): T.IntegerType(),
    ("int", "long"): T.LongType(),
    ("int", "date"): T.LongType(),  # epoch milliseconds
    ("float", "double"): T.DoubleType(),
}


# A document field's Spark type from its Elasticsearch type (dates are epoch milliseconds).
ES_SPARK_TYPES = {"keyword": T.StringType(), "integer": T.IntegerType(), "long": T.LongType(),
                  "date": T.LongType(), "double": T.DoubleType()}


def spark_type(spec: FieldSpec) -> T.DataType:
    """A bar field's Spark type in the typed bar (dates as epoch ms longs).

    Raises:
        KeyError: a pairing of Python and Elasticsearch types with no Spark type here (a new
            kind of field: add it to _SPARK_TYPES).
    """
    return _SPARK_TYPES[(spec.python_type, spec.es_type)]


def bar_schema() -> T.StructType:
    """The typed bar, as the stream job indexes it and the trainer reads it."""
    return T.StructType([T.StructField(s.name, spark_type(s), nullable=not s.required) for s in BAR_FIELDS])


def message_schema() -> T.StructType:
    """What from_json parses a message with: every bar field, nullable, and the corrupt-record column.

    Every field is nullable (a message may lack any of them); the corrupt-record column keeps
    the text of a bad message. Integer fields are read as doubles: the market-data API's JSON
    encoder writes a trade count as 1.412331e+06, and an integral value is an integer whatever
    its spelling (the checks then refuse a fractional one, and valid_bars casts to bar_schema's
    type).
    """
    fields = [T.StructField(s.name, T.DoubleType() if s.python_type == "int" else spark_type(s), True)
              for s in BAR_FIELDS]
    return T.StructType(fields + [T.StructField(CORRUPT_RECORD, T.StringType(), True)])


def probe_schema(data_type: T.DataType) -> T.StructType:
    """The bar's string fields, each read as `data_type`.

    A non-null value means the message gave that field a JSON value of that type (Spark's
    reader renders any value into a string field, so the typed bar cannot tell).
    """
    return T.StructType([T.StructField(s.name, data_type, True) for s in BAR_FIELDS if s.python_type == "str"])


def number_text_schema() -> T.StructType:
    """The bar's number fields, each read as a string.

    Spark's reader takes the strings "NaN", "Infinity", "+INF" and "-INF" for numbers; read as
    text, such a string keeps its letters where a number renders as digits (NaN and the
    infinities quoted).
    """
    return T.StructType([T.StructField(s.name, T.StringType(), True) for s in BAR_FIELDS if s.python_type != "str"])


def presence_schema() -> T.StructType:
    """Every bar field as a string, to tell a missing field from a mistyped one.

    Spark's JSON reader renders any JSON value into a string field, so a non-null value here
    means the key is present with a non-null value.
    """
    return T.StructType([T.StructField(s.name, T.StringType(), True) for s in BAR_FIELDS])
