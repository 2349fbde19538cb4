"""The live feed: poll the aggregates endpoint for bars newer than the last one published per
ticker, and publish each bar once, after it has closed.

- Resume: the last published bar time per ticker is read back from the topic itself (the
  tail of the partition its key maps to), never from a side file that could drift from it.
- Market hours: a ticker is polled only while its market is open (and for the feed's delay,
  one bar and one poll interval after the close, so the closing bar is fetched that day);
  between sessions the feed sleeps until the next open. US equities: 09:30-16:00 New York
  time, Monday to Friday (exchange holidays are not known: a holiday costs a few empty
  polls); forex (C:): Sunday 17:00 to Friday 17:00 New York time; crypto (X:): always.
- Request cap, retries and API errors: the backfill's client (RateLimiter, back-off, advice).
- Stops on SIGINT/SIGTERM between requests, with every sent bar flushed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from datetime import time as clock_time
from zoneinfo import ZoneInfo

from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner import DefaultPartitioner

from finstream.config import Settings
from finstream.schema import TIMESPAN_SECONDS
from producer.market_data import MassiveClient, bar_from_aggregate
from producer.publisher import BarPublisher

log = logging.getLogger(__name__)

NEW_YORK = ZoneInfo("America/New_York")
TAIL_RECORDS = 2_000  # records read back per step when looking for a ticker's last bar


# -- market sessions ---------------------------------------------------------------------------
def market(ticker: str) -> str:
    if ticker.startswith("X:"):
        return "crypto"
    if ticker.startswith("C:"):
        return "forex"
    return "us_equity"


def is_open(kind: str, at: datetime) -> bool:
    """Whether the market of `kind` trades at `at` (an aware datetime)."""
    local = at.astimezone(NEW_YORK)
    weekday, t = local.weekday(), local.time()
    if kind == "crypto":
        return True
    if kind == "forex":  # Sunday 17:00 to Friday 17:00, New York
        return not (weekday == 5 or (weekday == 4 and t >= clock_time(17)) or (weekday == 6 and t < clock_time(17)))
    return weekday < 5 and clock_time(9, 30) <= t < clock_time(16)


def should_poll(kind: str, now: datetime, after_close: timedelta) -> bool:
    """Open now, or closed less than `after_close` ago (the session's last bars are still
    to come: they close at the bell and the feed may lag)."""
    return is_open(kind, now) or is_open(kind, now - after_close)


def next_poll_time(kind: str, now: datetime, step: timedelta = timedelta(minutes=5)) -> datetime:
    """The first time at or after `now`, to `step`, when the market of `kind` is open."""
    if is_open(kind, now):
        return now
    seconds = step.total_seconds()
    # On the step's grid (sessions open on whole 5 minutes), within 4 days (every session does).
    t = datetime.fromtimestamp(-(-now.timestamp() // seconds) * seconds, timezone.utc)
    for _ in range(int(timedelta(days=4) / step)):
        if is_open(kind, t):
            break
        t += step
    return t


# -- resuming from the topic --------------------------------------------------------------------
def last_published(settings: Settings, tickers: Iterable[str], timespan: str, multiplier: int) -> dict[str, int]:
    """{ticker: start of its newest bar in the topic} for the series (ticker, timespan,
    multiplier), read from the tail of each ticker's partition. Tickers never published
    are absent."""
    wanted = set(tickers)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=5_000, **settings.kafka_client_options())
    try:
        partitions = sorted(consumer.partitions_for_topic(settings.kafka_topic) or [])
        if not partitions:
            return {}
        # Bars are keyed by ticker: each ticker's bars are on the partition its key maps to.
        by_partition: dict[int, set[str]] = {}
        for ticker in wanted:
            partition = DefaultPartitioner()(ticker.encode(), partitions, partitions)
            by_partition.setdefault(partition, set()).add(ticker)
        found: dict[str, int] = {}
        for partition, names in by_partition.items():
            found.update(_tail_scan(consumer, TopicPartition(settings.kafka_topic, partition), names, timespan,
                                    multiplier))
        return found
    finally:
        consumer.close()


def _tail_scan(consumer: KafkaConsumer, tp: TopicPartition, tickers: set[str], timespan: str,
               multiplier: int) -> dict[str, int]:
    """Reads the partition backwards in growing windows until every ticker has been seen
    or the beginning is reached; the newest bar time per ticker in what was read."""
    consumer.assign([tp])
    begin, end = consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
    found: dict[str, int] = {}
    stop, window = end, TAIL_RECORDS
    while stop > begin and not tickers <= set(found):
        start = max(begin, stop - window)
        consumer.seek(tp, start)
        while consumer.position(tp) < stop:
            batch = consumer.poll(timeout_ms=2_000)
            if not batch:
                break
            for record in batch.get(tp, []):
                if record.offset >= stop:
                    break
                bar = _bar_fields(record.value)
                if bar and bar.get("ticker") in tickers and bar.get("timespan") == timespan \
                        and bar.get("multiplier") == multiplier and isinstance(bar.get("timestamp"), int):
                    found[bar["ticker"]] = max(found.get(bar["ticker"], bar["timestamp"]), bar["timestamp"])
        stop, window = start, window * 4
    return found


def _bar_fields(value: bytes | None) -> dict | None:
    try:
        body = json.loads(value) if value else None
    except ValueError:  # a malformed message in the topic is the stream job's business
        return None
    return body if isinstance(body, dict) else None


# -- the feed ----------------------------------------------------------------------------------
@dataclass
class LiveFeed:
    """Polls `client` for the tickers' new closed bars and publishes them in order."""

    settings: Settings
    client: MassiveClient
    publisher: BarPublisher
    tickers: list[str]
    timespan: str = "minute"
    multiplier: int = 1
    clock: Callable[[], float] = field(default=lambda: datetime.now(timezone.utc).timestamp())
    stop: threading.Event = field(default_factory=threading.Event)
    wait: Callable[[float], None] | None = None  # sleeps, returning early on stop
    last: dict[str, int] = field(default_factory=dict)
    published: int = 0

    def __post_init__(self) -> None:
        self.bar_ms = TIMESPAN_SECONDS[self.timespan] * self.multiplier * 1000
        self.delay = timedelta(minutes=self.settings.live_delay_minutes)
        self.wait = self.wait or self.stop.wait

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def resume(self) -> None:
        self.last = last_published(self.settings, self.tickers, self.timespan, self.multiplier)
        for ticker in self.tickers:
            if ticker in self.last:
                log.info("%s: resuming after %s (last bar in the topic)", ticker, _iso(self.last[ticker]))
            else:
                log.info("%s: nothing in the topic yet: starting %g hours back", ticker,
                         self.settings.live_start_hours_back)

    def run(self) -> int:
        """Until stopped: poll each ticker whose market is open, then wait a poll interval
        (or, when every market is shut, until the next one opens)."""
        self.resume()
        while not self.stop.is_set():
            now = self.now()
            # After the bell, one more poll interval: the closing bar is fetched that day.
            after_close = self.delay + timedelta(milliseconds=self.bar_ms, seconds=self.settings.live_poll_seconds)
            due = [t for t in self.tickers if should_poll(market(t), now, after_close)]
            for ticker in due:
                if self.stop.is_set():
                    break
                self.poll(ticker)
            self.publisher.flush()
            if due:
                self.wait(self.settings.live_poll_seconds)
            else:
                opens = min(next_poll_time(market(t), now) for t in self.tickers)
                log.info("every market is closed: sleeping until %s", opens.isoformat(timespec="minutes"))
                self.wait(max(1.0, (opens - now).total_seconds()))
        self.publisher.flush()
        return self.published

    def poll(self, ticker: str) -> int:
        """Publishes the ticker's bars that closed (and are past the feed's delay) since its
        last published one; returns how many."""
        now_ms = int(self.clock() * 1000)
        closed_before = now_ms - int(self.delay.total_seconds() * 1000)
        last = self.last.get(ticker)
        lo = last + 1 if last is not None else now_ms - int(self.settings.live_start_hours_back * 3_600_000)
        if lo + self.bar_ms > closed_before:
            return 0
        sent = 0
        for result in self.client.aggregates_between(ticker, self.multiplier, self.timespan, lo, closed_before):
            t = result.get("t")
            # Only bars newer than the last one and already closed: a bar still forming would
            # be published again, different, once it closes.
            if not isinstance(t, int) or t < lo or t + self.bar_ms > closed_before:
                continue
            self.publisher.publish(bar_from_aggregate(ticker, self.timespan, self.multiplier, result))
            self.last[ticker] = t
            lo = t + 1
            sent += 1
        if sent:
            log.info("%s: %d new bar(s), last %s", ticker, sent, _iso(self.last[ticker]))
        self.published += sent
        return sent


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="minutes")
