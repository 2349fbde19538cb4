"""Where the REST live feed starts a ticker the topic has never carried: its first poll always
covers one whole closed bar, whatever the bar's size, the delay and LIVE_START_HOURS_BACK."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from finstream.core.config import Settings
from finstream.core.schema import TIMESPAN_SECONDS
from producer.live import LiveFeed, first_start

NOW = datetime(2026, 12, 2, 15, 7, tzinfo=timezone.utc)  # a Wednesday afternoon
DAY_MS = 86_400_000


class Aggregates:
    """The aggregates endpoint over a grid of bars (starts at multiples of the bar's length):
    every bar that starts in [lo, hi]."""

    def __init__(self, bar_ms: int) -> None:
        self.bar_ms, self.asked = bar_ms, []

    def aggregates_between(self, ticker, multiplier, timespan, lo_ms, hi_ms):
        self.asked.append((lo_ms, hi_ms))
        first = -(-lo_ms // self.bar_ms) * self.bar_ms
        return [{"t": t, "o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 1, "n": 1}
                for t in range(first, hi_ms + 1, self.bar_ms)]


class Published(list):
    def publish(self, bar) -> None:
        self.append(bar)


@pytest.mark.parametrize(("timespan", "hours_back", "delay_minutes", "last_start"), [
    ("day", 24, 0, datetime(2026, 12, 1, tzinfo=timezone.utc)),          # 24 h hold no whole daily bar
    ("minute", 0.01, 15, datetime(2026, 12, 2, 14, 51, tzinfo=timezone.utc)),  # 36 s, and a 15-min delay
    ("minute", 24, 0, datetime(2026, 12, 2, 15, 6, tzinfo=timezone.utc)),
    ("hour", 1, 0, datetime(2026, 12, 2, 14, tzinfo=timezone.utc)),
])
def test_the_first_poll_publishes_the_last_closed_bar(timespan, hours_back, delay_minutes, last_start):
    settings = Settings.load(environ={"LIVE_START_HOURS_BACK": str(hours_back),
                                      "LIVE_DELAY_MINUTES": str(delay_minutes)})
    api, published = Aggregates(TIMESPAN_SECONDS[timespan] * 1000), Published()
    feed = LiveFeed(settings, api, published, ["X:BTCUSD"], timespan, 1, clock=NOW.timestamp)
    assert feed.poll("X:BTCUSD") == len(published) >= 1
    assert published[-1].timestamp == int(last_start.timestamp() * 1000)


def test_the_configured_window_is_kept_when_it_holds_a_whole_bar():
    now = int(NOW.timestamp() * 1000)
    assert first_start(now, now, 24, 60_000) == now - DAY_MS
    assert first_start(now, now, 24, DAY_MS) == now - 2 * DAY_MS
