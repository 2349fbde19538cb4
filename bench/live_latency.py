"""Live feed latency, REST polling vs WebSocket: seconds from a minute bar's close to the bar
in Kafka, for each mode, measured against the fake servers (tests/fakes) with their
simulated close times on the wall clock.

    make bench-live                                 # 5 minutes, 10 crypto tickers, polls every 60 s
    .venv/bin/python -m bench.live_latency --minutes 3 --tickers 5 --poll-seconds 60,10

Both modes run at once, each into its own topic on the local stack (`make up`), against one
fake REST server (a bar is served, closed, from its close on) and one fake WebSocket server
(it pushes each bar at its close plus --server-lag seconds). A bar's latency is its Kafka
record's timestamp (set by the producer as it sends) minus its close (start + 60 s). Only bars
that close after the feeds have started count (the look-back fill at start is not latency).
Writes bench/results/live_latency.{json,md}. A benchmark, never part of `make test`.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import threading
import time
import uuid

from bench import flags, report
from bench.cleanup import delete_topic
from finstream.core.config import Secret, Settings
from finstream.core.errors import (
    ArgumentParser,
    HelpFormatter,
    comma_list,
    exit_on_user_error,
    non_negative,
    positive,
    positive_int,
)
from finstream.stores import topics
from producer.live import LiveFeed
from producer.market_data import MassiveClient
from producer.publisher import BarPublisher
from producer.websocket_feed import WebSocketFeed
from tests.fakes.massive import FakeMassive
from tests.fakes.massive_ws import FakeMassiveSocket

MINUTE = 60_000


def record_latencies(settings: Settings, since_ms: int) -> list[float]:
    """Seconds from close to record time of every bar in the topic that closed after `since_ms`."""
    consumer = topics.consumer(settings, settings.kafka_topic, auto_offset_reset="earliest", enable_auto_commit=False,
                               group_id=None, consumer_timeout_ms=5_000)
    try:
        closes = ((json.loads(r.value)["timestamp"] + MINUTE, r.timestamp) for r in consumer)
        return [(sent - close) / 1000 for close, sent in closes if close > since_ms]
    finally:
        consumer.close()


def summary(values: list[float]) -> dict:
    if not values:
        return {"bars": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {"bars": len(values), "p50": pct(0.5), "p95": pct(0.95), "max": round(ordered[-1], 2),
            "mean": round(statistics.fmean(values), 2)}


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--minutes", type=positive, default=5.0, help="minutes of live feed")
    parser.add_argument("--tickers", type=positive_int, default=10, help="crypto tickers (their market never closes)")
    parser.add_argument("--poll-seconds", type=comma_list(positive), default="60",
                        help="REST poll interval(s): one REST feed per value, all at once")
    parser.add_argument("--server-lag", type=non_negative, default=0.0,
                        help="seconds the fake socket waits after a close")
    flags.add_out(parser, "live_latency")
    args = parser.parse_args()

    run_id = uuid.uuid4().hex[:8]
    base = Settings.load()
    now = int(time.time() * 1000) // MINUTE * MINUTE
    tickers = [f"X:B{i:02d}USD" for i in range(args.tickers)]
    modes = {f"REST, polled every {p:g} s": dataclasses.replace(base, kafka_topic=f"bench-live-{run_id}-rest{i}",
                                                                 live_poll_seconds=p, live_start_hours_back=0.1)
             for i, p in enumerate(args.poll_seconds)}
    modes["WebSocket"] = dataclasses.replace(base, kafka_topic=f"bench-live-{run_id}-ws", live_start_hours_back=0.1)
    stop = threading.Event()
    with FakeMassive(clock=lambda: int(time.time() * 1000)) as rest, FakeMassiveSocket(rest.api_key) as socket:
        span = int(args.minutes) + 20
        for ticker in tickers:
            rest.add_bars(ticker, now - 10 * MINUTE, span, step_ms=MINUTE)
        feeds, publishers = [], []
        for name, settings in modes.items():
            settings = dataclasses.replace(settings, polygon_ws_realtime_url=socket.url)
            topics.ensure_topic(settings)
            publisher = BarPublisher(settings)
            client = MassiveClient(rest.url, Secret(rest.api_key), sleep=stop.wait)
            feed = WebSocketFeed(settings, client, publisher, tickers, stop=stop) if name == "WebSocket" else \
                LiveFeed(settings, client, publisher, tickers, "minute", 1, stop=stop)
            feeds.append(threading.Thread(target=feed.run, daemon=True))
            publishers.append(publisher)
            modes[name] = settings
        started = int(time.time() * 1000)
        socket.closes("crypto", {t: [b for b in rest.bars[t] if b["t"] + MINUTE > started] for t in tickers},
                      lag=args.server_lag)
        for feed in feeds:
            feed.start()
        print(f"{len(modes)} feeds, {len(tickers)} tickers, {args.minutes:g} minutes ...", flush=True)
        stop.wait(args.minutes * 60)
        stop.set()
        for feed in feeds:
            feed.join(timeout=60)
        for publisher in publishers:
            publisher.close()
    until = started + int(args.minutes * 60_000)
    # Bars that closed while the feeds ran: a mode that shows fewer had not fetched them all at
    # the stop (a poll still due), and its figures leave those late bars out.
    closed = len(tickers) * sum(1 for close in range(now + MINUTE, until + 1, MINUTE) if close > started)
    rows = {}
    for name, settings in modes.items():
        rows[name] = {**summary(record_latencies(settings, started)), "closed": closed}
        delete_topic(settings)
    result = {**report.run_info("live_latency"), "minutes": args.minutes,
              "tickers": len(tickers), "server_lag_seconds": args.server_lag, "modes": rows}
    table = ["| mode | bars in Kafka / closed | close -> Kafka p50 (s) | p95 (s) | max (s) | mean (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    table += [f"| {name} | {r['bars']} / {r['closed']} | {r.get('p50', '-')} | {r.get('p95', '-')} | "
              f"{r.get('max', '-')} | {r.get('mean', '-')} |" for name, r in rows.items()]
    report.write(args.out, result, "\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
