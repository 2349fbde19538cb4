"""Soak: the stream job with predictions on, fed at a steady rate for a long time. Does
anything grow that should not: latency, memory, state, checkpoints, lag?

    make bench-soak                                  # 200 bars/s for 30 minutes, a report every 5
    .venv/bin/python -m bench.soak --rate 200 --minutes 10 --report-minutes 1

Runs on the local stack (`make up`) in its own topic, indices, checkpoint and model folder,
removed afterwards. Publishes 40 minute bars of history per ticker, trains linear models for
the four forecasting questions (as bench/latency.py), starts jobs/stream_index.py, then
publishes --rate bars/s for --minutes. Every --report-minutes it reports:
  - bar and prediction searchable latency p50/p99 over the window (as bench/latency.py);
  - the RSS of the driver JVM, of the Python driver and of the Python workers, and the
    driver JVM's live heap (used after a full GC, jcmd): RSS that climbs to the heap's
    maximum and stops is sizing; live heap that keeps climbing is a leak;
  - Elasticsearch's heap; the size of the checkpoints and of the state store; Kafka lag.
It ends with a verdict per figure: flat, or growing at a stated rate (least squares over
the reports after the first). Writes bench/results/soak.{json,md}.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import flags, report
from bench.latency import (
    HISTORY,
    MINUTE_MS,
    CountWatcher,
    Series,
    cleanup,
    isolated_run,
    publish,
    start_stream,
    summary,
    train_on_history,
    wait_for,
)
from finstream.core.config import Settings, local_dir
from finstream.core.errors import ArgumentParser, HelpFormatter, exit_on_user_error, positive, positive_int
from finstream.stores import checkpoints, topics

ROOT = Path(__file__).resolve().parents[1]

QUERIES = ("index-bars", "predict-bars")
# Growth below this per minute is noise on a shared 2-core machine (and reported as flat).
FLAT_MB_PER_MINUTE = 1.0


def processes(group: int) -> dict[str, list[int]]:
    """The stream job's processes (its own session): driver JVM, Python driver, Python workers."""
    found: dict[str, list[int]] = {"driver_jvm": [], "python_driver": [], "python_workers": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[3]) != group:  # field 5: process group
            continue
        if "org.apache.spark.deploy.SparkSubmit" in cmdline:
            found["driver_jvm"].append(int(entry.name))
        elif "jobs/stream_index.py" in cmdline:
            found["python_driver"].append(int(entry.name))
        elif "pyspark.daemon" in cmdline or "pyspark.worker" in cmdline:
            found["python_workers"].append(int(entry.name))
    return found


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
        except OSError:
            continue
        total += int(match.group(1)) if match else 0
    return round(total / 1024, 1)


def jcmd() -> str:
    home = subprocess.run(["bash", "-c", "source stack/common.sh >/dev/null && spark_java_home"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()
    return f"{home}/bin/jcmd"


def live_heap_mb(tool: str, pid: int) -> float | None:
    """The driver JVM's heap in use right after a full GC: its live data."""
    subprocess.run([tool, str(pid), "GC.run"], capture_output=True, timeout=120)
    info = subprocess.run([tool, str(pid), "GC.heap_info"], capture_output=True, text=True, timeout=60).stdout
    match = re.search(r"heap\s+total \d+K, used (\d+)K", info)
    return round(int(match.group(1)) / 1024, 1) if match else None


def folder_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 2) if path.exists() else 0.0


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope, per minute, of (seconds, value) points."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else 0.0


class Feed(threading.Thread):
    """Publishes the series at a fixed rate; `sends` grows with each send's time."""

    def __init__(self, settings: Settings, series: Series, rate: float, seconds: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.series, self.rate, self.seconds = settings, series, rate, seconds
        self.sends: list[float] = []

    def run(self) -> None:
        publish(self.settings, self.series.bars(int(self.rate * self.seconds)), self.rate, self.sends)


def window_latencies(sends: list[float], timeline: list[tuple[float, int]], base: int,
                     start: float, end: float) -> list[float]:
    """Seconds to searchable of the sends in [start, end): the k-th send is searchable when
    the index first holds base + k documents."""
    result, at, best = [], 0, 0
    for k, sent in enumerate(sends, start=1):
        while at < len(timeline) and max(best, timeline[at][1] - base) < k:
            best = max(best, timeline[at][1] - base)
            at += 1
        if at == len(timeline):
            break
        if start <= sent < end:
            result.append(max(0.0, timeline[at][0] - sent))
    return result


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--rate", type=positive, default=200, help="bars per second")
    parser.add_argument("--minutes", type=positive, default=30, help="minutes of feed")
    parser.add_argument("--report-minutes", type=positive, default=5, help="minutes between samples")
    parser.add_argument("--tickers", type=positive_int, default=200, help="series in the feed")
    parser.add_argument("--trigger", type=flags.trigger_interval, default="1 second",
                        help="the stream job's trigger interval")
    flags.add_out(parser, "soak")
    parser.add_argument("--keep", action="store_true", help="keep the topic, indices and folders")
    args = parser.parse_args()
    if args.report_minutes > args.minutes:
        parser.error(f"--report-minutes {args.report_minutes:g} is longer than --minutes {args.minutes:g}: "
                     "no report would be whole")

    run_id, settings, es = isolated_run()
    series = Series(args.tickers, start_ms=(int(time.time() * 1000) // MINUTE_MS - 30 * 24 * 60) * MINUTE_MS)
    stream_log = local_dir() / "logs" / f"bench-soak-{run_id}.log"
    stream_log.parent.mkdir(parents=True, exist_ok=True)
    stream = None
    reports = []
    tool = jcmd()
    try:
        train_on_history(settings, series, run_id)
        stream = start_stream(args.trigger, stream_log)
        bars_index, predictions_index = settings.es_index_bars, settings.es_index_predictions
        watcher = CountWatcher(es, [bars_index, predictions_index], interval=0.5)
        watcher.start()
        wait_for(lambda: watcher.last(bars_index) == HISTORY * args.tickers
                 and watcher.last(predictions_index) == (HISTORY - 20) * args.tickers, 600,
                 f"the stream job to catch up (log: {stream_log})", stream)
        base = {bars_index: watcher.last(bars_index), predictions_index: watcher.last(predictions_index)}

        feed = Feed(settings, series, args.rate, args.minutes * 60)
        started = time.time()
        feed.start()
        print(f"{args.rate:g} bars/s for {args.minutes:g} min, a report every {args.report_minutes:g} min "
              f"(log: {stream_log})", flush=True)
        window_start = started
        while True:
            end = min(window_start + args.report_minutes * 60, started + args.minutes * 60)
            time.sleep(max(0.0, end - time.time()))
            time.sleep(15)  # the window's last bars become searchable
            group = processes(stream.pid)
            heap = live_heap_mb(tool, group["driver_jvm"][0]) if group["driver_jvm"] else None
            ends = topics.end_offsets(settings)
            snapshot = {
                "minute": round((end - started) / 60, 1),
                "bar_searchable_s": summary(window_latencies(feed.sends, watcher.timelines[bars_index],
                                                             base[bars_index], window_start, end)),
                "prediction_searchable_s": summary(window_latencies(
                    feed.sends, watcher.timelines[predictions_index], base[predictions_index], window_start, end)),
                "rss_mb": {role: rss_mb(pids) for role, pids in group.items()},
                "python_workers": len(group["python_workers"]),
                "driver_live_heap_mb": heap,
                "es_heap_mb": round(sum(n["jvm"]["mem"]["heap_used_in_bytes"] for n in
                                        es.nodes.stats(metric="jvm")["nodes"].values()) / 2**20, 1),
                "checkpoint_mb": folder_mb(settings.checkpoint_path),
                "state_mb": folder_mb(settings.query_checkpoint("predict-bars") / "state"),
                "kafka_lag": {query: sum(ends.values()) - sum(checkpoints.resume_offsets(
                    settings.query_checkpoint(query), settings.kafka_topic).values()) for query in QUERIES},
            }
            reports.append(snapshot)
            print(json.dumps(snapshot), flush=True)
            window_start = end
            if end >= started + args.minutes * 60:
                break
        feed.join()
        watcher.stop()
    finally:
        if stream is not None and stream.poll() is None:
            os.killpg(stream.pid, signal.SIGTERM)
            stream.wait(timeout=60)
        if not args.keep:
            cleanup(es, settings, run_id)

    result = {**report.run_info("soak"), "rate": args.rate, "minutes": args.minutes, "tickers": args.tickers,
              "trigger": args.trigger,
              "reports": reports, "verdict": verdict(reports, args.rate)}
    report.write(args.out, result, table(result))
    return 0


FIGURES = {  # name -> how to read it from a report
    "driver JVM RSS (MB)": lambda r: r["rss_mb"]["driver_jvm"],
    "driver JVM live heap (MB)": lambda r: r["driver_live_heap_mb"],
    "Python driver RSS (MB)": lambda r: r["rss_mb"]["python_driver"],
    "Python workers RSS (MB)": lambda r: r["rss_mb"]["python_workers"],
    "Elasticsearch heap (MB)": lambda r: r["es_heap_mb"],
    "checkpoints (MB)": lambda r: r["checkpoint_mb"],
    "state store (MB)": lambda r: r["state_mb"],
}


def verdict(reports: list[dict], rate: float) -> dict[str, str]:
    """Per figure: flat, or its growth per minute, over the reports after the first (warm-up).
    Kafka lag is flat when it grows by less than a second's records per minute."""
    later = reports[1:] if len(reports) > 2 else reports
    result = {}
    for name, read in FIGURES.items():
        points = [(r["minute"] * 60, read(r)) for r in later if read(r) is not None]
        rate = slope_per_minute(points)
        result[name] = ("flat" if abs(rate) < FLAT_MB_PER_MINUTE else
                        f"falling ({rate:+.1f} MB/min)" if rate < 0 else f"growing at {rate:+.1f} MB/min")
    for query in QUERIES:
        rate_of_lag = slope_per_minute([(r["minute"] * 60, r["kafka_lag"][query]) for r in later])
        result[f"{query} lag (records)"] = ("flat" if abs(rate_of_lag) < rate else f"falling ({rate_of_lag:+.0f}/min)"
                                            if rate_of_lag < 0 else f"growing at {rate_of_lag:+.0f} records/min")
    return result


def table(result: dict) -> str:
    lines = [f"Soak: {result['rate']:g} bars/s for {result['minutes']:g} min, {result['tickers']} tickers, "
             f"trigger {result['trigger']} ({result['date'][:10]}, {result['machine']['cpus']} cores)", "",
             "| minute | bar p50 / p99 (s) | prediction p50 / p99 (s) | driver JVM RSS / live heap (MB) "
             "| Python driver / workers RSS (MB) | ES heap (MB) | checkpoints / state (MB) | lag: index / predict |",
             "|---:|---|---|---|---|---:|---|---|"]
    for r in result["reports"]:
        b, p = r["bar_searchable_s"], r["prediction_searchable_s"]
        lines.append(f"| {r['minute']:g} | {b.get('p50')} / {b.get('p99')} | {p.get('p50')} / {p.get('p99')} | "
                     f"{r['rss_mb']['driver_jvm']} / {r['driver_live_heap_mb']} | {r['rss_mb']['python_driver']} / "
                     f"{r['rss_mb']['python_workers']} ({r['python_workers']}) | {r['es_heap_mb']} | "
                     f"{r['checkpoint_mb']} / {r['state_mb']} | {r['kafka_lag']['index-bars']} / "
                     f"{r['kafka_lag']['predict-bars']} |")
    lines += ["", "Verdict (after the first report): " + "; ".join(f"{k}: {v}" for k, v in result["verdict"].items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
