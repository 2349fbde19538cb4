"""The live feed against the fake aggregates API with a simulated clock, publishing into the
real Kafka: bars appear as simulated time passes over Thanksgiving week (a holiday, a half
day, a weekend), the producer is stopped and restarted (after a gap) mid-way, and the topic
ends up with every closed bar exactly once, in order per ticker; markets are polled only while
open (the NYSE calendar), within the request cap. Then the real
command under SIGTERM."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

from finstream.core.config import Secret
from finstream.stores import topics
from producer.live import LiveFeed
from producer.market_data import MassiveClient, RateLimiter
from producer.publisher import BarPublisher
from producer.sessions import NEW_YORK
from tests.fakes.massive import FakeMassive, Fault
from tests.integration.conftest import ROOT, topic_bars, wait_until

MINUTE = 60_000
REQUEST_CAP = 5  # per minute: the free tier's


def ny(*args) -> int:
    return int(datetime(*args, tzinfo=NEW_YORK).timestamp() * 1000)


class SimulatedClock:
    """Time that passes only when the code under test waits; stops the feed at `end`."""

    def __init__(self, start_ms: int) -> None:
        self.now_ms = start_ms
        self.end_ms = start_ms
        self.stop = threading.Event()

    def seconds(self) -> float:
        return self.now_ms / 1000

    def wait(self, seconds: float) -> bool:
        self.now_ms += max(1, int(seconds * 1000))
        if self.now_ms >= self.end_ms:
            self.stop.set()
        return self.stop.is_set()


def run_feed(settings, fake, clock, tickers, until_ms) -> int:
    clock.end_ms, clock.stop = until_ms, threading.Event()
    client = MassiveClient(fake.url, Secret(fake.api_key), rate_limiter=RateLimiter(REQUEST_CAP, clock=clock.seconds,
                                                                                    sleep=clock.wait),
                           sleep=clock.wait)
    with BarPublisher(settings) as publisher:
        feed = LiveFeed(settings, client, publisher, tickers, "minute", 1, clock=clock.seconds, stop=clock.stop,
                        wait=clock.wait)
        return feed.run()


def test_bars_published_once_in_order_across_a_restart_a_holiday_a_half_day_and_a_weekend(pipeline):
    settings = dataclasses.replace(pipeline.settings, live_poll_seconds=300, live_start_hours_back=1,
                                   live_delay_minutes=0)
    topics.ensure_topic(settings)
    # Thanksgiving week: Wednesday a full session, Thursday a holiday, Friday a half day (13:00).
    wednesday_open, friday_open, monday_open = ny(2026, 11, 25, 9, 30), ny(2026, 11, 27, 9, 30), ny(2026, 11, 30, 9, 30)
    friday_close = ny(2026, 11, 27, 13, 0)
    start, stop_at, restart_at, end = (ny(2026, 11, 25, 15, 0), ny(2026, 11, 26, 12, 0), ny(2026, 11, 26, 18, 0),
                                       ny(2026, 11, 30, 10, 0))
    clock = SimulatedClock(start)
    with FakeMassive(clock=lambda: clock.now_ms) as fake:
        fake.add_bars("AAPL", wednesday_open, 390, step_ms=MINUTE)
        fake.add_bars("AAPL", friday_open, 210, step_ms=MINUTE, price=120)  # the half day
        fake.add_bars("AAPL", monday_open, 390, step_ms=MINUTE, price=150)
        first_btc = ny(2026, 11, 25, 0, 0)
        fake.add_bars("X:BTCUSD", first_btc, 6 * 24 * 60, step_ms=MINUTE, price=90_000)
        tickers = ["AAPL", "X:BTCUSD"]

        run_feed(settings, fake, clock, tickers, stop_at)          # Wednesday afternoon to Thanksgiving noon
        clock.now_ms = restart_at                                  # down for six hours, then restarted
        fake.faults += [Fault(429, headers={"Retry-After": "30"}), Fault(503), Fault(200, body=b'{"results": [')]
        run_feed(settings, fake, clock, tickers, end)              # resumes from the topic, rides out the faults
        assert not fake.faults
        finals = {t: {b["t"]: b for b in bars} for t, bars in fake.bars.items()}

        bars = topic_bars(settings)
        by_ticker = {t: [b for b in bars if b["ticker"] == t] for t in tickers}
        for ticker, published in by_ticker.items():
            times = [b["timestamp"] for b in published]
            assert times == sorted(set(times)), f"{ticker}: a duplicate or out of order"
            for bar in published:  # the closed bar's values, never the forming one's
                assert bar["close"] == finals[ticker][bar["timestamp"]]["c"]
                assert bar["timestamp"] + MINUTE <= end
        # Every bar from the first look-back on, without a gap over the restart or the weekend,
        # up to within one poll interval of the end.
        btc_times = [b["timestamp"] for b in by_ticker["X:BTCUSD"]]
        assert btc_times == list(range(start - 60 * MINUTE, btc_times[-1] + 1, MINUTE))
        assert btc_times[-1] >= end - 6 * MINUTE
        aapl_times = [b["timestamp"] for b in by_ticker["AAPL"]]
        wednesday = list(range(start - 60 * MINUTE, ny(2026, 11, 25, 16, 0), MINUTE))  # to the closing bar
        friday = list(range(friday_open, friday_close, MINUTE))                        # the half day's, all
        assert aapl_times == wednesday + friday + list(range(monday_open, aapl_times[-1] + 1, MINUTE))
        assert aapl_times[-1] >= end - 6 * MINUTE

        # Not polled while its market is shut (after the closing bar's poll): not on the holiday,
        # not after Friday's early close, not over the weekend; crypto always.
        aapl_asked = [r.at for r in fake.requests if "/AAPL/" in r.path]
        assert not [t for t in aapl_asked if ny(2026, 11, 25, 16, 7) < t < friday_open]
        assert [t for t in aapl_asked if friday_open <= t < friday_close]
        assert not [t for t in aapl_asked if friday_close + 7 * MINUTE < t < monday_open]
        btc_asked = [r.at for r in fake.requests if "BTCUSD" in r.path]
        assert [t for t in btc_asked if ny(2026, 11, 26, 0, 0) < t < stop_at]  # Thanksgiving
        assert [t for t in btc_asked if ny(2026, 11, 28, 0, 0) < t < ny(2026, 11, 29, 0, 0)]  # Saturday
        # The request cap holds in every minute.
        asked = sorted(r.at for r in fake.requests)
        assert max(sum(1 for t in asked if s <= t < s + MINUTE) for s in asked) <= REQUEST_CAP


def test_sigterm_flushes_and_a_restart_adds_no_duplicate(pipeline):
    settings = pipeline.settings
    topics.ensure_topic(settings)
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    with FakeMassive() as fake:
        fake.add_bars("X:BTCUSD", int((now - timedelta(hours=3)).timestamp() * 1000), 170, step_ms=MINUTE)
        env = {**os.environ, **pipeline.env, "POLYGON_BASE_URL": fake.url, "POLYGON_API_KEY": fake.api_key,
               "LIVE_START_HOURS_BACK": "4", "LIVE_POLL_SECONDS": "1"}

        def run_until_sigterm() -> str:
            process = subprocess.Popen([sys.executable, "-m", "producer", "live", "--tickers", "X:BTCUSD"], cwd=ROOT,
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            wait_until(lambda: len(fake.requests) >= 3, 60, "a few polls")
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
            assert process.returncode == 0, output
            return output

        first = run_until_sigterm()
        assert "all flushed" in first and "resuming" not in first
        published = [b["timestamp"] for b in topic_bars(settings)]
        assert len(published) == 170  # the bars that have closed (the fake's last one closed 10 minutes ago)
        fake.requests.clear()
        second = run_until_sigterm()
        assert "resuming after" in second
        assert [b["timestamp"] for b in topic_bars(settings)] == published


def test_an_index_is_polled_on_the_equity_calendar_and_published_without_volume(pipeline):
    """I:NDX over REST: values only (o h l c t), polled while the NYSE is open - Wednesday's
    session, not Thanksgiving, Friday's half day to 13:00 - like an equity."""
    settings = dataclasses.replace(pipeline.settings, live_poll_seconds=300, live_start_hours_back=1,
                                   live_delay_minutes=0)
    topics.ensure_topic(settings)
    wednesday_open, friday_open = ny(2026, 11, 25, 9, 30), ny(2026, 11, 27, 9, 30)
    start, end = ny(2026, 11, 25, 15, 0), ny(2026, 11, 27, 14, 0)
    clock = SimulatedClock(start)
    with FakeMassive(clock=lambda: clock.now_ms) as fake:
        for first, count in ((wednesday_open, 390), (friday_open, 210)):
            fake.add_results("I:NDX", [{"o": 20000.0 + i, "h": 20001.0 + i, "l": 19999.0 + i, "c": 20000.5 + i,
                                        "t": first + i * MINUTE} for i in range(count)], step_ms=MINUTE)
        run_feed(settings, fake, clock, ["I:NDX"], end)
        asked = [r.at for r in fake.requests]
    bars = topic_bars(settings)
    assert [b["timestamp"] for b in bars] == list(range(start - 60 * MINUTE, ny(2026, 11, 25, 16, 0), MINUTE)) + \
        list(range(friday_open, ny(2026, 11, 27, 13, 0), MINUTE))
    assert {(b["volume"], b["vwap"], b["transactions"]) for b in bars} == {(None, None, None)}
    assert not [t for t in asked if ny(2026, 11, 25, 16, 7) < t < friday_open]  # the holiday: not polled
