"""HTTP client for the Polygon.io / Massive aggregates endpoint.

    GET {base}/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}
        ?adjusted=true&sort=asc&limit=50000

Pages with `next_url`, retries what is transient (429, 5xx, timeouts, broken bodies) with
exponential back-off honouring Retry-After, and stops with a message that says what to do
on what is not (400, 401, 403, 404). The API key travels in the Authorization header only,
so it is never part of a URL that could be logged.

What the answers really hold, and what is done with it (docs/reliability.md, "The API's real
answers"):

- Results outside the window asked for (the API once answered a one-day TJX minute request
  with 4 bars of 2017 among 12): each request's own window is checked where results come
  back - epoch ms for intraday chunks, whole UTC dates for daily and coarser bars (a bar
  longer than a day, or of a multiplier above 1, may start up to one bar before `from`, the
  bar that holds it). Results outside it are dropped, counted and named in one warning per
  request (ticker, how many, their times), so backfill, live REST and WebSocket gap repair
  never publish them.
- Numbers spelled however the API's encoder spells them ("n": 1.412331e+06, a float "t"):
  bar_from_aggregate turns an integral value of an integer field into an int
  (finstream.core.schema.as_integer); a fractional trade count stays a float and is dead-lettered.
- Fields an asset class does not have (an index aggregate is o h l c t only; older stock
  bars lack vw or n) stay null; `otc` and other extra fields are ignored; a status other than
  ERROR (OK, DELAYED) is an answer; no `results` (resultsCount 0) is an empty one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit

import requests

from finstream.core.config import Secret
from finstream.core.errors import hide_credentials
from finstream.core.retry import Transient, retrying
from finstream.core.schema import TIMESPAN_SECONDS, Bar, as_integer

log = logging.getLogger(__name__)

MAX_LIMIT = 50_000
NO_API_KEY = ("no API key: set POLYGON_API_KEY (or POLYGON_API_KEY_FILE), "
              "or use `python -m producer replay` for the bundled sample bars")
MAX_NAMED = 20  # results outside the window named in its warning; the rest are counted
DAY_MS = 86_400_000
# Intraday ranges are split so that one request never spans more base aggregates than the
# limit (the limit counts minute/second aggregates before they are combined).
CHUNK_MS = {
    "second": 12 * 3600 * 1000,
    "minute": 30 * 86400 * 1000,
    "hour": 2000 * 86400 * 1000,
}

ADVICE = {
    400: "the request was refused as malformed; if it says the API key is missing, set POLYGON_API_KEY",
    401: "the API key was refused: check POLYGON_API_KEY (or POLYGON_API_KEY_FILE)",
    403: "your plan is not entitled to this data (timespan, history length or asset class): "
         "ask for a shorter range or a coarser timespan, or upgrade the plan",
    404: "unknown path or ticker: check the ticker spelling and POLYGON_BASE_URL",
}


class MarketDataError(RuntimeError):
    """An API failure the user must act on; the message says how."""


@dataclass
class RateLimiter:
    """At most `per_minute` requests in any minute (0 = no cap); sleeps until allowed."""

    per_minute: int
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _sent: list[float] = field(default_factory=list)

    def wait(self) -> None:
        if self.per_minute <= 0:
            return
        now = self.clock()
        self._sent = [t for t in self._sent if now - t < 60]
        if len(self._sent) >= self.per_minute:
            pause = 60 - (now - self._sent[0])
            log.info("request cap of %d/min reached: waiting %.1f s", self.per_minute, pause)
            self.sleep(pause)
        self._sent.append(self.clock())


@dataclass
class MassiveClient:
    base_url: str
    api_key: Secret
    timeout: float = 30.0
    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    rate_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0))
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)
    outside_window: int = 0  # results dropped for lying outside the window asked for

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.api_key:
            self.session.headers["Authorization"] = f"Bearer {self.api_key.reveal()}"
        self.session.headers["User-Agent"] = "finstream-producer/0.1"

    # -- public ---------------------------------------------------------------------------
    def aggregates(self, ticker: str, multiplier: int, timespan: str, start: date, end: date) -> Iterator[dict]:
        """Every aggregate of [start, end] (inclusive dates, UTC), oldest first."""
        yield from self._ranges(ticker, multiplier, timespan, date_chunks(timespan, start, end))

    def aggregates_between(self, ticker: str, multiplier: int, timespan: str, lo_ms: int, hi_ms: int) -> Iterator[dict]:
        """Every aggregate starting in [lo_ms, hi_ms] (epoch milliseconds), oldest first."""
        yield from self._ranges(ticker, multiplier, timespan, ms_chunks(timespan, lo_ms, hi_ms + 1))

    def _ranges(self, ticker: str, multiplier: int, timespan: str,
                windows: Iterable[tuple[str, str]]) -> Iterator[dict]:
        if not self.api_key:
            raise MarketDataError(NO_API_KEY)
        for lo, hi in windows:
            series_path = f"/v2/aggs/ticker/{quote(ticker, safe=':')}/range/{multiplier}/{timespan}/"
            url = f"{self.base_url}{series_path}{lo}/{hi}"
            params: dict | None = {"adjusted": "true", "sort": "asc", "limit": MAX_LIMIT}
            seen: set[str] = set()
            # The request's own window, for every page (a next_url may restate `from` in ms).
            first, last = window_ms(timespan, multiplier, lo, hi)
            outside: list[dict] = []
            while url:
                body = self._get_json(url, params)
                for result in body.get("results") or []:
                    if not isinstance(result, dict):
                        log.warning("%s: a result that is not an aggregate, skipped: %s", ticker,
                                    self.redact(repr(result))[:200])
                    elif within(result, first, last):
                        yield result
                    else:
                        outside.append(result)
                next_url = body.get("next_url")
                if next_url and next_url in seen:
                    raise MarketDataError(f"the API returned the same next_url twice for {ticker}: "
                                          "stopping instead of looping; retry later")
                if next_url and not self._continues(next_url, series_path):
                    # The key goes with every request: never to another host, never for another series.
                    raise MarketDataError(f"the API's next page for {ticker} is not on {self.base_url} or not this "
                                          f"series ({self.redact(next_url.split('?')[0])[:200]}): stopping; check "
                                          "POLYGON_BASE_URL")
                if next_url:
                    seen.add(next_url)
                url, params = next_url, None  # next_url carries every parameter but the key
            if outside:
                self.outside_window += len(outside)
                times = [iso_time(r.get("t")) for r in outside]
                shown = ", ".join(times[:MAX_NAMED]) + (f" and {len(times) - MAX_NAMED} more"
                                                        if len(times) > MAX_NAMED else "")
                log.warning("%s: %d result(s) outside the window asked for (%s .. %s) dropped, not published: %s",
                            ticker, len(outside), iso_time(first), iso_time(last), shown)

    def _continues(self, next_url: str, series_path: str) -> bool:
        """A next page of the same series on the same host (scheme, host and port)."""
        base, page = urlsplit(self.base_url), urlsplit(next_url)
        return (page.scheme, page.netloc) == (base.scheme, base.netloc) and \
            page.path.startswith(base.path.rstrip("/") + series_path)

    # -- HTTP -----------------------------------------------------------------------------
    def _get_json(self, url: str, params: dict | None) -> dict:
        shown = self.redact(url.split("?")[0])

        def attempt() -> dict:
            self.rate_limiter.wait()
            return self._attempt(url, params)

        try:
            return retrying(attempt, what=shown, retries=self.max_retries, base=self.backoff_base,
                            cap=self.backoff_cap, log=log, sleep=self.sleep)
        except Transient as failure:
            raise MarketDataError(f"{shown}: {failure.problem} after {self.max_retries} retries: "
                                  "the API is unavailable or rate-limiting; try again later or lower "
                                  "POLYGON_MAX_REQUESTS_PER_MINUTE") from None

    def _attempt(self, url: str, params: dict | None) -> dict:
        """The parsed body; raises Transient (with the server's Retry-After) for a failure worth
        another try, MarketDataError for one that is not."""
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
        except requests.Timeout:
            raise Transient(f"no answer within {self.timeout:g} s") from None
        except requests.ConnectionError as exc:
            raise Transient(f"connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429:
            raise Transient("HTTP 429 too many requests", retry_after_seconds(response.headers.get("Retry-After")))
        if status >= 500:
            raise Transient(f"HTTP {status}", retry_after_seconds(response.headers.get("Retry-After")))
        if status >= 400:
            raise MarketDataError(f"{self.redact(url.split('?')[0])}: HTTP {status} "
                                  f"{self._api_message(response)}: {ADVICE.get(status, 'the request was refused')}")
        try:
            body = response.json()
        except ValueError:
            raise Transient("the response body is not valid JSON (truncated?)") from None
        if not isinstance(body, dict):
            raise Transient("the response body is not a JSON object")
        if not isinstance(body.get("results"), (list, type(None))):
            raise Transient("the response's results are not a list")
        if body.get("status") == "ERROR":
            reason = self.redact(str(body.get("error") or body.get("message")))
            raise MarketDataError(f"the API answered status ERROR: {reason}")
        return body

    def _api_message(self, response: requests.Response) -> str:
        try:
            body = response.json()
            text = body.get("message") or body.get("error") or body.get("status") or ""
        except ValueError:
            text = ""
        return f"({self.redact(str(text))[:200]})" if text else ""

    def redact(self, text: str) -> str:
        """`text` without the API key, or any credentials in a URL (errors.hide_credentials): for
        every line that may repeat a request's URL or the API's answer."""
        key = self.api_key.reveal()
        return hide_credentials(text.replace(key, "***") if key else text)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def date_chunks(timespan: str, start: date, end: date) -> Iterator[tuple[str, str]]:
    """(from, to) path segments: whole dates for daily and coarser bars, consecutive
    non-overlapping millisecond windows for intraday ones."""
    if start > end:
        return
    if timespan not in CHUNK_MS:
        yield start.isoformat(), end.isoformat()
        return
    lo = int(datetime(start.year, start.month, start.day, tzinfo=timezone.utc).timestamp() * 1000)
    stop = int(datetime(end.year, end.month, end.day, tzinfo=timezone.utc).timestamp() * 1000) + 86_400_000
    yield from ms_chunks(timespan, lo, stop)


def ms_chunks(timespan: str, lo: int, stop: int) -> Iterator[tuple[str, str]]:
    """Consecutive non-overlapping millisecond windows covering [lo, stop)."""
    chunk = CHUNK_MS.get(timespan, stop - lo)
    while lo < stop:
        hi = min(lo + chunk, stop)
        yield str(lo), str(hi - 1)
        lo = hi


def _bound_ms(segment: str, end: bool) -> int:
    """A from/to path segment as epoch ms: digits are ms already; a date is its whole UTC day."""
    if segment.isdigit():
        return int(segment)
    d = date.fromisoformat(segment)
    start = int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1000)
    return start + DAY_MS - 1 if end else start


def window_ms(timespan: str, multiplier: int, lo: str, hi: str) -> tuple[int, int]:
    """The first and last bar start a request for [lo, hi] may answer with. A bar longer than
    a day, or of a multiplier above 1, may start up to one bar before `from`: the bar that
    holds it (a week starts on its Sunday, a 5-minute bar on its grid)."""
    first, last = _bound_ms(lo, end=False), _bound_ms(hi, end=True)
    if multiplier != 1 or timespan not in ("second", "minute", "hour", "day"):
        first -= TIMESPAN_SECONDS[timespan] * multiplier * 1000
    return first, last


def within(result: dict, first: int, last: int) -> bool:
    """Whether an aggregate starts in [first, last]. One without a numeric start cannot be
    placed: it is kept, and the stream job dead-letters its bar with the reason."""
    t = as_integer(result.get("t"))
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        return True
    return first <= t <= last


def iso_time(ms) -> str:
    """An epoch-ms time as UTC ISO text to the second (or the raw value, if it is not one)."""
    try:
        return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return repr(ms)


def default_range(today: date | None = None) -> tuple[date, date]:
    """The last five years up to yesterday."""
    end = (today or date.today()) - timedelta(days=1)
    try:
        start = end.replace(year=end.year - 5)
    except ValueError:  # 29 February
        start = end.replace(year=end.year - 5, day=28)
    return start, end


def bar_ms(timespan: str, multiplier: int) -> int:
    """The longest a bar of the timespan and multiplier lasts, in milliseconds (months and
    years at their longest)."""
    return TIMESPAN_SECONDS[timespan] * multiplier * 1000


def without_forming(results: Iterable[dict], timespan: str, multiplier: int, closed_before_ms: int,
                    left_out: list[dict] | None = None) -> Iterator[dict]:
    """The API's aggregates less those still forming at `closed_before_ms` (epoch ms): a bar
    whose start plus its length is later. The API answers a range that reaches today with
    today's bar so far; published, it would be sent again, different, once it closes, and the
    stream would have forecast from a close that never was. A result without an integral start
    passes, for the stream job to dead-letter with its reason. What is left out is appended
    to `left_out`."""
    length = bar_ms(timespan, multiplier)
    for result in results:
        t = as_integer(result.get("t"))
        if isinstance(t, int) and not isinstance(t, bool) and t + length > closed_before_ms:
            if left_out is not None:
                left_out.append(result)
            continue
        yield result


def closed_bars(client: MassiveClient, ticker: str, timespan: str, multiplier: int, lo_ms: int,
                closed_before_ms: int) -> Iterator[Bar]:
    """The series' bars that start at or after `lo_ms` and had closed by `closed_before_ms`,
    oldest first. A bar still forming is left out: it would be published again, different,
    once it closes."""
    length = bar_ms(timespan, multiplier)
    if lo_ms + length > closed_before_ms:
        return
    # In time order whatever the answer's order; of two results for one start, the later one
    # (a correction) wins, as in the bars index.
    by_start: dict[int, dict] = {}
    for result in client.aggregates_between(ticker, multiplier, timespan, lo_ms, closed_before_ms):
        t = as_integer(result.get("t"))
        if not isinstance(t, int) or isinstance(t, bool):
            log.warning("%s: a result without an integral start time, skipped: %s", ticker, repr(result)[:200])
        elif lo_ms <= t and t + length <= closed_before_ms:
            by_start[t] = result
    for t in sorted(by_start):
        yield bar_from_aggregate(ticker, timespan, multiplier, by_start[t])


def bar_from_aggregate(ticker: str, timespan: str, multiplier: int, result: dict) -> Bar:
    """An API aggregate as a bar. A missing field stays null: an index has no volume, VWAP or
    trade count, and for a required field the stream job dead-letters the bar with the reason
    instead of the producer dropping it. Integer fields are ints whatever their spelling
    (1.412331e+06); extra fields (`otc`) are not part of a bar."""
    return Bar(ticker=ticker, timespan=timespan, multiplier=as_integer(multiplier),
               timestamp=as_integer(result.get("t")), open=result.get("o"), high=result.get("h"),
               low=result.get("l"), close=result.get("c"), volume=result.get("v"), vwap=result.get("vw"),
               transactions=as_integer(result.get("n")), source="polygon")
