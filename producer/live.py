"""The live feed over REST: poll the aggregates endpoint for bars newer than the last one
published per ticker, and publish each bar once, after it has closed. Works on every plan;
a real-time plan can have each bar pushed instead (producer.websocket_feed).

- Resume: from the topic itself (producer.resume).
- Market hours (producer.sessions): a ticker is polled only while its market is open (and for
  the feed's delay, one bar and one poll interval after the close, so the closing bar is
  fetched that day); between sessions the feed sleeps until the next open. US equities follow
  the NYSE calendar (holidays, half days); forex and crypto their own weeks.
- Request cap, retries and API errors: the backfill's client (RateLimiter, back-off, advice).
- Stops on SIGINT/SIGTERM between requests, with every sent bar flushed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from finstream.core.config import Settings
from finstream.core.schema import TIMESPAN_SECONDS
from producer.market_data import MassiveClient, closed_bars
from producer.publisher import BarPublisher
from producer.resume import iso_minute, resume_points
from producer.sessions import market, next_open, should_poll

log = logging.getLogger(__name__)


def first_start(now_ms: int, closed_before_ms: int, hours_back: float, bar_ms: int) -> int:
    """Where a ticker the topic has never carried starts (epoch ms): LIVE_START_HOURS_BACK
    before now, or earlier when that window holds no whole bar (daily bars and 24 h, or a
    delay longer than the window): two bars before the delay's edge always hold one whole
    bar, so the feed's first poll publishes the last closed bar instead of nothing, forever."""
    return min(now_ms - int(hours_back * 3_600_000), closed_before_ms - 2 * bar_ms)


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
        self.last = resume_points(self.settings, self.tickers, self.timespan, self.multiplier)

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
                opens = min(next_open(market(t), now) for t in self.tickers)
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
        lo = last + 1 if last is not None else first_start(now_ms, closed_before, self.settings.live_start_hours_back,
                                                            self.bar_ms)
        sent = 0
        for bar in closed_bars(self.client, ticker, self.timespan, self.multiplier, lo, closed_before):
            self.publisher.publish(bar)
            self.last[ticker] = bar.timestamp
            sent += 1
        if sent:
            log.info("%s: %d new bar(s), last %s", ticker, sent, iso_minute(self.last[ticker]))
        self.published += sent
        return sent
