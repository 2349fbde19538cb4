"""When each market trades, for the live feed (both modes).

- US equities: the New York Stock Exchange's calendar (XNYS) from `exchange-calendars`:
  regular sessions 09:30-16:00 New York time, exchange holidays, and half days (13:00 closes,
  e.g. the day after Thanksgiving).
- Indices (I:) and options (O:): the same calendar and hours (the API's index values follow
  the US equity session; a value some indices publish after 16:00, such as the VIX until
  16:15, is fetched with the next session's first poll, never lost).
- Forex (C:): Sunday 17:00 to Friday 17:00 New York time (no exchange: the interbank week).
- Crypto (X:): always.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from datetime import time as clock_time
from functools import cache
from zoneinfo import ZoneInfo

import exchange_calendars
import pandas as pd

NEW_YORK = ZoneInfo("America/New_York")
EQUITY = "us_equity"
INDEX = "index"
OPTIONS = "options"
NYSE_HOURS = (EQUITY, INDEX, OPTIONS)  # the markets that trade on the NYSE calendar's sessions
PREFIXES = {"X:": "crypto", "C:": "forex", "I:": INDEX, "O:": OPTIONS}


def market(ticker: str) -> str:
    """The market of an API ticker, by its prefix: X: crypto, C: forex, I: index, O: options;
    no prefix, a US equity."""
    return PREFIXES.get(ticker[:2], EQUITY)


@cache
def _xnys(year: int) -> exchange_calendars.ExchangeCalendar:
    """The NYSE calendar around `year`: built per year, so a feed that runs for years never
    asks a calendar about a minute past its last session."""
    return exchange_calendars.get_calendar("XNYS", start=f"{year - 1}-01-01", end=f"{year + 1}-12-31")


def _minute(at: datetime) -> pd.Timestamp:
    return pd.Timestamp(at).tz_convert(timezone.utc)


def is_open(kind: str, at: datetime) -> bool:
    """Whether the market of `kind` trades at `at` (an aware datetime)."""
    if kind == "crypto":
        return True
    if kind == "forex":  # Sunday 17:00 to Friday 17:00, New York
        local = at.astimezone(NEW_YORK)
        weekday, t = local.weekday(), local.time()
        return not (weekday == 5 or (weekday == 4 and t >= clock_time(17)) or (weekday == 6 and t < clock_time(17)))
    return bool(_xnys(at.year).is_open_on_minute(_minute(at)))


def should_poll(kind: str, now: datetime, after_close: timedelta) -> bool:
    """Open now, or closed less than `after_close` ago (the session's last bars are still
    to come: they close at the bell and the feed may lag)."""
    return is_open(kind, now) or is_open(kind, now - after_close)


def next_open(kind: str, now: datetime, step: timedelta = timedelta(minutes=5)) -> datetime:
    """`now` if the market of `kind` is open, else when it next opens."""
    if is_open(kind, now):
        return now
    if kind in NYSE_HOURS:
        return _xnys(now.year).next_open(_minute(now)).to_pydatetime()
    seconds = step.total_seconds()
    # Forex opens on a whole hour: the first open step on the grid, within a week.
    t = datetime.fromtimestamp(-(-now.timestamp() // seconds) * seconds, timezone.utc)
    for _ in range(int(timedelta(days=7) / step)):
        if is_open(kind, t):
            break
        t += step
    return t
