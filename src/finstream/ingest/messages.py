"""What one valid message is, in plain Python: the stream job's checks (finstream.ingest.validation)
for the readers that are not Spark (the producer's resume, tools, tests).

    check(value) -> (fields, reasons)   reasons empty for a valid bar
    valid_bar(value) -> dict | None     the bar's fields, integers as int, or None if refused

The rules and their reasons are the stream job's, in its order: one record holds one JSON
object (RFC 8259, plus NaN and Infinity so that the finite-number rule can name them), each
field of finstream.core.schema.Bar has its JSON type (an integer may be spelled 1.412331e+06 but
not 1.5), and the values pass the rules beside the fields (prices, bounds, timestamps).
tests/unit/test_messages.py holds this module and Spark to the same reasons on every message
of tests/catalogue.py.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from typing import Any

from finstream.core import schema as S

_TICKER = re.compile(S.TICKER_PATTERN)
_NUMBER_FIELDS = tuple(spec.name for spec in S.BAR_FIELDS if spec.python_type in ("int", "float"))


def _framing(value: bytes | None) -> tuple[dict | None, str | None]:
    """The message's JSON object, or the one reason it cannot be read as one."""
    if not value:
        return None, S.EMPTY
    if len(value) > S.MAX_MESSAGE_BYTES:
        return None, S.TOO_LARGE
    try:
        text = value.decode("utf-8")  # strict: a BOM or UTF-16 is not this, either
    except UnicodeDecodeError:
        return None, S.NOT_UTF8
    if not text.lstrip(S.JSON_WHITESPACE).startswith("{"):
        return None, S.NOT_OBJECT
    names: list[list[str]] = []  # the keys of each object, innermost first: the message's last

    def pairs(items: list[tuple[str, Any]]) -> dict:
        names.append([key for key, _ in items])
        return dict(items)

    try:
        body = json.loads(text, object_pairs_hook=pairs, parse_int=_integer)
    except json.JSONDecodeError as exc:
        return None, S.DATA_AFTER_OBJECT if exc.msg == "Extra data" else S.MALFORMED
    except RecursionError:  # nesting deeper than Python's stack
        return None, S.MALFORMED
    fields = [key for key in names[-1] if key in S.BAR_FIELD_NAMES]
    return (None, S.DUPLICATE_FIELD) if len(fields) != len(set(fields)) else (body, None)


def _integer(digits: str) -> int | float:
    """A JSON integer; one longer than Python converts (sys.get_int_max_str_digits, 4 300 by
    default: int() raises) as a float, as Spark's reader takes it: infinite, so the finite-number
    rule names it in a bar field, and an unknown field's is ignored as in Spark."""
    limit = sys.get_int_max_str_digits()
    return float(digits) if limit and len(digits.lstrip("-")) > limit else int(digits)


def _typed(spec: S.FieldSpec, value: Any) -> bool:
    if spec.python_type == "str":
        return isinstance(value, str)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _nonfinite(value: Any) -> bool:
    """NaN or an infinity, as a double reads it (an integer of 400 digits is one)."""
    try:
        return isinstance(value, (int, float)) and not math.isfinite(float(value))
    except OverflowError:
        return True


def _finite(value: Any) -> float | None:
    """The value as the rules see it: a finite number, else None (Spark's null)."""
    return float(value) if isinstance(value, (int, float)) and not _nonfinite(value) else None


def _cmp(a: float | None, op: str, b: float | None) -> bool | None:
    """A comparison as SQL makes it: unknown (None) when an input is absent."""
    if a is None or b is None:
        return None
    return a < b if op == "<" else a > b if op == ">" else a <= b


def _either(a: bool | None, b: bool | None) -> bool | None:
    """SQL's OR: true if either is, unknown if either is unknown, else false."""
    return True if a is True or b is True else None if a is None or b is None else False


def _value_rules(bar: dict, now_ms: int) -> list[str]:
    """finstream.ingest.validation._value_rules, rule for rule and in its order. A rule whose input is
    absent, mistyped or not finite is unknown and says nothing, as in SQL."""
    x = {name: _finite(bar.get(name)) for name in _NUMBER_FIELDS}
    rules: list[tuple[bool | None, str]] = [
        (_nonfinite(bar.get(name)), f"not a finite number: {name}")
        for name in _NUMBER_FIELDS]
    for name, limit in S.INTEGER_LIMITS.items():
        rules.append((x[name] % 1 != 0 if x[name] is not None else None, f"not an integer: {name}"))
        rules.append((_cmp(abs(x[name]) if x[name] is not None else None, ">", limit),
                      f"absurd magnitude: {name} above {limit}"))
    for name in (*S.PRICE_FIELDS, "vwap"):
        rules.append((_cmp(x[name], "<=", 0.0), f"non-positive price: {name}"))
        rules.append((_cmp(x[name], ">", S.MAX_PRICE), f"absurd magnitude: {name} above {S.MAX_PRICE:g}"))
        rules.append((0.0 < x[name] < S.MIN_PRICE if x[name] is not None else None,
                      f"absurd magnitude: {name} below {S.MIN_PRICE:g}"))
    o, h, low, c = x["open"], x["high"], x["low"], x["close"]
    ticker, timespan = bar.get("ticker"), bar.get("timespan")
    rules += [
        (_cmp(h, "<", low), "high below low"),
        (_either(_cmp(o, "<", low), _cmp(o, ">", h)), "open outside [low, high]"),
        (_either(_cmp(c, "<", low), _cmp(c, ">", h)), "close outside [low, high]"),
        (_cmp(x["volume"], "<", 0.0), "negative volume"),
        (_cmp(x["volume"], ">", S.MAX_VOLUME), f"absurd magnitude: volume above {S.MAX_VOLUME:g}"),
        (_cmp(x["transactions"], "<", 0.0), "negative transactions"),
        (_cmp(x["multiplier"], "<", 1.0), "multiplier below 1"),
        (timespan not in S.TIMESPANS if timespan is not None else None, "unknown timespan"),
        (not _TICKER.search(ticker) if ticker is not None else None, "invalid ticker (1-32 of A-Z 0-9 . : -)"),
        (_cmp(x["timestamp"], "<", S.MIN_TIMESTAMP_MS), "timestamp before 1980 (seconds instead of milliseconds?)"),
        (_cmp(x["timestamp"], ">", now_ms + S.MAX_FUTURE_MS), "timestamp in the future"),
    ]
    return [reason for broken, reason in rules if broken is True]


def check(value: bytes | None, now_ms: int | None = None) -> tuple[dict | None, list[str]]:
    """The stream job's verdict on one Kafka record value: its fields and every rule it breaks.

    Args:
        value: the record's value (None: a null value).
        now_ms: the clock the future-timestamp rule reads, epoch ms (default: now).

    Returns:
        (the message's JSON object, or None when it cannot be read as one; the reasons, in the
        stream job's order, empty for a valid bar).
    """
    body, reason = _framing(value)
    if reason is not None:
        return None, [reason]
    reasons = []
    for spec in S.BAR_FIELDS:
        field = body.get(spec.name)
        if field is not None and not _typed(spec, field):
            reasons.append(f"wrong type: {spec.name} (expected {S.JSON_TYPE_NAMES[spec.python_type]})")
        if spec.required and field is None:
            reasons.append(f"missing field: {spec.name}")
    typed = {spec.name: body.get(spec.name) for spec in S.BAR_FIELDS if _typed(spec, body.get(spec.name))}
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return body, reasons + _value_rules(typed, now_ms)


def valid_bar(value: bytes | None, now_ms: int | None = None) -> dict | None:
    """The bar's fields (integer fields as int) if the stream job would index it, else None.

    Args:
        value: the record's value (None: a null value).
        now_ms: the clock the future-timestamp rule reads, epoch ms (default: now).
    """
    body, reasons = check(value, now_ms)
    if reasons:
        return None
    return {spec.name: int(body[spec.name]) if spec.python_type == "int" and body.get(spec.name) is not None
            else body.get(spec.name) for spec in S.BAR_FIELDS}
