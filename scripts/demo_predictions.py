"""Waits for the stream job's predictions of the last bars of a sample dataset: prints the
first one as soon as it is in the index, then, once all are, the last ten beside the actual
next close (the point forecast and its 90 % interval, the range and variance forecasts) and
the live skill of each against its naive baseline."""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import datetime, timezone

from finstream.core.config import Settings
from finstream.core.schema import TIMESPANS
from finstream.stores import elastic
from producer import samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="goog-daily")
    parser.add_argument("--last", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--demo-start", type=float,
                        help="epoch seconds the demo started at: the first forecast says how long after it came")
    args = parser.parse_args()
    settings = Settings.load()
    es = elastic.client(settings)
    bars = samples.load_bars(args.dataset)[-args.last:]
    ids = [b.doc_id for b in bars]
    deadline = time.monotonic() + args.timeout
    first_shown = False
    while True:
        found = es.mget(index=settings.es_index_predictions, ids=ids)["docs"]
        docs = [d["_source"] for d in found if d.get("found")]
        if docs and not first_shown:
            print_first(docs[0], args.demo_start)
            first_shown = True
        # Every bar predicted, and every prediction but the last one judged.
        if len(docs) == len(ids) and sum("actual_close" in d for d in docs) == len(ids) - 1:
            break
        if time.monotonic() > deadline:
            print(f"after {args.timeout:.0f} s: {len(docs)} of {len(ids)} bars predicted in "
                  f"{settings.es_index_predictions}; is the stream job running and a lags model trained?",
                  file=sys.stderr)
            return 1
        time.sleep(1)

    last = docs[-1]
    print(f"\nlive forecasts of {bars[-1].ticker} {bars[-1].timespan} bars in {settings.es_index_predictions}, the "
          f"last 10 of {len(docs)}: next close by {last['model']} ({last['model_version']}), 90 % interval by "
          f"{last['interval_model']} ({last['interval_version']}), range by {last['range_model']} "
          f"({last['range_version']}), variance by {last['volatility_model']} ({last['volatility_version']})")
    print(f"{'bar':<17}{'close':>9}{'next close':>11}{'90 % interval':>18}{'actual':>10}{'inside':>7}"
          f"{'range %':>9}{'actual':>8}{'vol %':>7}{'actual':>8}{'latency ms':>11}")
    p = price_decimals(last)  # one precision for the whole table
    for d in docs[-10:]:
        day = bar_time(d)
        interval = f"{d['lower']:.{p}f}-{d['upper']:.{p}f}"
        forecast = (f"{day:<17}{d['last_close']:>9.{p}f}{d['predicted_close']:>11.{p}f}{interval:>18}")
        if "actual_close" in d:
            judged = (f"{d['actual_close']:>10.{p}f}{'yes' if d['inside_interval'] else 'no':>7}"
                      f"{100 * d['predicted_range']:>9.2f}{100 * d['actual_range']:>8.2f}"
                      f"{100 * math.sqrt(d['predicted_variance']):>7.2f}{100 * math.sqrt(d['actual_variance']):>8.2f}")
        else:
            judged = (f"{'(not yet)':>10}{'':>7}{100 * d['predicted_range']:>9.2f}{'':>8}"
                      f"{100 * math.sqrt(d['predicted_variance']):>7.2f}{'':>8}")
        print(f"{forecast}{judged}{d['latency_ms']:>11}")
    judged = [d for d in docs if "actual_close" in d]
    n = len(judged)
    rmse = math.sqrt(sum(d["error"] ** 2 for d in judged) / n)
    persistence = math.sqrt(sum(d["baseline_error"] ** 2 for d in judged) / n)
    range_rmse = math.sqrt(sum(d["range_error"] ** 2 for d in judged) / n)
    range_base = math.sqrt(sum(d["range_baseline_error"] ** 2 for d in judged) / n)
    moved = [d for d in judged if "variance_loss" in d]
    qlike = sum(d["variance_loss"] for d in moved) / len(moved)
    qlike_base = sum(d["variance_baseline_loss"] for d in moved) / len(moved)
    print(f"live, over {n} judged forecasts (range: log(high/low); vol: the square root of the variance of "
          "the log return; both in %):")
    print(f"  next close RMSE {rmse:.4g}, persistence {persistence:.4g} (ratio {rmse / persistence:.3f})")
    print(f"  90 % interval: {sum(d['inside_interval'] for d in judged):.0f} of {n} closes inside "
          f"({sum(d['inside_interval'] for d in judged) / n:.0%})")
    print(f"  range RMSE {range_rmse:.5f}, 5-bar mean {range_base:.5f} (ratio {range_rmse / range_base:.3f})")
    print(f"  variance QLIKE {qlike:.3f}, EWMA {qlike_base:.3f} (ratio {qlike / qlike_base:.3f}, "
          f"{len(moved)} bars that moved)")
    return 0


def price_decimals(d: dict) -> int:
    """Decimals that show a price's moves: cents for most stocks, five for FX rates near 1."""
    return 2 if d["last_close"] >= 10 else 5


def bar_time(d: dict) -> str:
    """The bar's start as the reader knows it: the day for daily and longer bars, else to the minute (UTC)."""
    started = datetime.fromtimestamp(d["timestamp"] / 1000, timezone.utc)
    span = TIMESPANS.index(d["timespan"])
    shown = "%Y-%m-%d" if span >= TIMESPANS.index("day") else "%Y-%m-%d %H:%M" if span else "%Y-%m-%d %H:%M:%S"
    return started.strftime(shown)


def print_first(d: dict, demo_start: float | None) -> None:
    """The first forecast of the slice in the index, in a line."""
    day = bar_time(d)
    p = price_decimals(d)
    parts = [f"first live forecast: {d['ticker']} {day} close {d['last_close']:.{p}f}"]
    if "predicted_close" in d:
        parts.append(f"next close {d['predicted_close']:.{p}f} ({d.get('model', '?')})")
    if "lower" in d:
        parts.append(f"90 % interval {d['lower']:.{p}f}-{d['upper']:.{p}f}")
    if "predicted_range" in d:
        parts.append(f"range {100 * d['predicted_range']:.2f} %")
    if "predicted_variance" in d:
        parts.append(f"vol {100 * math.sqrt(d['predicted_variance']):.2f} %")
    when = ""
    if demo_start and d["predicted_at"] < demo_start * 1000:
        # A replay of bars the stream has seen: it keeps their first predictions (idempotent).
        when = "; made by an earlier run, these bars are duplicates to the stream now"
    elif demo_start:
        when = f"; {time.time() - demo_start:.0f} s into the demo"
    print(", ".join(parts) + f" (latency {d['latency_ms']} ms{when})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
