"""python -m producer {backfill,live,replay} ...

    backfill  bars from the Polygon.io / Massive aggregates API (needs POLYGON_API_KEY)
    live      new bars from the same API as they close, resuming from the topic (runs until stopped):
              polled over REST (every plan) or pushed over the WebSocket (--source websocket)
    replay    real historical sample bars shipped with the project's dependencies
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable
from datetime import date, timedelta

from tqdm import tqdm

from finstream.core.config import LIVE_SOURCES, WS_FEEDS, Settings, setting_type
from finstream.core.errors import (
    USER_ERROR_EXIT,
    ArgumentParser,
    Refused,
    UserError,
    non_negative_int,
    positive,
    positive_int32,
    print_error,
    ticker_list,
)
from finstream.core.logs import setup_logging
from finstream.core.schema import TIMESPANS, Bar, as_integer
from finstream.stores import topics
from producer import live as live_feed
from producer import samples, websocket_feed
from producer.market_data import (
    NO_API_KEY,
    MarketDataError,
    MassiveClient,
    RateLimiter,
    bar_from_aggregate,
    default_range,
    iso_time,
    without_forming,
)
from producer.publisher import BarPublisher, PublishError

log = logging.getLogger(__name__)


SLOWEST = 0.001  # bars per second: a bar every 1 000 s; slower ones would wait past the clock's range


def speed(text: str) -> float | str:
    """An argparse type: bars per second, SLOWEST or more, or "max"; Refused otherwise."""
    if text == "max":
        return text
    try:
        value = positive(text)
    except Refused:
        value = 0.0
    if value < SLOWEST:
        raise Refused(f"{text} is neither a number of bars per second of {SLOWEST} or more nor max")
    return value


EPOCH_DAY = date(1970, 1, 1)  # no market data is older


def market_date(text: str) -> date:
    """An argparse type: a day, YYYY-MM-DD, from 1970-01-01 on (none of the API's bars is older);
    Refused otherwise."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise Refused(f"{text} is not a day (YYYY-MM-DD)") from None
    if day < EPOCH_DAY:
        raise Refused(f"{text} is not a day from 1970-01-01 on")
    return day


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m producer", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    backfill = commands.add_parser("backfill", help="publish historical bars from the aggregates API")
    backfill.add_argument("--tickers", type=ticker_list, default="AAPL",
                          help="comma-separated, e.g. AAPL,MSFT,C:EURUSD,X:BTCUSD")
    backfill.add_argument("--timespan", default="day", choices=TIMESPANS)
    backfill.add_argument("--multiplier", type=positive_int32, default=1)
    backfill.add_argument("--from", dest="start", type=market_date, help="YYYY-MM-DD (default: 5 years ago)")
    backfill.add_argument("--to", dest="end", type=market_date, help="YYYY-MM-DD (default: yesterday)")
    backfill.add_argument("--max-requests-per-minute", type=setting_type("polygon_max_requests_per_minute"),
                          help="request cap (free tier: 5; 0: none); default POLYGON_MAX_REQUESTS_PER_MINUTE")

    live = commands.add_parser("live", help="publish new bars as they close, until stopped (SIGINT/SIGTERM)")
    live.add_argument("--tickers", type=ticker_list, default="AAPL", help="comma-separated, e.g. AAPL,MSFT,X:BTCUSD")
    live.add_argument("--timespan", default="minute", choices=TIMESPANS)
    live.add_argument("--multiplier", type=positive_int32, default=1)
    live.add_argument("--source", choices=LIVE_SOURCES,
                      help="rest: poll the aggregates endpoint (every plan); websocket: each minute bar pushed as it "
                           "closes (plans with WebSocket access; minute bars only); default LIVE_SOURCE")
    live.add_argument("--feed", choices=WS_FEEDS,
                      help="WebSocket host: real-time, or 15 minutes delayed; default POLYGON_WS_FEED")
    live.add_argument("--poll-seconds", type=setting_type("live_poll_seconds"), help="default LIVE_POLL_SECONDS")
    live.add_argument("--delay-minutes", type=setting_type("live_delay_minutes"),
                      help="how long after a bar closes the API serves it (free plans: 15); default LIVE_DELAY_MINUTES")
    live.add_argument("--max-requests-per-minute", type=setting_type("polygon_max_requests_per_minute"),
                      help="request cap (free tier: 5; 0: none); default POLYGON_MAX_REQUESTS_PER_MINUTE")

    replay = commands.add_parser("replay", help="publish the bundled sample bars (no key, no network)")
    replay.add_argument("--dataset", default=samples.ALL, choices=[*samples.DATASETS, samples.ALL])
    replay.add_argument("--speed", type=speed, default="max", help="bars per second, or 'max' (default)")
    replay.add_argument("--skip", type=non_negative_int, default=0, help="leave out the first N bars of each dataset")
    replay.add_argument("--limit", type=non_negative_int, help="publish at most N bars of each dataset")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    settings = Settings.load()
    try:
        check_before_publishing(args, settings)
        topics.ensure_topic(settings)
        with BarPublisher(settings) as publisher:
            run = {"backfill": backfill, "live": live, "replay": replay}[args.command]
            sent = run(args, settings, publisher)
        print(f"{args.command}: {sent} bars sent to topic {settings.kafka_topic} "
              f"({publisher.delivered} acknowledged)", flush=True)
        return 0
    except (MarketDataError, PublishError, UserError, ValueError) as exc:
        print_error(exc)
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        print("interrupted: every bar sent so far was flushed", file=sys.stderr)
        return 130


def check_before_publishing(args: argparse.Namespace, settings: Settings) -> None:
    """The command's mistakes that need no server, found before Kafka is reached.

    Raises:
        UserError: backfill's --from after --to; backfill or live without an API key; the
            WebSocket asked for other than minute bars.
    """
    if args.command == "backfill":
        backfill_range(args.start, args.end)
    if args.command in ("backfill", "live") and not settings.polygon_api_key:
        raise UserError(NO_API_KEY)
    source = (args.source or settings.live_source) if args.command == "live" else None
    if source == "websocket" and (args.timespan, args.multiplier) != ("minute", 1):
        raise UserError("the WebSocket pushes minute bars only: drop --timespan/--multiplier, or use --source rest")


def api_client(args: argparse.Namespace, settings: Settings, sleep=None) -> MassiveClient:
    per_minute = args.max_requests_per_minute if args.max_requests_per_minute is not None \
        else settings.polygon_max_requests_per_minute
    pauses = {"sleep": sleep} if sleep else {}
    return MassiveClient(settings.polygon_base_url, settings.polygon_api_key,
                         timeout=settings.polygon_timeout_seconds, max_retries=settings.polygon_max_retries,
                         rate_limiter=RateLimiter(per_minute, **pauses), **pauses)


def backfill_range(start: date | None, end: date | None, today: date | None = None) -> tuple[date, date]:
    """--from and --to, each defaulting (to yesterday, and to five years before the end); a --to
    after today is today (the API has bars up to now, none after).

    Raises:
        UserError: the start is after the end or after today (the API would answer nothing,
            and the command would report 0 bars as if there were none).
    """
    today, to_given = today or date.today(), end is not None
    if start and start > today:
        raise UserError(f"--from {start} is after today ({today}): no bars exist yet; give an earlier start")
    end = min(end, today) if end else default_range(today)[1]
    start = start or max(default_range(end + timedelta(days=1))[0], EPOCH_DAY)
    if start > end:
        raise UserError(f"--from {start} is after --to {end}: give a start on or before the end" if to_given else
                        f"--from {start} is after the default --to, yesterday ({end}): give --to {start} or later")
    return start, end


def backfill(args: argparse.Namespace, settings: Settings, publisher: BarPublisher, now_ms: int | None = None,
             client: MassiveClient | None = None) -> int:
    """Publishes the tickers' bars of [--from, --to] that have closed by now (`now_ms`, epoch ms;
    the wall clock by default), less the feed's delay (LIVE_DELAY_MINUTES), as the live feed
    does: a --to of today would otherwise publish today's bar so far. Returns the bars sent."""
    start, end = backfill_range(args.start, args.end)
    client = client or api_client(args, settings)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    closed_before = now_ms - int(settings.live_delay_minutes * 60_000)
    total = 0
    for ticker in args.tickers:
        forming: list[dict] = []
        results = without_forming(client.aggregates(ticker, args.multiplier, args.timespan, start, end),
                                  args.timespan, args.multiplier, closed_before, forming)
        bars = (bar_from_aggregate(ticker, args.timespan, args.multiplier, r) for r in results)
        sent = publish_all(publisher, tqdm(bars, desc=ticker, unit=" bars", disable=None))
        log.info("%s: %d bars (%s x%d, %s .. %s)", ticker, sent, args.timespan, args.multiplier, start, end)
        if forming:
            log.info("%s: %d bar(s) from %s left out, not yet closed by the longest length of a %s bar: published "
                     "once closed (producer live on the same timespan, or a later backfill)", ticker, len(forming),
                     iso_time(as_integer(forming[0]["t"])), args.timespan)
        total += sent
    return total


def live(args: argparse.Namespace, settings: Settings, publisher: BarPublisher) -> int:
    """Runs until SIGINT/SIGTERM; the pauses (poll interval, request cap, back-off) end early
    on a stop, and the publisher is flushed before the exit."""
    overrides = {name: value for name, value in (("live_poll_seconds", args.poll_seconds),
                                                 ("live_delay_minutes", args.delay_minutes),
                                                 ("live_source", args.source), ("polygon_ws_feed", args.feed))
                 if value is not None}
    settings = dataclasses.replace(settings, **overrides)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    client = api_client(args, settings, sleep=stop.wait)
    if settings.live_source == "websocket":  # check_before_publishing: minute bars, a key
        feed = websocket_feed.WebSocketFeed(settings, client, publisher, list(args.tickers), stop=stop)
    else:  # "rest": Settings.load and --source admit LIVE_SOURCES only
        feed = live_feed.LiveFeed(settings, client, publisher, list(args.tickers), args.timespan, args.multiplier,
                                  stop=stop)
    sent = feed.run()
    log.info("stopped: %d bars published this run, all flushed", sent)
    return sent


def replay(args: argparse.Namespace, settings: Settings, publisher: BarPublisher) -> int:
    per_second = None if args.speed == "max" else args.speed
    total = 0
    for name in samples.dataset_names(args.dataset):
        bars = samples.load_bars(name)[args.skip:]
        bars = bars[: args.limit] if args.limit is not None else bars
        total += publish_all(publisher, tqdm(bars, desc=name, unit=" bars", disable=None), per_second)
    return total


def publish_all(publisher: BarPublisher, bars: Iterable[Bar], per_second: float | None = None) -> int:
    sent, started = 0, time.monotonic()
    for bar in bars:
        if per_second:
            # Pace against the start time, so slow sends do not accumulate drift.
            delay = started + sent / per_second - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        publisher.publish(bar)
        sent += 1
    return sent
