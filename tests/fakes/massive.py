"""A local HTTP server that behaves like the Polygon/Massive aggregates endpoint: Bearer
auth (401 otherwise), `from`/`to` as dates or epoch ms, pages of `page_size` results
linked by a key-less `next_url`, and scripted faults served before normal answers.

With a `clock` (epoch ms), it serves only the bars that exist at that time: a bar appears
when it opens, still forming (its last trade so far), and takes its final values when it
closes - as the real API does for the current bar."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
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
        self.latency = 0.0  # seconds added to every answer
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
        cursor = int(query.get("cursor", ["0"])[0])
        page = rows[cursor: cursor + self.page_size]
        body = {"ticker": match["ticker"], "status": "OK", "queryCount": len(page), "resultsCount": len(page),
                "adjusted": True, "request_id": "r"}
        if page:
            body["results"] = page
        nxt = cursor + self.page_size
        if nxt < len(rows) or self.repeat_next_url:
            nxt = cursor if self.repeat_next_url else nxt
            body["next_url"] = f"{self.url}{parsed.path}?cursor={nxt}&adjusted=true&sort=asc&limit={self.page_size}"
        return 200, {}, json.dumps(body).encode()

    def _as_of(self, bar: dict, ticker: str, now: int | None) -> dict:
        if now is None or bar["t"] + self._steps[ticker] <= now:
            return bar
        return {**bar, "c": bar["o"], "h": bar["o"], "l": bar["o"], "v": 1.0, "n": 1}  # still forming

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
