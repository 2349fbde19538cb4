"""End-to-end latency of the running stream job: bars published at a fixed rate, and the
time until each is searchable in the bars index, and until its prediction is.

    make bench-latency
    .venv/bin/python -m bench.latency --rates 10,100,1000 --seconds 30 --tickers 100 --trigger "1 second"

Runs on the local stack (`make up`) in its own topic, indices, checkpoint and model folder,
removed afterwards. Steps: publish 40 minute bars of history per ticker, train linear models
for the four forecasting questions on them (jobs/train.py; each serves, or its baseline does:
the per-bar work is the same), start jobs/stream_index.py, wait until it has caught up, then
for each rate publish for --seconds and watch both indices' document counts every 50 ms.
The k-th bar sent is taken as searchable when the index first holds k of this phase's
documents: a micro-batch takes every offset published before it starts, and its documents
become visible together at the next index refresh, so visibility follows send order at
the granularity that matters here (one batch). Writes bench/results/latency.{json,md}.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

from elasticsearch import Elasticsearch

from bench import flags, report
from bench.cleanup import drop_run_data
from finstream.core.config import Settings, local_dir
from finstream.core.errors import ArgumentParser, HelpFormatter, comma_list, exit_on_user_error, positive, positive_int
from finstream.core.schema import INDEX_MAPPINGS, Bar
from finstream.stores import elastic, topics
from producer.publisher import BarPublisher

ROOT = Path(__file__).resolve().parents[1]

HISTORY = 40  # bars per ticker before the measured phases: 20 more than a prediction needs
MINUTE_MS = 60_000


@dataclass
class Series:
    """Random-walk minute bars, one series per ticker (`<prefix>0000`, ...), continuing from
    phase to phase."""

    tickers: int
    start_ms: int
    prefix: str = "LAT"
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    steps: list[int] = field(default_factory=list)
    closes: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps = [0] * self.tickers
        self.closes = [50.0 + i for i in range(self.tickers)]

    def bars(self, count: int):
        """`count` bars, the tickers in turn, each series one minute on from its last bar."""
        for n in range(count):
            yield self._next(n % self.tickers)

    def minute(self, count: int):
        """One bar for each of the first `count` tickers, all closing at the same minute: the
        one after the latest bar of any ticker (a series that skipped minutes has a gap)."""
        step = max(self.steps)
        for i in range(count):
            self.steps[i] = step
            yield self._next(i)

    def _next(self, i: int) -> Bar:
        previous = self.closes[i]
        close = previous * math.exp(self.rng.gauss(0.0, 0.002))
        high, low = max(previous, close) * 1.001, min(previous, close) * 0.999
        bar = Bar(ticker=f"{self.prefix}{i:04d}", timespan="minute", multiplier=1,
                  timestamp=self.start_ms + self.steps[i] * MINUTE_MS, open=previous, high=high, low=low,
                  close=close, volume=float(self.rng.randint(1_000, 50_000)), vwap=None, transactions=None,
                  source="bench")
        self.closes[i] = close
        self.steps[i] += 1
        return bar


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latencies(send_times: list[float], timeline: list[tuple[float, int]], base: int) -> list[float]:
    """Seconds from each send to the first observation of the index holding that many of the
    phase's documents (base = documents before the phase). Unobserved sends are left out."""
    times = [t for t, _ in timeline]
    counts = [c - base for _, c in timeline]
    # counts only grow; first index where count >= k, via a running maximum
    running, best = [], 0
    for c in counts:
        best = max(best, c)
        running.append(best)
    result = []
    for k, sent in enumerate(send_times, start=1):
        at = bisect_left(running, k)
        if at < len(times):
            result.append(max(0.0, times[at] - sent))
    return result


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 3), "p95": round(percentile(values, 95), 3),
            "p99": round(percentile(values, 99), 3), "max": round(max(values), 3)}


class CountWatcher(threading.Thread):
    """Polls the document count of some indices every `interval` seconds."""

    def __init__(self, es, indices: list[str], interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.es, self.indices, self.interval = es, indices, interval
        self.timelines: dict[str, list[tuple[float, int]]] = {i: [] for i in indices}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for index in self.indices:
                try:
                    self.timelines[index].append((time.time(), self.es.count(index=index)["count"]))
                except Exception:  # noqa: BLE001 - a missed poll is a gap in the timeline, not a failure
                    pass
            self._done.wait(self.interval)

    def last(self, index: str) -> int:
        timeline = self.timelines[index]
        return timeline[-1][1] if timeline else 0

    def stop(self) -> None:
        self._done.set()
        self.join()


def wait_for(condition, timeout: float, what: str, job: subprocess.Popen | None = None) -> None:
    """Polls `condition` every 0.5 s until it holds.

    Raises:
        SystemExit: after `timeout` seconds, or as soon as `job` (the stream job, when given)
            has exited, which no waiting can mend; the message names `what` was awaited.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if job is not None and job.poll() is not None:
            raise SystemExit(f"the stream job exited (code {job.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def isolated_env(run_id: str) -> dict[str, str]:
    return {
        "KAFKA_TOPIC": f"bench-{run_id}",
        **{field.upper(): f"bench-{field.removeprefix('es_index_').replace('_', '-')}-{run_id}"
           for field in INDEX_MAPPINGS},
        "CHECKPOINT_DIR": str(local_dir() / "bench" / run_id / "checkpoints"),
        "MODEL_DIR": str(local_dir() / "bench" / run_id / "models"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{local_dir() / 'bench' / run_id / 'mlflow' / 'mlflow.db'}",
        "SPARK_EVENT_LOG_DIR": str(local_dir() / "bench" / run_id / "spark-events"),
    }


def isolated_run() -> tuple[str, Settings, Elasticsearch]:
    """A run id, and this process's settings and Elasticsearch client pointed at the run's own
    topic, indices and folders (isolated_env), the cluster reachable and the topic made."""
    run_id = uuid.uuid4().hex[:8]
    os.environ.update(isolated_env(run_id))
    settings = Settings.load()
    es = elastic.client(settings)
    elastic.require_cluster(es, settings)
    topics.ensure_topic(settings)
    return run_id, settings, es


def publish(settings: Settings, bars, per_second: float | None, sends: list[float] | None = None) -> list[float]:
    """Publishes the bars (at `per_second`, or as fast as possible); returns each send's time,
    appended to `sends` as it goes when given (a reader may follow it)."""
    sends = [] if sends is None else sends
    with BarPublisher(settings) as publisher:
        started = time.monotonic()
        for n, bar in enumerate(bars):
            if per_second:
                delay = started + n / per_second - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sends.append(time.time())
            publisher.publish(bar)
    return sends


def train_on_history(settings: Settings, series: Series, run_id: str) -> None:
    """HISTORY minute bars per ticker, then linear models for the four forecasting questions
    (each serves, or its baseline does: the per-bar work is the same)."""
    print(f"history: {HISTORY} minute bars x {series.tickers} tickers; training linear models for the four "
          "forecasting questions", flush=True)
    publish(settings, series.bars(HISTORY * series.tickers), None)
    subprocess.run(["./spark-submit.sh", "jobs/train.py", "--models", "linear", "--folds", "0", "--timespan", "minute",
                    "--no-plots", "--report-dir", f"bench/{run_id}/report"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_stream(trigger: str, log_path: Path) -> subprocess.Popen:
    """The stream job (this process's environment: the isolated names), in its own session."""
    return subprocess.Popen(["./spark-submit.sh", "jobs/stream_index.py"], cwd=ROOT,
                            env={**os.environ, "STREAM_TRIGGER_INTERVAL": trigger},
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def batch_durations(es, settings: Settings, since: float) -> dict[str, float]:
    """Median micro-batch duration per query during a phase, from the pipeline metrics."""
    es.indices.refresh(index=settings.es_index_pipeline_metrics)
    hits = es.search(index=settings.es_index_pipeline_metrics, size=1000,
                     query={"range": {"timestamp": {"gte": int(since * 1000), "format": "epoch_millis"}}})
    by_query: dict[str, list[float]] = {}
    for hit in hits["hits"]["hits"]:
        doc = hit["_source"]
        if doc.get("input_rows"):
            by_query.setdefault(doc["query"], []).append(doc["batch_duration_ms"] / 1000)
    return {q: round(percentile(v, 50), 3) for q, v in by_query.items()}


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--rates", type=comma_list(positive), default="10,100,1000",
                        help="bars per second, comma-separated")
    parser.add_argument("--seconds", type=positive, default=30, help="seconds of feed at each rate")
    parser.add_argument("--tickers", type=positive_int, default=100, help="series in the feed")
    parser.add_argument("--trigger", type=flags.trigger_interval, default="1 second",
                        help="the stream job's trigger interval")
    flags.add_out(parser, "latency")
    parser.add_argument("--keep", action="store_true", help="keep the topic, indices and folders")
    args = parser.parse_args()

    run_id, settings, es = isolated_run()
    series = Series(args.tickers, start_ms=(int(time.time() * 1000) // MINUTE_MS - 2 * 24 * 60) * MINUTE_MS)
    stream_log = local_dir() / "logs" / f"bench-latency-{run_id}.log"
    peer_log = local_dir() / "logs" / f"bench-latency-{run_id}-peer.log"
    stream_log.parent.mkdir(parents=True, exist_ok=True)
    stream = peer = None
    try:
        train_on_history(settings, series, run_id)
        stream = start_stream(args.trigger, stream_log)
        bars_index, predictions_index = settings.es_index_bars, settings.es_index_predictions
        # The peer: a plain Python consumer (kafka-python poll -> helpers.bulk, 1 s refresh)
        # into its own index with the bars mapping, following the same topic in the same run.
        peer_index = f"{bars_index}-peer"
        elastic.ensure_indices(es, dataclasses.replace(settings, es_index_bars=peer_index), only=[peer_index])
        peer = subprocess.Popen([sys.executable, "-m", "bench.methods", "follow", "--index", peer_index,
                                 "--expected", str(10**12)], cwd=ROOT, stdout=peer_log.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        watcher = CountWatcher(es, [bars_index, predictions_index], interval=0.5)
        watcher.start()
        wait_for(lambda: watcher.last(bars_index) == HISTORY * args.tickers
                 and watcher.last(predictions_index) == (HISTORY - 20) * args.tickers, 300,
                 f"the stream job to catch up (log: {stream_log})", stream)
        watcher.stop()

        phases = []
        for rate in args.rates:
            count = int(rate * args.seconds)
            base = {i: elastic.count(es, i) for i in (bars_index, predictions_index, peer_index)}
            watcher = CountWatcher(es, list(base))
            watcher.start()
            started = time.time()
            print(f"{rate:g} bars/s for {args.seconds:g} s ...", flush=True)
            sends = publish(settings, series.bars(count), rate)
            # Called within this iteration: the loop variables cannot change under it.
            wait_for(lambda: all(watcher.last(i) >= base[i] + count for i in base), 180,  # noqa: B023
                     f"{count} bars and predictions to be searchable (log: {stream_log})", stream)
            watcher.stop()
            phase = {
                "rate": rate, "bars": count, "achieved_rate": round(count / (sends[-1] - sends[0]), 1),
                "bar_searchable_s": summary(latencies(sends, watcher.timelines[bars_index], base[bars_index])),
                "prediction_searchable_s": summary(latencies(sends, watcher.timelines[predictions_index],
                                                             base[predictions_index])),
                "peer_bar_searchable_s": summary(latencies(sends, watcher.timelines[peer_index], base[peer_index])),
                "median_batch_s": batch_durations(es, settings, started),
            }
            phases.append(phase)
            print(json.dumps(phase), flush=True)
    finally:
        for process in (stream, peer):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)
        es.options(ignore_status=404).indices.delete(index=f"{settings.es_index_bars}-peer")
        es.options(ignore_status=404).indices.delete_index_template(name=f"{settings.es_index_bars}-peer")
        if not args.keep:
            cleanup(es, settings, run_id)

    result = {**report.run_info("latency"), "trigger": args.trigger, "refresh_interval": "1s", "tickers": args.tickers,
              "seconds_per_rate": args.seconds, "phases": phases}
    table = ["| bars/s | bars | bar searchable p50 / p95 / p99 (s) | prediction searchable p50 / p95 / p99 (s) "
             "| peer (kafka-python + helpers.bulk): bar searchable p50 / p95 / p99 (s) "
             "| median batch (s): index / predict |", "|---:|---:|---|---|---|---|"]
    for p in phases:
        b, q, d = p["bar_searchable_s"], p["prediction_searchable_s"], p["median_batch_s"]
        e = p["peer_bar_searchable_s"]
        table.append(f"| {p['rate']:g} | {p['bars']:,} | {b['p50']} / {b['p95']} / {b['p99']} | "
                     f"{q['p50']} / {q['p95']} / {q['p99']} | {e['p50']} / {e['p95']} / {e['p99']} | "
                     f"{d.get('index-bars', '-')} / {d.get('predict-bars', '-')} |")
    report.write(args.out, result, "\n".join(table) + "\n")
    return 0


def cleanup(es, settings: Settings, run_id: str) -> None:
    drop_run_data(es, settings)
    shutil.rmtree(local_dir() / "bench" / run_id, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
