"""The live feed over the WebSocket API: each minute bar pushed the moment it closes, for plans
with WebSocket access (real-time, or the 15-minute-delayed host by setting).

Protocol (the Massive WebSocket docs): connect to the cluster of the ticker's market
(`<host>/stocks`, `/indices`, `/options`, `/forex`, `/crypto`); the server greets with a
`connected` status; the client sends `{"action": "auth", "params": <key>}` (the key travels in
this message only, never in a URL or a log) and waits for `auth_success`; then subscribes to
the per-minute aggregate channel of each ticker (`AM.AAPL`, `AM.I:SPX`, `AM.O:SPY251219C00650000`,
`CA.EUR/USD`, `XA.BTC-USD`). Events arrive as JSON arrays; a minute without trades (for an
index, without a new value) has no event, and no bar is invented for it.

- A bar from the socket is the bar REST serves for that minute (same id, fields and source);
  REST's trade count (`n`) is not in the socket's event, so `transactions` stays empty. An
  index event (`{"ev":"AM","sym":"I:SPX","op","o","h","l","c","s","e"}`) has no volume or VWAP
  either: they stay empty, as in REST's index bars. An event's minute is its start `s` (an
  integer however spelled) floored to the minute.
- Gap repair: after every (re)connect, the first bar of each ticker from the socket is
  preceded by the bars REST has between the ticker's last bar in the topic and that one. The
  topic has every bar once over restarts and disconnects.
- Events late, out of order, or again (the server sends what it has when it has it, and after
  a reconnect or a correction a minute can come twice):
  * a minute already in the topic - at or before the ticker's last bar there when the feed
    started, or published since by this feed (socket or REST repair) - is not published again:
    a second record would only duplicate the document and repeat the stream job's forecast;
  * a minute not published yet is published, even after later ones (late or out of order):
    it is a real bar, the bars are keyed by their minute so the index has it at its place, and
    the stream job marks it late (its `late` status) instead of the producer dropping data;
  * a minute outside the window the feed accepts - more than EVENT_MAX_AGE_MS (an hour: four
    times the delayed feed's 15 minutes) before now, or over a minute after it - is refused and
    logged with its text: it cannot be a bar that just closed (the REST answer that once held
    2017 bars of another symbol shows what such data is), and publishing it would make the
    ticker's resume point or repair start from nonsense.
- Disconnects: reconnect with exponential back-off and full jitter (finstream.core.retry). A
  refused key is one line and exit 2. A plan allows one connection per cluster, and the
  server then keeps the newest: when another client connects with the key, the older
  connection gets a `max_connections` status and is closed. A connection that ends so before
  it has lasted LIVE_WS_STEADY_SECONDS (120) after authenticating counts as taken; after
  LIVE_WS_MAX_REFUSALS (5) in a row (a refusal before authentication counts too) the feed
  stops with one line naming the cluster and the other client, exit 2, instead of taking the
  slot back and forth with it forever. A connection that lasts that long ends the run.
- Malformed messages and events are logged with their raw text and skipped, never a crash;
  an event whose values are wrong but whose bar is identified is published as is, and the
  stream job dead-letters it with the reason, as it does for a REST bar.
- SIGINT/SIGTERM: the socket is closed cleanly (close frame 1000), every bar flushed, exit 0.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from finstream.core.config import Settings
from finstream.core.errors import UserError
from finstream.core.retry import reconnecting
from finstream.core.schema import Bar, as_integer
from producer.market_data import MarketDataError, MassiveClient, closed_bars
from producer.publisher import BarPublisher
from producer.resume import iso_minute, resume_points
from producer.sessions import EQUITY, INDEX, OPTIONS, market

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
# market -> (cluster path, per-minute aggregate channel)
CLUSTERS = {EQUITY: ("stocks", "AM"), INDEX: ("indices", "AM"), OPTIONS: ("options", "AM"),
            "forex": ("forex", "CA"), "crypto": ("crypto", "XA")}
REPLY_SECONDS = 10.0  # for the greeting and the answer to auth
# The minutes an event may be about: from an hour before now (the delayed feed is 15 minutes
# behind) to a minute after it (clock skew); anything else is refused.
EVENT_MAX_AGE_MS = 60 * MINUTE_MS
EVENT_MAX_AHEAD_MS = MINUTE_MS


class Disconnected(Exception):
    """The connection failed or closed: reconnect after a pause."""


def cluster(ticker: str) -> str:
    """The WebSocket cluster of a ticker's market: stocks, indices, options, forex, crypto."""
    return CLUSTERS[market(ticker)][0]


def channel(ticker: str) -> str:
    """The per-minute aggregate channel of a ticker: AM.AAPL, AM.I:SPX, CA.EUR/USD, XA.BTC-USD."""
    kind = market(ticker)
    prefix = CLUSTERS[kind][1]
    if kind == "forex":
        pair = ticker[2:]
        return f"{prefix}.{pair[:3]}/{pair[3:]}"
    if kind == "crypto":
        pair = ticker[2:]  # the quote currency is the last three letters (BTCUSD, ETHEUR)
        return f"{prefix}.{pair[:-3]}-{pair[-3:]}"
    return f"{prefix}.{ticker}"


def ticker_of(event: dict) -> str | None:
    """The REST ticker an aggregate event is about, or None if the event names none."""
    kind = event.get("ev")
    if kind == "AM":
        return event.get("sym") if isinstance(event.get("sym"), str) else None
    pair = event.get("pair")
    if not isinstance(pair, str):
        return None
    if kind == "CA":
        return "C:" + pair.replace("/", "")
    if kind == "XA":
        return "X:" + pair.replace("-", "")
    return None


def minute_of(event: dict) -> int | None:
    """The minute an event is about: its start `s` as an integer (however spelled), floored to
    the minute; None if it has no integral start."""
    start = as_integer(event.get("s"))
    if not isinstance(start, int) or isinstance(start, bool):
        return None
    return start - start % MINUTE_MS


def bar_from_event(ticker: str, event: dict) -> Bar:
    """A per-minute aggregate event as the bar REST serves for that minute (an index event has
    no volume or VWAP: they stay empty, as in REST's index bars)."""
    return Bar(ticker=ticker, timespan="minute", multiplier=1, timestamp=minute_of(event), open=event.get("o"),
               high=event.get("h"), low=event.get("l"), close=event.get("c"), volume=event.get("v"),
               vwap=event.get("vw"), transactions=None, source="polygon")


# What the feed does with an event's minute (Minutes.verdict).
PUBLISH, REPEAT, INVALID, OUTSIDE = "publish", "repeat", "invalid", "outside"


@dataclass
class Minutes:
    """The minutes of one ticker already in the topic, as far as the feed knows: every minute up
    to `floor` (the ticker's last bar in the topic when the feed started) and each one it has
    published since (`sent`, kept for EVENT_MAX_AGE_MS: older events are refused anyway)."""

    floor: int | None = None
    sent: set[int] = field(default_factory=set)

    def verdict(self, minute: int | None, now_ms: int) -> str:
        """PUBLISH a minute not yet in the topic (late or out of order included), REPEAT one that
        is, INVALID without a minute, OUTSIDE one outside the window the feed accepts."""
        if minute is None:
            return INVALID
        if not now_ms - EVENT_MAX_AGE_MS <= minute <= now_ms + EVENT_MAX_AHEAD_MS:
            return OUTSIDE
        if (self.floor is not None and minute <= self.floor) or minute in self.sent:
            return REPEAT
        return PUBLISH

    def add(self, minute: int, now_ms: int) -> None:
        self.sent.add(minute)
        if len(self.sent) > 2 * EVENT_MAX_AGE_MS // MINUTE_MS:
            self.sent = {m for m in self.sent if m >= now_ms - EVENT_MAX_AGE_MS}


def ws_url(settings: Settings, cluster: str) -> str:
    """The cluster's URL on the configured feed (one of WS_FEEDS, as Settings.load checks):
    real-time, or the 15-minute-delayed host."""
    base = settings.polygon_ws_realtime_url if settings.polygon_ws_feed == "realtime" \
        else settings.polygon_ws_delayed_url
    return f"{base.rstrip('/')}/{cluster}"


@dataclass
class WebSocketFeed:
    """One connection per market cluster the tickers need, each on its own thread; bars are
    published through the shared (thread-safe) publisher."""

    settings: Settings
    client: MassiveClient  # REST, for gap repair
    publisher: BarPublisher
    tickers: list[str]
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.time
    last: dict[str, int] = field(default_factory=dict)
    published: int = 0
    failure: Exception | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._refusals: dict[str, int] = {}  # per cluster: connections refused or taken over, in a row
        self._minutes: dict[str, Minutes] = {}

    def run(self) -> int:
        """Until stopped (or a failure the user must fix, raised here); returns the bars published."""
        self.last = resume_points(self.settings, self.tickers, "minute", 1)
        self._minutes = {ticker: Minutes(floor=self.last.get(ticker)) for ticker in self.tickers}
        by_cluster: dict[str, list[str]] = {}
        for ticker in self.tickers:
            by_cluster.setdefault(cluster(ticker), []).append(ticker)
        threads = [threading.Thread(target=self._serve, args=(name, names), name=f"ws-{name}", daemon=True)
                   for name, names in by_cluster.items()]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.2)  # short joins: the main thread keeps taking signals
        self.publisher.flush()
        if self.failure is not None:
            raise self.failure
        return self.published

    # -- one cluster --------------------------------------------------------------------------
    def _serve(self, cluster: str, tickers: list[str]) -> None:
        try:
            reconnecting(lambda: self._session(cluster, tickers), what=f"the {cluster} WebSocket",
                         base=1.0, cap=self.settings.live_ws_reconnect_cap_seconds, log=log, stop=self.stop,
                         on=Disconnected)
        except Exception as exc:  # handed to the main thread, which raises it
            self.failure = self.failure or exc
            self.stop.set()

    def _session(self, cluster: str, tickers: list[str]) -> None:
        """One connection: greet, authenticate, subscribe, then bars until stopped (returns) or
        lost (raises Disconnected, or returns if it had streamed steadily)."""
        url = ws_url(self.settings, cluster)
        try:
            socket = connect(url, open_timeout=REPLY_SECONDS, close_timeout=2, max_size=2 ** 22)
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise Disconnected(f"cannot connect to {url}: {exc}") from None
        with socket:  # leaving it closes the socket cleanly (close frame 1000)
            try:
                authenticated_at = self._handshake(socket, cluster, tickers)
                self._stream(socket, cluster, tickers, authenticated_at)
            except ConnectionClosed as exc:
                raise Disconnected(f"{url} closed the connection ({exc})") from None

    def _handshake(self, socket: ClientConnection, cluster: str, tickers: list[str]) -> float:
        """Authenticates and subscribes; returns when it authenticated (time.monotonic)."""
        socket.send(json.dumps({"action": "auth", "params": self.client.api_key.reveal()}))
        deadline, authenticated = time.monotonic() + REPLY_SECONDS, False
        while not authenticated:  # the greeting ("connected") comes first, then the answer
            try:
                raw = socket.recv(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                raise Disconnected(f"no answer to the authentication within {REPLY_SECONDS:g} s") from None
            for event in self._events(raw, cluster):
                if event.get("ev") == "status":
                    authenticated = self._on_status(event, cluster) or authenticated
        authenticated_at = time.monotonic()
        channels = ",".join(channel(ticker) for ticker in tickers)
        socket.send(json.dumps({"action": "subscribe", "params": channels}))
        log.info("%s WebSocket: subscribed to %s", cluster, channels)
        return authenticated_at

    def _on_status(self, status: dict, cluster: str) -> bool:
        """Acts on a status message; True once authenticated."""
        kind, message = status.get("status"), self.client.redact(str(status.get("message", "")))
        if kind == "auth_success":  # the run of taken connections ends only once one lasts (_stream)
            log.info("%s WebSocket: authenticated", cluster)
            return True
        if kind == "auth_failed":
            raise UserError(f"the {cluster} WebSocket refused the API key ({message}): check POLYGON_API_KEY (or "
                            "POLYGON_API_KEY_FILE), and that the plan includes WebSocket access, or use "
                            "--source rest")
        if kind == "max_connections":  # refused, or (after auth) closed for a newer connection
            self._taken(cluster, f"max_connections, each before it had lasted "
                                 f"{self.settings.live_ws_steady_seconds:g} s: {message}")
            raise Disconnected(f"refused: maximum connections ({message})")
        level = logging.INFO if kind in ("connected", "success") else logging.WARNING
        log.log(level, "%s WebSocket: %s: %s", cluster, kind, message)
        return False

    def _taken(self, cluster: str, how: str) -> None:
        """One more connection in a row refused or taken away before it lasted; at
        LIVE_WS_MAX_REFUSALS, the one line that names the cluster and the other client."""
        self._refusals[cluster] = self._refusals.get(cluster, 0) + 1
        if self._refusals[cluster] >= self.settings.live_ws_max_refusals:
            raise UserError(
                f"the {cluster} WebSocket refused {self._refusals[cluster]} connections in a row ({how}): another "
                f"client is using this API key on /{cluster}, and a plan allows one connection per cluster: stop the "
                "other client, or use --source rest")

    def _stream(self, socket: ClientConnection, cluster: str, tickers: list[str], authenticated_at: float) -> None:
        owed_repair = set(tickers)  # after a (re)connect, each ticker's first bar is preceded by REST's
        subscribed = set(tickers)
        steady = False  # lasted LIVE_WS_STEADY_SECONDS after auth: the runs of failures and refusals end
        while not self.stop.is_set():
            if not steady and time.monotonic() - authenticated_at >= self.settings.live_ws_steady_seconds:
                steady, self._refusals[cluster] = True, 0
            try:
                raw = socket.recv(timeout=0.5)
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                if steady:
                    log.warning("the %s WebSocket closed after %.0f s (%s): reconnecting", cluster,
                                time.monotonic() - authenticated_at, exc)
                    return
                # Closed soon after authenticating, even without a status: the slot was taken.
                self._taken(cluster, f"closed by the server, each before it had lasted "
                                     f"{self.settings.live_ws_steady_seconds:g} s: {exc}")
                raise
            for event in self._events(raw, cluster):
                if event.get("ev") == "status":
                    self._on_status(event, cluster)
                    continue
                ticker = ticker_of(event)
                if ticker is None:
                    log.warning("%s WebSocket: an event without a ticker, skipped: %s", cluster, self._raw(event))
                elif ticker in subscribed:
                    self._on_bar(ticker, event, owed_repair)
                # else: a ticker this feed did not ask for (a shared subscription): not ours

    def _on_bar(self, ticker: str, event: dict, owed_repair: set[str]) -> None:
        minute, now_ms = minute_of(event), int(self.clock() * 1000)
        verdict = self._minutes[ticker].verdict(minute, now_ms)
        if verdict == INVALID:
            log.warning("%s: an event without a valid minute start, skipped: %s", ticker, self._raw(event))
            return
        if verdict == OUTSIDE:  # it cannot be a bar that just closed, and would misplace the resume point
            log.warning("%s: an event for %s, outside the minutes the feed accepts (%s .. %s), refused: %s", ticker,
                        iso_minute(minute), iso_minute(now_ms - EVENT_MAX_AGE_MS),
                        iso_minute(now_ms + EVENT_MAX_AHEAD_MS), self._raw(event))
            return
        if verdict == REPEAT:
            log.debug("%s: %s is in the topic already: not published again", ticker, iso_minute(minute))
            return
        last = self.last.get(ticker)
        if last is not None and minute < last:  # the repair waits for the first minute after the last
            log.info("%s: %s arrived after %s: published late", ticker, iso_minute(minute), iso_minute(last))
        elif ticker in owed_repair:
            self._repair(ticker, minute)
            owed_repair.discard(ticker)
        self._publish(bar_from_event(ticker, event))

    def _repair(self, ticker: str, first_from_socket: int) -> None:
        """Publishes REST's bars between the ticker's last published bar and `first_from_socket`."""
        last = self.last.get(ticker)
        lo = last + 1 if last is not None else \
            first_from_socket - int(self.settings.live_start_hours_back * 3_600_000)
        repaired = 0
        try:
            for bar in closed_bars(self.client, ticker, "minute", 1, lo, first_from_socket):
                self._publish(bar)
                repaired += 1
        except MarketDataError as exc:
            # The socket's bar waits too: the next connection repairs from the same place.
            raise Disconnected(f"gap repair over REST failed for {ticker}: {exc}") from None
        if repaired:
            log.info("%s: %d bar(s) from REST before the socket's first, %s", ticker, repaired,
                     iso_minute(first_from_socket))

    def _publish(self, bar: Bar) -> None:
        self.publisher.publish(bar)
        self._minutes[bar.ticker].add(bar.timestamp, int(self.clock() * 1000))
        with self._lock:
            self.last[bar.ticker] = max(bar.timestamp, self.last.get(bar.ticker, bar.timestamp))
            self.published += 1

    # -- message text ---------------------------------------------------------------------------
    def _events(self, raw: str | bytes, cluster: str) -> list[dict]:
        """The message's events; a malformed message is logged with its text and yields none."""
        try:
            events = json.loads(raw)
        except ValueError:
            events = None
        if isinstance(events, dict):
            events = [events]
        if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
            log.warning("%s WebSocket: a malformed message, skipped: %s", cluster, self._raw(raw))
            return []
        return events

    def _raw(self, value) -> str:
        text = value if isinstance(value, str) else \
            value.decode("utf-8", "replace") if isinstance(value, bytes) else json.dumps(value)
        return self.client.redact(text)[:500]
