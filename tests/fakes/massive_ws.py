"""A local WebSocket server that speaks the Massive WebSocket protocol: clusters at /stocks,
/indices, /options, /forex and /crypto; a `connected` greeting; `auth` with the key
(auth_failed and a close otherwise); `subscribe` to per-minute aggregate channels (AM.<ticker>
- AM.AAPL, AM.I:SPX, AM.O:<contract> -, CA.<from>/<to>, XA.<from>-<to>) answered with a
`success` status per channel; aggregate events as JSON arrays, sent only to the connections
subscribed to their channel (an index's event carries no volume or VWAP); and the faults: a
dropped connection, a scripted "max_connections" refusal (`refuse_next`), and whatever raw
text a test pushes.

The server's documented behaviours it models:
- One connection per cluster per plan (`max_connections`), the newest kept: when a connection
  authenticates beyond the limit, the oldest authenticated one on the cluster gets a
  `max_connections` status and is closed (`OtherClient` is another program using the key).
- Events come when the server has them: late (after later minutes), out of order, or again
  for a minute already sent (after a reconnect, or a correction): `deliver`.

The test drives it: `push` sends events (or, with `closes`, a thread sends each bar when it
closes, plus `lag` seconds, as the real feed does)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

CHANNEL = {"stocks": "AM", "indices": "AM", "options": "AM", "forex": "CA", "crypto": "XA"}
MAX_CONNECTIONS_MESSAGE = ("Maximum number of websocket connections exceeded. You have reached the connection limit "
                           "for your account.")


def aggregate_event(ticker: str, bar: dict) -> dict:
    """The per-minute aggregate event for a REST-style bar (o h l c v vw t): what the real
    feed sends for that minute. An index's (I:) has values only: no v, vw, av, a or z."""
    if ticker.startswith("I:"):
        return {"ev": "AM", "sym": ticker, "op": bar["o"], "o": bar["o"], "c": bar["c"], "h": bar["h"], "l": bar["l"],
                "s": bar["t"], "e": bar["t"] + 60_000}
    common = {"o": bar["o"], "h": bar["h"], "l": bar["l"], "c": bar["c"], "v": bar["v"], "vw": bar["vw"],
              "s": bar["t"], "e": bar["t"] + 60_000}
    if ticker.startswith("C:"):
        return {"ev": "CA", "pair": f"{ticker[2:5]}/{ticker[5:]}", **common}
    if ticker.startswith("X:"):
        return {"ev": "XA", "pair": f"{ticker[2:-3]}-{ticker[-3:]}", "z": 3, **common}
    return {"ev": "AM", "sym": ticker, "av": 1e6, "op": bar["o"], "a": bar["vw"], "z": 10, **common}


def channel_of(event: dict) -> str:
    key = event.get("sym") or event.get("pair")
    return f"{event['ev']}.{key}"


@dataclass
class Client:
    connection: ServerConnection
    cluster: str
    authenticated: bool = False
    channels: set[str] = field(default_factory=set)
    received: list[str] = field(default_factory=list)


class FakeMassiveSocket:
    def __init__(self, api_key: str = "test-key", max_connections: int = 1) -> None:
        self.api_key = api_key
        self.max_connections = max_connections  # per cluster, as plans allow
        self.refuse_next = 0  # connections to refuse with "max_connections", whatever the count
        self.kick_with_status = True  # False: an older connection is closed without a status first
        self.taken = 0  # connections closed for a newer one (the one-per-cluster policy)
        self.clients: list[Client] = []
        self.closed_codes: list[int | None] = []  # the close code of each connection that ended
        self.connections = 0
        self._lock = threading.Lock()
        self._server = serve(self._handle, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}"

    def __enter__(self) -> "FakeMassiveSocket":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._server.shutdown()

    # -- what a test does ---------------------------------------------------------------------
    def subscribed(self, cluster: str) -> set[str]:
        with self._lock:
            return {c for client in self.clients if client.cluster == cluster for c in client.channels}

    def wait_subscribed(self, cluster: str, channels: Iterable[str], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not set(channels) <= self.subscribed(cluster):
            if time.monotonic() > deadline:
                raise AssertionError(f"no subscription to {set(channels)} on /{cluster} within {timeout:g} s")
            time.sleep(0.05)

    def push(self, cluster: str, events: list[dict]) -> None:
        """Sends the events, in one message, to each connection subscribed to any of them."""
        for client in self._current(cluster):
            mine = [e for e in events if channel_of(e) in client.channels]
            if mine:
                self._send(client, json.dumps(mine))

    def deliver(self, cluster: str, events: list[dict], late: Iterable[int] = (), again: Iterable[int] = ()) -> None:
        """Sends the events one message each, in their order, except as the real server may:
        those at the indices in `late` come after all the others (late, out of order), and
        those in `again` come a second time at the end (a minute already sent)."""
        late, again = set(late), set(again)
        order = [e for i, e in enumerate(events) if i not in late] + [events[i] for i in sorted(late)] + \
            [events[i] for i in sorted(again)]
        for event in order:
            self.push(cluster, [event])

    def push_raw(self, cluster: str, text: str) -> None:
        """Any text, to every authenticated connection of the cluster (for malformed messages and
        events for channels nobody asked for)."""
        for client in self._current(cluster):
            self._send(client, text)

    def drop(self, cluster: str) -> None:
        """Cuts every connection of the cluster without a close handshake."""
        for client in self._current(cluster):
            client.connection.close_socket()

    def closes(self, cluster: str, bars: dict[str, list[dict]], lag: float = 0.0) -> threading.Thread:
        """Sends each bar's event when it closes (its start + 60 s, wall clock) plus `lag`."""
        events = sorted(((bar["t"] + 60_000, aggregate_event(t, bar)) for t, rows in bars.items() for bar in rows),
                        key=lambda pair: pair[0])

        def run() -> None:
            for close_ms, event in events:
                pause = close_ms / 1000 + lag - time.time()
                if pause > 0 and self._stopping.wait(pause):
                    return
                self.push(cluster, [event])

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    # -- the protocol ---------------------------------------------------------------------------
    def _current(self, cluster: str) -> list[Client]:
        with self._lock:
            return [c for c in self.clients if c.cluster == cluster and c.authenticated]

    def _send(self, client: Client, text: str) -> None:
        try:
            client.connection.send(text)
        except ConnectionClosed:
            pass

    def _handle(self, connection: ServerConnection) -> None:
        cluster = connection.request.path.strip("/")
        if cluster not in CHANNEL:
            connection.close(1008, "unknown cluster")
            return
        client = Client(connection, cluster)
        with self._lock:
            self.connections += 1
            self.clients.append(client)
        try:
            self._send(client, json.dumps([{"ev": "status", "status": "connected",
                                             "message": "Connected Successfully"}]))
            for raw in connection:
                client.received.append(raw)
                self._on_message(client, raw)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self.clients.remove(client)
                self.closed_codes.append(connection.close_code)

    def _on_message(self, client: Client, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            self._send(client, json.dumps([{"ev": "status", "status": "error", "message": "invalid message"}]))
            return
        action, params = message.get("action"), str(message.get("params", ""))
        if action == "auth":
            self._on_auth(client, params)
        elif action == "subscribe" and client.authenticated:
            answers = []
            for name in filter(None, (p.strip() for p in params.split(","))):
                client.channels.add(name)
                answers.append({"ev": "status", "status": "success", "message": f"subscribed to: {name}"})
            self._send(client, json.dumps(answers))
        elif not client.authenticated:
            self._send(client, json.dumps([{"ev": "status", "status": "error", "message": "not authorized"}]))

    def _on_auth(self, client: Client, key: str) -> None:
        if key != self.api_key:
            self._send(client, json.dumps([{"ev": "status", "status": "auth_failed",
                                            "message": "authentication failed"}]))
            client.connection.close(1008, "authentication failed")
            return
        with self._lock:
            refuse = self.refuse_next > 0
            self.refuse_next = max(0, self.refuse_next - 1)
            client.authenticated = not refuse
            others = [c for c in self.clients if c.cluster == client.cluster and c.authenticated and c is not client]
            # The newest is kept: the oldest authenticated ones go, beyond the plan's limit.
            taken = [] if refuse else others[:max(0, len(others) + 1 - self.max_connections)]
            for older in taken:
                older.authenticated = False
                self.taken += 1
        if refuse:
            self._kick(client)
            return
        self._send(client, json.dumps([{"ev": "status", "status": "auth_success", "message": "authenticated"}]))
        for older in taken:
            self._kick(older, self.kick_with_status)

    def _kick(self, client: Client, with_status: bool = True) -> None:
        if with_status:
            self._send(client, json.dumps([{"ev": "status", "status": "max_connections",
                                            "message": MAX_CONNECTIONS_MESSAGE}]))
        client.connection.close(1008, "max connections")


class OtherClient:
    """Another program using the same key on a cluster, as a user may run by mistake: it
    connects and authenticates, and when the server closes it for a newer connection it comes
    back after `pause` seconds - forever, until stopped."""

    def __init__(self, url: str, key: str, pause: float = 0.2) -> None:
        self.url, self.key, self.pause = url, key, pause
        self.authenticated = 0  # how many times it got auth_success
        self.taken = 0  # how many times the server closed it with max_connections
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "OtherClient":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait_authenticated(self, times: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.authenticated < times:
            if time.monotonic() > deadline:
                raise AssertionError(f"the other client authenticated {self.authenticated} times, not {times}")
            time.sleep(0.05)

    def _run(self) -> None:
        from websockets.sync.client import connect

        while not self._stop.is_set():
            try:
                with connect(self.url, open_timeout=5) as socket:
                    socket.send(json.dumps({"action": "auth", "params": self.key}))
                    while not self._stop.is_set():
                        try:
                            raw = socket.recv(timeout=0.2)
                        except TimeoutError:
                            continue
                        statuses = {e.get("status") for e in json.loads(raw) if isinstance(e, dict)}
                        self.authenticated += "auth_success" in statuses
                        self.taken += "max_connections" in statuses
            except (ConnectionClosed, OSError):
                pass
            self._stop.wait(self.pause)
