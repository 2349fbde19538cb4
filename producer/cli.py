"""python -m producer {backfill,replay} ...

    backfill  bars from the Polygon.io / Massive aggregates API (needs POLYGON_API_KEY)
    replay    real historical sample bars shipped with the project's dependencies
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable
from datetime import date

from tqdm import tqdm

from finstream import topics
from finstream.config import Settings
from finstream.logs import setup_logging
from finstream.schema import TIMESPANS, Bar
from producer import samples
from producer.market_data import MarketDataError, MassiveClient, RateLimiter, default_range
from producer.publisher import BarPublisher, PublishError

log = logging.getLogger("producer")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m producer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    backfill = commands.add_parser("backfill", help="publish historical bars from the aggregates API")
    backfill.add_argument("--tickers", default="AAPL", help="comma-separated, e.g. AAPL,MSFT,C:EURUSD,X:BTCUSD")
    backfill.add_argument("--timespan", default="day", choices=TIMESPANS)
    backfill.add_argument("--multiplier", type=int, default=1)
    backfill.add_argument("--from", dest="start", type=date.fromisoformat, help="YYYY-MM-DD (default: 5 years ago)")
    backfill.add_argument("--to", dest="end", type=date.fromisoformat, help="YYYY-MM-DD (default: yesterday)")
    backfill.add_argument("--max-requests-per-minute", type=int,
                          help="request cap (free tier: 5); default POLYGON_MAX_REQUESTS_PER_MINUTE")

    replay = commands.add_parser("replay", help="publish the bundled sample bars (no key, no network)")
    replay.add_argument("--dataset", default=samples.ALL, choices=[*samples.DATASETS, samples.ALL])
    replay.add_argument("--speed", default="max", help="bars per second, or 'max' (default)")
    replay.add_argument("--skip", type=int, default=0, help="leave out the first N bars of each dataset")
    replay.add_argument("--limit", type=int, help="publish at most N bars of each dataset")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    settings = Settings.load()
    try:
        topics.ensure_topic(settings)
        with BarPublisher(settings) as publisher:
            sent = backfill(args, settings, publisher) if args.command == "backfill" else replay(args, publisher)
        print(f"{args.command}: {sent} bars sent to topic {settings.kafka_topic} "
              f"({publisher.delivered} acknowledged)", flush=True)
        return 0
    except (MarketDataError, PublishError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: every bar sent so far was flushed", file=sys.stderr)
        return 130


def backfill(args: argparse.Namespace, settings: Settings, publisher: BarPublisher) -> int:
    start, end = default_range()
    start, end = args.start or start, args.end or end
    per_minute = args.max_requests_per_minute if args.max_requests_per_minute is not None \
        else settings.polygon_max_requests_per_minute
    client = MassiveClient(settings.polygon_base_url, settings.polygon_api_key,
                           timeout=settings.polygon_timeout_seconds, max_retries=settings.polygon_max_retries,
                           rate_limiter=RateLimiter(per_minute))
    total = 0
    for ticker in [t.strip() for t in args.tickers.split(",") if t.strip()]:
        results = client.aggregates(ticker, args.multiplier, args.timespan, start, end)
        bars = (bar_from_aggregate(ticker, args.timespan, args.multiplier, r) for r in results)
        sent = publish_all(publisher, tqdm(bars, desc=ticker, unit=" bars", disable=None))
        log.info("%s: %d bars (%s x%d, %s .. %s)", ticker, sent, args.timespan, args.multiplier, start, end)
        total += sent
    return total


def bar_from_aggregate(ticker: str, timespan: str, multiplier: int, result: dict) -> Bar:
    """An API aggregate as a bar. A missing field stays null: the stream job dead-letters
    the bar with the reason instead of the producer dropping it."""
    return Bar(ticker=ticker, timespan=timespan, multiplier=multiplier, timestamp=result.get("t"),
               open=result.get("o"), high=result.get("h"), low=result.get("l"), close=result.get("c"),
               volume=result.get("v"), vwap=result.get("vw"), transactions=result.get("n"), source="polygon")


def replay(args: argparse.Namespace, publisher: BarPublisher) -> int:
    per_second = None if args.speed == "max" else float(args.speed)
    if per_second is not None and per_second <= 0:
        raise ValueError("--speed must be a positive number of bars per second, or 'max'")
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
