"""The WebSocket live feed against the fake WebSocket and REST servers, publishing into the
real Kafka: bars pushed as they close, a disconnect in mid-session and a restart of the
producer both repaired over REST (every bar exactly once, in order), events for tickers
nobody asked for ignored, malformed messages logged with their text and skipped; an index on
the /indices cluster (no volume); events late, out of order or again (each minute once, a late
one published late) and outside the accepted window (refused). Then the real command: a refused
key, repeated "max connections" refusals, and another client taking the key's one connection
back and forth are one line and exit 2; SIGTERM closes the socket cleanly and exits 0, and the
key shows in no output."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from finstream.core.config import Secret
from finstream.stores import topics
from producer.market_data import MassiveClient
from producer.publisher import BarPublisher
from producer.websocket_feed import WebSocketFeed
from tests.fakes.massive import FakeMassive
from tests.fakes.massive_ws import FakeMassiveSocket, OtherClient, aggregate_event
from tests.integration.conftest import ROOT, topic_bars, wait_until

MINUTE = 60_000
TICKERS = ["X:BTCUSD", "X:ETHUSD"]


class RunningFeed:
    """A WebSocketFeed on a thread, as `python -m producer live --source websocket` runs it."""

    def __init__(self, settings, rest: FakeMassive, tickers: list[str] = TICKERS) -> None:
        self.publisher = BarPublisher(settings)
        client = MassiveClient(rest.url, Secret(rest.api_key), max_retries=1, backoff_base=0.1)
        self.feed = WebSocketFeed(settings, client, self.publisher, list(tickers))
        self.thread = threading.Thread(target=self.feed.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.feed.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        self.publisher.close()
        assert self.feed.failure is None, self.feed.failure


@contextlib.contextmanager
def minute_grid(pipeline, **overrides):
    """The fake REST and WebSocket servers with 150 closed minute bars of each ticker, from two
    hours before `base` (a minute 30 minutes ago): (settings pointed at them, rest, socket, bars
    by ticker and start, base)."""
    base = (int(time.time() * 1000) // MINUTE - 30) * MINUTE
    settings = dataclasses.replace(pipeline.settings, live_start_hours_back=1, **overrides)
    topics.ensure_topic(settings)
    with FakeMassive(clock=lambda: int(time.time() * 1000)) as rest, FakeMassiveSocket(rest.api_key) as socket:
        settings = dataclasses.replace(settings, polygon_ws_realtime_url=socket.url)
        for i, ticker in enumerate(TICKERS):
            rest.add_bars(ticker, base - 120 * MINUTE, 150, step_ms=MINUTE, price=1000.0 * (i + 1))
        yield settings, rest, socket, {t: {b["t"]: b for b in rest.bars[t]} for t in TICKERS}, base


def test_pushed_bars_once_in_order_across_a_disconnect_and_a_restart(pipeline, caplog):
    caplog.set_level(logging.INFO)
    # A minute grid in the past: every bar the test pushes has closed, as on the real feed.
    with minute_grid(pipeline, live_ws_reconnect_cap_seconds=2) as (settings, rest, socket, bars, base):

        def push(*minutes: int) -> None:
            socket.push("crypto", [aggregate_event(t, bars[t][base + m * MINUTE]) for m in minutes for t in TICKERS])

        def pushed_through(minute: int) -> None:
            wait_until(lambda: all(b in published_times(t) for t in TICKERS for b in [base + minute * MINUTE]), 60,
                       f"the bar of minute {minute}")

        def published_times(ticker: str) -> list[int]:
            return [b["timestamp"] for b in topic_bars(settings) if b["ticker"] == ticker]

        running = RunningFeed(settings, rest)
        socket.wait_subscribed("crypto", {"XA.BTC-USD", "XA.ETH-USD"})
        push(0, 1)                                             # the first bars: REST's hour before them first
        socket.push_raw("crypto", '[{"ev":"XA","pair":"DOGE-USD","s":0}]')      # nobody asked for DOGE
        socket.push_raw("crypto", "this is not JSON")                            # logged and skipped
        socket.push_raw("crypto", '[{"ev":"XA","pair":"BTC-USD","s":"yesterday"}]')
        pushed_through(1)
        rest.requests.clear()
        socket.drop("crypto")                                  # in mid-session: the socket misses 2..4
        wait_until(lambda: socket.connections >= 2 and len(socket.subscribed("crypto")) == 2, 60, "a reconnect")
        push(1, 5, 6)                                          # 1 again (a repeat), then 5: REST fills 2..4
        pushed_through(6)
        running.stop()
        assert [r.path for r in rest.requests if "BTCUSD" in r.path]  # the repair asked REST

        running = RunningFeed(settings, rest)                  # a restart: resumes from the topic
        socket.wait_subscribed("crypto", {"XA.BTC-USD", "XA.ETH-USD"})
        push(10)                                               # REST fills 7..9
        pushed_through(10)
        running.stop()

        published = topic_bars(settings)
        for ticker in TICKERS:
            mine = [b for b in published if b["ticker"] == ticker]
            times = [b["timestamp"] for b in mine]
            assert times == list(range(base - 60 * MINUTE, base + 11 * MINUTE, MINUTE)), ticker
            for bar in mine:  # REST's values whichever path delivered the bar
                assert (bar["open"], bar["close"], bar["volume"], bar["source"]) == \
                    (bars[ticker][bar["timestamp"]]["o"], bars[ticker][bar["timestamp"]]["c"],
                     bars[ticker][bar["timestamp"]]["v"], "polygon")
        assert not [b for b in published if b["ticker"] not in TICKERS]
        assert 1000 in socket.closed_codes  # the feed's stop closed the socket cleanly
    log = caplog.text
    assert "a malformed message, skipped: this is not JSON" in log
    assert 'an event without a valid minute start, skipped: {"ev": "XA", "pair": "BTC-USD", "s": "yesterday"}' in log
    assert rest.api_key not in log


def run_cli(pipeline, rest: FakeMassive, socket: FakeMassiveSocket, key: str, **env) -> subprocess.Popen:
    environ = {**os.environ, **pipeline.env, "POLYGON_BASE_URL": rest.url, "POLYGON_API_KEY": key,
               "POLYGON_WS_REALTIME_URL": socket.url, "LIVE_START_HOURS_BACK": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "producer", "live", "--source", "websocket", "--tickers",
                             "X:BTCUSD"], cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_refusals_are_one_line_and_sigterm_closes_cleanly(pipeline):
    topics.ensure_topic(pipeline.settings)
    now = int(time.time() * 1000) // MINUTE * MINUTE
    with FakeMassive(clock=lambda: int(time.time() * 1000)) as rest, FakeMassiveSocket(rest.api_key) as socket:
        rest.add_bars("X:BTCUSD", now - 30 * MINUTE, 30, step_ms=MINUTE)

        wrong = "not-the-key-0123456789"
        refused = run_cli(pipeline, rest, socket, wrong)
        output, _ = refused.communicate(timeout=60)
        assert refused.returncode == 2, output
        assert output.strip().splitlines()[-1].startswith("error: the crypto WebSocket refused the API key")
        assert "Traceback" not in output and wrong not in output

        socket.refuse_next = 100
        crowded = run_cli(pipeline, rest, socket, rest.api_key, LIVE_WS_MAX_REFUSALS="3",
                          LIVE_WS_RECONNECT_CAP_SECONDS="1")
        output, _ = crowded.communicate(timeout=60)
        assert crowded.returncode == 2, output
        assert "error: the crypto WebSocket refused 3 connections in a row" in output.strip().splitlines()[-1]
        assert "Traceback" not in output and rest.api_key not in output
        socket.refuse_next = 0

        closed_before = len(socket.closed_codes)
        live = run_cli(pipeline, rest, socket, rest.api_key)
        socket.wait_subscribed("crypto", {"XA.BTC-USD"})
        socket.push("crypto", [aggregate_event("X:BTCUSD", rest.bars["X:BTCUSD"][-1])])
        wait_until(lambda: len(topic_bars(pipeline.settings)) == 30, 60, "the REST repair and the pushed bar")
        live.send_signal(signal.SIGTERM)
        output, _ = live.communicate(timeout=60)
        assert live.returncode == 0, output
        assert "all flushed" in output and rest.api_key not in output
        wait_until(lambda: len(socket.closed_codes) > closed_before, 10, "the connection to end")
        assert socket.closed_codes[-1] == 1000  # a clean close, not a dropped socket
        times = [b["timestamp"] for b in topic_bars(pipeline.settings)]
        assert times == list(range(now - 30 * MINUTE, now, MINUTE))


def test_an_index_streams_on_the_indices_cluster_without_volume(pipeline):
    base = (int(time.time() * 1000) // MINUTE - 30) * MINUTE
    settings = dataclasses.replace(pipeline.settings, live_start_hours_back=1)
    topics.ensure_topic(settings)
    with FakeMassive(clock=lambda: int(time.time() * 1000)) as rest, FakeMassiveSocket(rest.api_key) as socket:
        settings = dataclasses.replace(settings, polygon_ws_realtime_url=socket.url)
        rest.add_results("I:NDX", [{"o": 12000.0 + i, "h": 12001.5 + i, "l": 11999.25 + i, "c": 12000.75 + i,
                                    "t": base - 120 * MINUTE + i * MINUTE} for i in range(150)], step_ms=MINUTE)
        values = {r["t"]: r for r in rest.bars["I:NDX"]}
        running = RunningFeed(settings, rest, ["I:NDX"])
        socket.wait_subscribed("indices", {"AM.I:NDX"})          # its own cluster, not /stocks
        assert socket.subscribed("stocks") == set()
        socket.push("indices", [aggregate_event("I:NDX", values[base + m * MINUTE]) for m in (0, 1)])
        wait_until(lambda: base + MINUTE in [b["timestamp"] for b in topic_bars(settings)], 60, "the index bars")
        running.stop()
    published = topic_bars(settings)
    assert [b["timestamp"] for b in published] == list(range(base - 60 * MINUTE, base + 2 * MINUTE, MINUTE))
    for bar in published:  # REST's repair and the socket's events alike: values, no volume
        assert (bar["ticker"], bar["close"]) == ("I:NDX", values[bar["timestamp"]]["c"])
        assert (bar["volume"], bar["vwap"], bar["transactions"]) == (None, None, None)


def test_late_out_of_order_repeated_and_absurd_events(pipeline, caplog):
    """Each minute once; one that comes after later ones is published then (the stream job marks
    it late), and when it is the first after a reconnect, REST's repair waits for the next new
    one; one already published, by the socket or by REST's repair, is not published again; one
    outside the accepted window (2017, two hours old) is refused and logged."""
    caplog.set_level(logging.INFO)
    with minute_grid(pipeline) as (settings, rest, socket, bars, base):

        def events(*minutes: int) -> list[dict]:
            return [aggregate_event(t, bars[t][base + m * MINUTE]) for m in minutes for t in TICKERS]

        running = RunningFeed(settings, rest)
        socket.wait_subscribed("crypto", {"XA.BTC-USD", "XA.ETH-USD"})
        socket.push("crypto", events(0))                       # REST repairs the hour before it
        wait_until(lambda: len(topic_bars(settings)) == 2 * 61, 60, "the repair and minute 0")
        # Minutes 1..4, each ticker's: 1 comes last (late, out of order) and 2 comes twice.
        socket.deliver("crypto", events(1, 2, 3, 4), late=(0, 1), again=(2, 3))
        socket.push("crypto", events(-10))                     # repaired over REST already
        socket.push_raw("crypto", '[{"ev":"XA","pair":"BTC-USD","o":14.49,"c":14.49,"h":14.49,"l":14.49,'
                                  '"v":206,"s":1486132200000}]')  # 2017-02-03
        socket.push("crypto", [aggregate_event("X:BTCUSD", {**bars["X:BTCUSD"][base], "t": base - 90 * MINUTE})])
        socket.push("crypto", events(5))                       # everything before it has been read
        wait_until(lambda: len(topic_bars(settings)) == 2 * 66, 60, "minutes 1..5")
        socket.push("crypto", events(7))                       # 6 missed
        wait_until(lambda: len(topic_bars(settings)) == 2 * 67, 60, "minute 7")
        socket.drop("crypto")
        wait_until(lambda: socket.connections >= 2 and len(socket.subscribed("crypto")) == 2, 60, "a reconnect")
        socket.push("crypto", events(6, 10))  # 6, late, is first after the reconnect: REST repairs 8, 9 before 10
        wait_until(lambda: len(topic_bars(settings)) == 2 * 71, 60, "minutes 6..10")
        time.sleep(1)
        running.stop()
    published = topic_bars(settings)
    assert len(published) == 2 * 71
    for ticker in TICKERS:
        times = [b["timestamp"] for b in published if b["ticker"] == ticker]
        assert sorted(times) == list(range(base - 60 * MINUTE, base + 11 * MINUTE, MINUTE)), ticker  # each once
        assert times[-11:] == [base + m * MINUTE for m in (0, 2, 3, 4, 1, 5, 7, 6, 8, 9, 10)], ticker  # 1, 6 late
        for bar in (b for b in published if b["ticker"] == ticker):
            assert bar["close"] == bars[ticker][bar["timestamp"]]["c"]
    log = caplog.text
    assert "arrived after" in log and "published late" in log
    assert "2017-02-03T14:30+00:00, outside the minutes the feed accepts" in log
    assert log.count("outside the minutes the feed accepts") == 2


@pytest.mark.parametrize("with_status", [True, False], ids=["max_connections", "closed without a status"])
def test_another_client_on_the_key_is_one_line_and_exit_2(pipeline, with_status):
    """The server keeps the newest connection: another program with the key and ours would take
    the slot from each other forever. After LIVE_WS_MAX_REFUSALS connections in a row taken
    within LIVE_WS_STEADY_SECONDS (told so by a max_connections status, or simply closed soon
    after authenticating), the feed stops and names the cluster and the other client."""
    topics.ensure_topic(pipeline.settings)
    with FakeMassive() as rest, FakeMassiveSocket(rest.api_key) as socket, \
            OtherClient(f"{socket.url}/crypto", rest.api_key) as other:
        socket.kick_with_status = with_status
        other.wait_authenticated()
        line = pipeline.mistake(sys.executable, "-m", "producer", "live", "--source", "websocket", "--tickers",
                                "X:BTCUSD", env={"POLYGON_BASE_URL": rest.url, "POLYGON_API_KEY": rest.api_key,
                                                 "POLYGON_WS_REALTIME_URL": socket.url, "LIVE_WS_MAX_REFUSALS": "3",
                                                 "LIVE_WS_RECONNECT_CAP_SECONDS": "1"})
        how = "max_connections, each before it had lasted 120 s: Maximum number of websocket connections exceeded." \
            if with_status else "closed by the server, each before it had lasted 120 s"
        assert line.startswith(f"error: the crypto WebSocket refused 3 connections in a row ({how}")
        assert "another client is using this API key on /crypto" in line and "stop the other client" in line
        assert rest.api_key not in line
        assert socket.taken == 6  # taken from each other, three times each
        assert other.taken == (3 if with_status else 0)  # statuses it was sent
        wait_until(lambda: other.authenticated == 4, 10, "the other client to come back")
        assert socket.subscribed("crypto") == set() and other.authenticated > socket.taken // 2  # it has the slot
