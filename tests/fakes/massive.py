"""A local HTTP server that behaves like the Polygon/Massive aggregates endpoint: Bearer
auth (401 otherwise), `from`/`to` as dates or epoch ms, pages of `page_size` results
linked by a key-less `next_url`, and scripted faults served before normal answers.

With a `clock` (epoch ms), it serves only the bars that exist at that time: a bar appears
when it opens, still forming (its last trade so far), and takes its final values when it
closes - as the real API does for the current bar.

And the answers' real shapes (docs/reliability.md, "The API's real answers"):
- `add_results`: rows served as given - an index's `o h l c t` only, a result without `vw` or
  `n`, `otc: true`, fractional crypto volume, a float `t` or `n`;
- `strays`: rows served in every answer for a ticker whatever the window asked, as the real API
  once answered a one-day TJX minute request with 4 bars of 2017 (another symbol's prices);
- `number_format = "g"`: every float spelled as the real API's encoder spells them, the
  shortest %g form with an exponent from 1e+06 on (`"n": 1.412331e+06`, `"v": 7.4e+07`,
  `"c": 394.74`); "json" (the default) is Python's json;
- `status`: the answer's status (the real API says DELAYED on plans with delayed data)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

AGGS = re.compile(r"^/v2/aggs/ticker/(?P<ticker>[^/]+)/range/(?P<mult>\d+)/(?P<span>\w+)/(?P<lo>[^/]+)/(?P<hi>[^/]+)$")


@dataclass
class Fault:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (for timeouts)


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at: int | None = None  # the fake's clock when it was asked


def _bound(text: str, end: bool) -> int:
    if text.isdigit():
        return int(text)
    d = date.fromisoformat(text)
    ms = int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1000)
    return ms + 86_400_000 - 1 if end else ms


class FakeMassive:
    def __init__(self, api_key: str = "test-key", page_size: int = 50_000,
                 clock: Callable[[], int] | None = None) -> None:
        self.api_key = api_key
        self.clock = clock
        self._steps: dict[str, int] = {}
        self.page_size = page_size
        self.bars: dict[str, list[dict]] = {}
        self.faults: list[Fault] = []
        self.requests: list[Seen] = []
        self.repeat_next_url = False
        self.next_url_override: str | None = None  # a next_url elsewhere (another host or series)
        self.latency = 0.0  # seconds added to every answer
        self.strays: dict[str, list[dict]] = {}  # ticker -> rows in every answer, whatever the window
        self.number_format = "json"  # or "g": floats spelled 1.412331e+06, as the real API does
        self.status = "OK"
        self.answered: list[bytes] = []  # the body of each normal answer, as sent
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeMassive":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_bars(self, ticker: str, start_ms: int, count: int, step_ms: int = 86_400_000, price: float = 100.0) -> None:
        self._steps[ticker] = step_ms
        self.bars.setdefault(ticker, []).extend(
            {"o": price + i, "h": price + i + 2, "l": price + i - 1, "c": price + i + 1, "v": 1000.0 + i,
             "vw": price + i + 0.5, "t": start_ms + i * step_ms, "n": 10 + i}
            for i in range(count)
        )

    def add_results(self, ticker: str, rows: list[dict], step_ms: int = 86_400_000) -> None:
        """Rows served exactly as given (any fields, any number types), for the answers' shapes."""
        self._steps[ticker] = step_ms
        self.bars.setdefault(ticker, []).extend(rows)

    # -- request handling -------------------------------------------------------------------
    def _answer(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        parsed = urlparse(handler.path)
        query = parse_qs(parsed.query)
        now = self.clock() if self.clock else None
        self.requests.append(Seen(parsed.path, query, dict(handler.headers.items()), now))
        if self.latency:
            threading.Event().wait(self.latency)
        if self.faults:
            fault = self.faults.pop(0)
            if fault.delay:
                threading.Event().wait(fault.delay)
            return fault.status, fault.headers, fault.body
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {}, json.dumps({"status": "ERROR", "request_id": "x", "error": "Unknown API Key"}).encode()
        match = AGGS.match(parsed.path)
        if not match:
            return 404, {}, json.dumps({"status": "NOT_FOUND", "message": "Not found"}).encode()
        lo, hi = _bound(match["lo"], end=False), _bound(match["hi"], end=True)
        rows = [self._as_of(b, match["ticker"], now) for b in self.bars.get(match["ticker"], [])
                if lo <= b["t"] <= hi and (now is None or b["t"] <= now)]
        rows = sorted(self.strays.get(match["ticker"], []) + rows, key=lambda row: row["t"])
        cursor = int(query.get("cursor", ["0"])[0])
        page = rows[cursor: cursor + self.page_size]
        body = {"ticker": match["ticker"], "status": self.status, "queryCount": len(page), "resultsCount": len(page),
                "adjusted": True, "request_id": "r"}
        if page:
            body["results"] = page
        nxt = cursor + self.page_size
        if nxt < len(rows) or self.repeat_next_url:
            nxt = cursor if self.repeat_next_url else nxt
            body["next_url"] = self.next_url_override or \
                f"{self.url}{parsed.path}?cursor={nxt}&adjusted=true&sort=asc&limit={self.page_size}"
        self.answered.append((dumps_g(body) if self.number_format == "g" else json.dumps(body)).encode())
        return 200, {}, self.answered[-1]

    def _as_of(self, bar: dict, ticker: str, now: int | None) -> dict:
        if now is None or bar["t"] + self._steps[ticker] <= now:
            return bar
        forming = {"c": bar["o"], "h": bar["o"], "l": bar["o"], "v": 1.0, "n": 1}  # still forming
        return {**bar, **{k: v for k, v in forming.items() if k in bar}}  # an index has no v, n

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                status, headers, body = fake._answer(self)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args) -> None:
                pass

        return Handler


def g_number(value: float) -> str:
    """A float as the real API spells it: the shortest digits that read back the same, in %g
    form with an exponent when it is below -4 or from 6 on (1412331.0 -> 1.412331e+06, 100.0 ->
    100, 12264.64178551227 as it is)."""
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + exponent  # where the decimal point falls after the digits' first
    power = point - 1
    if power < -4 or power >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        body = f"{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    elif point <= 0:
        body = "0." + "0" * -point + text
    elif point >= len(text):
        body = text + "0" * (point - len(text))
    else:
        body = text[:point] + "." + text[point:]
    return ("-" if sign else "") + body


def dumps_g(value) -> str:
    """JSON with every float spelled by g_number (ints, strings and the rest as json spells them)."""
    if isinstance(value, float):
        return g_number(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps_g(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps_g(v) for v in value) + "]"
    return json.dumps(value)
