"""The market's minute: thousands of tickers each close one minute bar at the same instant, as a
whole market does at every minute. How long until the burst's last bar, and its last
prediction, is searchable, and how that grows with the number of tickers.

    .venv/bin/python -m bench.market_minute                          # 1 000, 5 000, 10 000 tickers, twice
    .venv/bin/python -m bench.market_minute --sizes 1000,10000 --repeats 3

Runs on the local stack (`make up`) in its own topic, indices, checkpoint and model folder,
removed afterwards. Steps: train linear models for the four forecasting questions on 40
minute bars of 100 training tickers (jobs/train.py; a model serves every minute series, so
the burst's tickers are served by them); publish 20 minute bars of history for each of the
largest burst's tickers, so that each burst bar is the 21st of its series and gets its four
forecasts; start jobs/stream_index.py (trigger 1 s) and wait until it has caught up; then,
for each size in turn (--repeats times), publish one bar for each of the first N tickers at
the next minute, as fast as the producer's publisher goes, and poll both indices' counts
every 50 ms until all N bars and N predictions are searchable. Times count from the burst's
first send (its publish takes part of them, given too) to the first poll that saw the last
document. Writes bench/results/market_minute.{json,md}. A run takes about 4 minutes on 2 cores
(5 with --repeats 3).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from bench import flags, report
from bench import latency as L  # its generator, watcher, isolation, training and clean-up
from finstream.core.config import local_dir
from finstream.core.errors import ArgumentParser, HelpFormatter, comma_list, exit_on_user_error, positive_int
from finstream.stores import elastic

BURST_HISTORY = 20  # bars per burst ticker before its burst: exactly what a prediction needs
TRAINING_TICKERS = 100


def first_time_at(timeline: list[tuple[float, int]], target: int) -> float | None:
    """The time of the first poll whose count reached `target`, or None."""
    return next((t for t, count in timeline if count >= target), None)


def burst_result(size: int, sends: list[float], bars_at: float, predictions_at: float, batches: dict) -> dict:
    """One burst's figures, seconds from its first send."""
    return {"tickers": size, "publish_s": round(sends[-1] - sends[0], 3),
            "last_bar_searchable_s": round(bars_at - sends[0], 3),
            "last_prediction_searchable_s": round(predictions_at - sends[0], 3),
            "median_batch_s": batches}


def table(bursts: list[dict]) -> str:
    rows = ["| tickers | runs | publish (s) | last bar searchable (s) | last prediction searchable (s) "
            "| median batch (s): index / predict |", "|---:|---:|---|---|---|---|"]
    for size in sorted({b["tickers"] for b in bursts}):
        runs = [b for b in bursts if b["tickers"] == size]
        batches = [f"{b['median_batch_s'].get('index-bars', '-')} / {b['median_batch_s'].get('predict-bars', '-')}"
                   for b in runs]
        rows.append(f"| {size:,} | {len(runs)} | {report.spread([b['publish_s'] for b in runs])} "
                    f"| {report.spread([b['last_bar_searchable_s'] for b in runs])} "
                    f"| {report.spread([b['last_prediction_searchable_s'] for b in runs])} | {'; '.join(batches)} |")
    return "\n".join(rows) + "\n"


def positive_sizes(text: str) -> tuple[int, ...]:
    sizes = comma_list(positive_int)(text)
    if max(sizes) > 10_000:  # comma_list and positive_int refuse none and below 1
        raise argparse.ArgumentTypeError("sizes are ticker counts from 1 to 10000, comma-separated")
    return sizes


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--sizes", type=positive_sizes, default="1000,5000,10000",
                        help="tickers per burst, comma-separated (at most 10000)")
    parser.add_argument("--repeats", type=int, default=2, help="bursts of each size (in turn: 1k, 5k, 10k, 1k, ...)")
    parser.add_argument("--trigger", type=flags.trigger_interval, default="1 second",
                        help="the stream job's trigger interval")
    flags.add_out(parser, "market_minute")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be 1 or more")

    run_id, settings, es = L.isolated_run()
    start_ms = (int(time.time() * 1000) // L.MINUTE_MS - 2 * 24 * 60) * L.MINUTE_MS
    universe = max(args.sizes)
    market = L.Series(universe, start_ms=start_ms, prefix="MKT")
    stream_log = local_dir() / "logs" / f"bench-market-minute-{run_id}.log"
    stream_log.parent.mkdir(parents=True, exist_ok=True)
    bars_index, predictions_index = settings.es_index_bars, settings.es_index_predictions
    stream, bursts = None, []
    try:
        training = L.Series(TRAINING_TICKERS, start_ms=start_ms, prefix="TRN")
        L.train_on_history(settings, training, run_id)
        print(f"history: {BURST_HISTORY} minute bars x {universe:,} tickers", flush=True)
        L.publish(settings, market.bars(BURST_HISTORY * universe), None)
        stream = L.start_stream(args.trigger, stream_log)
        watcher = L.CountWatcher(es, [bars_index, predictions_index], interval=0.5)
        watcher.start()
        history_bars = sum(training.steps) + BURST_HISTORY * universe
        history_predictions = sum(max(0, s - 20) for s in training.steps)
        L.wait_for(lambda: watcher.last(bars_index) == history_bars
                 and watcher.last(predictions_index) == history_predictions, 900,
                 f"the stream job to catch up (log: {stream_log})", stream)
        watcher.stop()
        time.sleep(5)  # the catch-up's trailing triggers done

        for size in [size for _ in range(args.repeats) for size in args.sizes]:
            base = {i: elastic.count(es, i) for i in (bars_index, predictions_index)}
            watcher = L.CountWatcher(es, list(base))
            watcher.start()
            print(f"burst: {size:,} tickers ...", flush=True)
            sends = L.publish(settings, market.minute(size), None)
            # Called within this iteration: the loop variables cannot change under it.
            L.wait_for(lambda: all(watcher.last(i) >= base[i] + size for i in base), 300,  # noqa: B023
                     f"{size} bars and predictions to be searchable (log: {stream_log})", stream)
            watcher.stop()
            time.sleep(3)  # the burst's last progress documents indexed; the next minute starts on a quiet job
            found = {i: first_time_at(watcher.timelines[i], base[i] + size) for i in base}
            burst = burst_result(size, sends, found[bars_index], found[predictions_index],
                                 L.batch_durations(es, settings, sends[0]))
            bursts.append(burst)
            print(burst, flush=True)
    finally:
        if stream is not None and stream.poll() is None:
            os.killpg(stream.pid, signal.SIGTERM)
            stream.wait(timeout=60)
        L.cleanup(es, settings, run_id)

    # The job starts behind by the bursts' history: whether it catches up split is part of the run.
    result = {**report.run_info("market_minute"), "trigger": args.trigger, "burst_history": BURST_HISTORY,
              "training_tickers": TRAINING_TICKERS, "catch_up_records": settings.stream_catch_up_records,
              "bursts": bursts}
    report.write(args.out, result, table(bursts))
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
