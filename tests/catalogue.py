"""A catalogue of messages: accepted ones, and refused ones with the reason they get.
Shared by the unit tests (validation on tiny DataFrames) and the integration tests
(the same messages through Kafka, Spark and Elasticsearch)."""

from __future__ import annotations

import json

GOOD = {"ticker": "AAPL", "timespan": "day", "multiplier": 1, "timestamp": 1_700_000_000_000, "open": 10.0,
        "high": 12.0, "low": 9.0, "close": 11.0, "volume": 100.0, "vwap": 10.5, "transactions": 5, "source": "t"}
NOW_MS = 1_800_000_000_000  # "now" for the unit tests (2027-01-15)


def message(**changes) -> bytes:
    body = {**GOOD, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


ACCEPTED = {
    "valid bar": message(),
    "integers for prices": message(open=10, high=12, low=9, close=11),
    "no vwap or transactions": message(vwap=..., transactions=...),
    "null vwap": message(vwap=None),
    "unknown extra field (ignored)": message(exchange="XNAS"),
    "zero volume": message(volume=0),
    "crypto and forex tickers": message(ticker="X:BTCUSD"),
    "a meme coin's price near 1e-9": message(ticker="X:BABYDOGEUSD", open=1.5e-9, high=1.6e-9, low=1.4e-9,
                                             close=1.5e-9, vwap=1.5e-9),
    "a price at the floor": message(open=1e-12, high=1e-12, low=1e-12, close=1e-12, vwap=1e-12),
    "class shares": message(ticker="BRK.A"),
    # The market-data API's real answers: an index aggregate has only o h l c t; its JSON
    # encoder spells a trade count as 1.412331e+06.
    "index bar without volume": message(ticker="I:NDX", volume=..., vwap=..., transactions=...),
    "trade count in exponent notation": message().replace(b'"transactions": 5', b'"transactions": 1.412331e+06'),
    "integral timestamp spelled as a float": message(timestamp=1.7e12),
    "JSON whitespace around the object": b"\r\n\t " + message() + b" \n",
    "an unknown field named twice": message(note="a")[:-1] + b', "note": "b"}',
    # A '}' before the end: the one-value rule reads these a second time (validation._one_value).
    "a brace inside a string": message(source="feed}x"),
    "an unknown field holding an object": message(exchange={"mic": "XNAS"}),
    # On the boundary of the duplicate-field rule's shortcut (validation._duplicate_field): no
    # more quotes than the fields set account for, or two more.
    "a field's name given as a value": message(source="ticker"),
    "a field's name as a nested key": message(exchange={"ticker": "AAPL"}),
    "an escaped quote in a string": message(source='feed "x"'),
    "an escaped field name": message().replace(b'"source"', b'"\\u0073ource"'),
    "an unknown field holding a 5 000-digit integer": message()[:-1] + b', "note": 1' + b"0" * 5000 + b"}",
}

REFUSED = {
    "empty": (b"", "empty message"),
    "binary": (b"\xff\xfe\x00\x01", "not UTF-8 text"),
    "not JSON": (b"hello", "not a JSON object"),
    "JSON array": (b"[1, 2]", "not a JSON object"),
    "JSON scalar": (b"42", "not a JSON object"),
    "truncated JSON": (b'{"ticker": "AAPL", "open": 1', "malformed JSON"),
    "missing close": (message(close=...), "missing field: close"),
    "null close": (message(close=None), "missing field: close"),
    "price as string": (message(close="11.0"), "wrong type: close (expected number)"),
    "ticker as number": (message(ticker=42), "wrong type: ticker (expected string)"),
    "source as boolean": (message(source=True), "wrong type: source (expected string)"),
    "source as object": (message(source={"feed": "x"}), "wrong type: source (expected string)"),
    "timespan as array": (message(timespan=["day"]), "wrong type: timespan (expected string)"),
    "price as boolean": (message(close=True), "wrong type: close (expected number)"),
    "a 400-digit price (a double reads it as infinity)": (message().replace(b'"open": 10.0', b'"open": 1' + b"0" * 400),
                                                          "not a finite number: open"),
    "NaN": (b'{"ticker":"AAPL","timespan":"day","multiplier":1,"timestamp":1700000000000,"open":10,"high":12,'
            b'"low":9,"close":NaN,"volume":1,"source":"t"}', "not a finite number: close"),
    "Infinity": (message().replace(b'"volume": 100.0', b'"volume": Infinity'), "not a finite number: volume"),
    "zero price": (message(low=0), "non-positive price: low"),
    "negative price": (message(open=-1), "non-positive price: open"),
    "high below low": (message(high=8), "high below low"),
    "close above high": (message(close=13), "close outside [low, high]"),
    "negative volume": (message(volume=-5), "negative volume"),
    "timestamp in seconds": (message(timestamp=1_700_000_000),
                             "timestamp before 1980 (seconds instead of milliseconds?)"),
    "fractional timestamp": (message(timestamp=1.7e12 + 0.5), "not an integer: timestamp"),
    "fractional trade count": (message(transactions=1.5), "not an integer: transactions"),
    "multiplier beyond an integer": (message(multiplier=3e9), "absurd magnitude: multiplier above 2147483647"),
    "trade count beyond 2**53": (message(transactions=1e17), "absurd magnitude: transactions above 9007199254740991"),
    "trade count at 2**53 + 1 (a double reads 2**53)": (message(transactions=2**53 + 1),
                                                         "absurd magnitude: transactions above 9007199254740991"),
    "a field named twice": (message().replace(b'"ticker": "AAPL"', b'"ticker": "AAPL", "ticker": "MSFT"'),
                            "duplicate field"),
    "a field named twice, the later mistyped": (message()[:-1] + b', "close": "x"}', "duplicate field"),
    "a field named twice, once escaped": (message()[:-1] + b', "\\u0074icker": "MSFT"}', "duplicate field"),
    "a field named twice, a string field given a number": (message(ticker=42)[:-1] + b', "close": 11.0}',
                                                          "duplicate field"),
    "a field named twice, the first null": (message(close=None)[:-1] + b', "close": 11.0}', "duplicate field"),
    "a field named twice, the later null": (message()[:-1] + b', "close": null}', "duplicate field"),
    "a field named twice, a string field given true": (message(source=True)[:-1] + b', "close": 11.0}',
                                                       "duplicate field"),
    "a string field given a number, then its string": (
        message().replace(b'"ticker": "AAPL"', b'"ticker": 5, "ticker": "AAPL"'), "duplicate field"),
    # NaN and Infinity are numbers to every read of a message, the keys read included.
    "a field named twice, the later NaN": (message()[:-1] + b', "close": NaN}', "duplicate field"),
    "a field named twice beside a NaN": (message()[:-1] + b', "note": NaN, "ticker": "MSFT"}', "duplicate field"),
    "a mistyped price beside a NaN": (message(open="x", volume=float("nan")), "wrong type: open (expected number)"),
    # Spark's reader takes these strings for numbers; they are strings.
    'a price as the string "NaN"': (message(close="NaN"), "wrong type: close (expected number)"),
    'a trade count as the string "-INF"': (message(transactions="-INF"),
                                           "wrong type: transactions (expected integer)"),
    'a volume as the string "+Infinity"': (message(volume="+Infinity"), "wrong type: volume (expected number)"),
    "an unquoted field name": (message()[:-1] + b", close: 11.0}", "malformed JSON"),
    # More digits than Python's int() converts (4 300): a double reads it as infinity.
    "a 5 000-digit price": (message().replace(b'"open": 10.0', b'"open": 1' + b"0" * 5000),
                            "not a finite number: open"),
    "a ticker with a final line break": (message(ticker="AAPL\n"), "invalid ticker (1-32 of A-Z 0-9 . : -)"),
    "a ticker with a final carriage return": (message(ticker="AAPL\r"), "invalid ticker (1-32 of A-Z 0-9 . : -)"),
    "a ticker with a final line separator": (message(ticker="AAPL\u2028"), "invalid ticker (1-32 of A-Z 0-9 . : -)"),
    # One record is one message: Spark's reader takes the first object and drops the rest.
    "two bars in one record": (message() + b"\n" + message(timestamp=1_717_459_200_000), "data after the JSON object"),
    "two bars back to back": (message() + message(), "data after the JSON object"),
    "two bars separated by a comma": (message() + b"," + message(), "data after the JSON object"),
    "a bracket and a bar after the object": (message() + b"]" + message(), "data after the JSON object"),
    "text after the object": (message() + b" trailing", "data after the JSON object"),
    "a non-breaking space after the object": (message() + "\u00a0".encode(), "data after the JSON object"),
    "a brace inside a string, then a second bar": (message(source="x}") + b"\n" + message(),
                                                   "data after the JSON object"),
    "single-quoted JSON": (message().replace(b'"', b"'"), "malformed JSON"),
    "a comment": (message().replace(b"{", b"{/* bar */", 1), "malformed JSON"),
    "a trailing comma": (message().replace(b"}", b",}"), "malformed JSON"),
    "leading zeros": (message().replace(b'"multiplier": 1', b'"multiplier": 01'), "malformed JSON"),
    "a byte-order mark": (b"\xef\xbb\xbf" + message(), "not a JSON object"),
    "UTF-16": (message().decode().encode("utf-16"), "not UTF-8 text"),
    "far-future timestamp": (message(timestamp=4_102_444_800_000), "timestamp in the future"),
    "absurd price": (message(high=5e9, close=4e9), "absurd magnitude: high above 1e+09"),
    # A denormal price makes close / last close 0.0 or infinite: no log return exists.
    "denormal price": (message(open=5e-324, high=5e-324, low=5e-324, close=5e-324, vwap=5e-324),
                       "absurd magnitude: close below 1e-12"),
    "price just under the floor": (message(low=9e-13, open=1e-12, close=1e-12, high=1e-12, vwap=...),
                                   "absurd magnitude: low below 1e-12"),
    "empty ticker": (message(ticker=""), "invalid ticker (1-32 of A-Z 0-9 . : -)"),
    "over-long ticker": (message(ticker="A" * 33), "invalid ticker (1-32 of A-Z 0-9 . : -)"),
    "lower-case ticker": (message(ticker="aapl"), "invalid ticker (1-32 of A-Z 0-9 . : -)"),
    "unknown timespan": (message(timespan="fortnight"), "unknown timespan"),
    "zero multiplier": (message(multiplier=0), "multiplier below 1"),
    "very large message": (message(note="x" * 100_000), "message too large (over 65536 bytes)"),
}
