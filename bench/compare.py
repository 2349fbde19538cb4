"""Throughput of the stream job beside what a user would otherwise write, on the same Kafka
topic and the same Elasticsearch, each method into its own fresh index.

    make bench                                   # 1 000 000 bars, then the latency benchmark
    .venv/bin/python -m bench.compare --bars 100000 [--methods stream_index,bulk] [--refresh 30s]

Needs the local stack (`make up`).

Steps: generate N minute bars (--tickers series) and publish them with the producer's own
publisher; then, one method at a time, start it as a process and watch its index's document
count every 50 ms. A method's rate is the documents that became searchable between the first
and the last poll that saw new ones, over that time (its start-up, and the ceiling's
serialisation, are not counted; the wall time from process start is reported beside).
`one_by_one` is time-boxed (--one-by-one-seconds, then SIGTERM): at its rate a million bars
take hours. CPU seconds and peak RSS are the method's process tree's (`wait4`), and the
Elasticsearch server's CPU seconds over the same run. Before the first method, --warm-up
documents are bulk-indexed into a throwaway index: on a freshly started Elasticsearch the first
method was charged 24-28 ms more CPU per 1 000 documents than when it ran later (`helpers.bulk`
72.8 first, 45.1 third; bench/results/tuning.md), most likely the server's JIT warming up.

Methods: stream_index (jobs/stream_index.py --available-now --no-predict, ES-Hadoop) and
bench/methods.py's one_by_one, bulk, parallel_bulk and ceiling. Writes bench/results/compare.{json,md}.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from elasticsearch import helpers

from bench import flags, report
from bench import latency as L  # the bar generator, publisher, count watcher, isolation, clean-up
from bench.cpu import server_cpu_seconds, server_cpu_spent
from bench.methods import CHUNK, document
from finstream.core.config import Settings, local_dir
from finstream.core.errors import (
    ArgumentParser,
    HelpFormatter,
    choice_list,
    exit_on_user_error,
    non_negative_int,
    positive,
    positive_int,
)
from finstream.stores import elastic

BENCH = Path(__file__).resolve().parent

METHODS = ("stream_index", "one_by_one", "bulk", "parallel_bulk", "ceiling")


def command(method: str, index: str, expected: int, spark_conf: list[str]) -> list[str]:
    if method == "stream_index":
        confs = [arg for kv in spark_conf for arg in ("--conf", kv)]
        return ["./spark-submit.sh", *confs, "jobs/stream_index.py", "--available-now", "--no-predict"]
    return [sys.executable, "-m", "bench.methods", method, "--index", index, "--expected", str(expected)]


def sustained(timeline: list[tuple[float, int]], started: float) -> tuple[int, float, float]:
    """(documents, seconds, documents/s) between the first and the last poll that saw growth.
    A run so short that everything became visible at once is timed from its process start."""
    growth = [(t, n) for (t, n), (_, before) in zip(timeline[1:], timeline, strict=False) if n > before]
    first = next(((t, n) for t, n in timeline if n > 0), None)
    if not growth or first is None:
        return 0, 0.0, 0.0
    (t0, n0), (t1, n1) = first, growth[-1]
    if t1 <= t0:
        t0, n0 = started, 0
    return n1, t1 - t0, (n1 - n0) / (t1 - t0)


def first_batch_start(es, settings: Settings) -> float | None:
    """When the stream job's first micro-batch began (its progress event), epoch seconds."""
    es.indices.refresh(index=settings.es_index_pipeline_metrics)
    hits = es.search(index=settings.es_index_pipeline_metrics, size=1, sort=[{"timestamp": "asc"}],
                     query={"term": {"query": "index-bars"}})["hits"]["hits"]
    if not hits:
        return None
    return datetime.fromisoformat(hits[0]["_source"]["timestamp"].replace("Z", "+00:00")).timestamp()


def serialised_at(log_path: Path) -> float | None:
    """When the ceiling method had its _bulk bodies ready (it prints the moment)."""
    for line in log_path.read_text().splitlines():
        if '"serialised"' in line:
            return json.loads(line)["at"]
    return None


def warm_up(es, settings: Settings, documents: int) -> None:
    """Bulk-indexes `documents` generated bar documents (the stream job's mapping) into a
    throwaway index, then deletes it, so that no measured method pays the server's JIT warm-up."""
    if documents <= 0:
        return
    index = f"{settings.es_index_bars}-warm-up"
    elastic.ensure_indices(es, replace(settings, es_index_bars=index), only=[index])
    now = int(time.time() * 1000)
    series = L.Series(1_000, start_ms=now // L.MINUTE_MS * L.MINUTE_MS, prefix="WARM")
    actions = ({"_index": index, "_id": bar.doc_id, "_source": document(bar, now, 0, offset)}
               for offset, bar in enumerate(series.bars(documents)))
    try:
        helpers.bulk(es, actions, chunk_size=CHUNK)
    finally:
        es.options(ignore_status=404).indices.delete(index=index)
        es.options(ignore_status=404).indices.delete_index_template(name=index)


def run_method(method: str, settings: Settings, es, expected: int, box_seconds: float, log_dir: Path,
               refresh: str = "", spark_conf: list[str] = ()) -> dict:
    index = f"{settings.es_index_bars}-{method.replace('_', '-')}"
    method_settings = replace(settings, es_index_bars=index)
    elastic.ensure_indices(es, method_settings, only=[index])
    if refresh:
        es.indices.put_settings(index=index, settings={"refresh_interval": refresh})
    env = {**os.environ, "ES_INDEX_BARS": index,
           "CHECKPOINT_DIR": str(Path(os.environ["CHECKPOINT_DIR"]) / method)}
    try:
        watcher = L.CountWatcher(es, [index])
        es_cpu, kafka_cpu = server_cpu_seconds("elasticsearch"), server_cpu_seconds("kafka")
        log_path = log_dir / f"{method}.log"
        started = time.time()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command(method, index, expected, list(spark_conf)), cwd=L.ROOT, env=env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        watcher.start()
        deadline = started + (box_seconds if method == "one_by_one" else 3_600)
        # wait4, not Popen.poll: reaping the process must also return its resource usage.
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        while pid == 0 and time.time() < deadline and watcher.last(index) < expected:
            time.sleep(0.2)
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid == 0:
            if method == "one_by_one":
                os.killpg(process.pid, signal.SIGTERM)  # time box: it finishes the current bar and reports
            pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            watcher.stop()
            raise SystemExit(f"{method} failed (exit {process.returncode}); see {log_path}")
        # Everything the process wrote becomes searchable within one refresh interval.
        final = elastic.count(es, index)
        L.wait_for(lambda: watcher.last(index) >= final, 120, f"{method}'s {final} documents to be counted")
        watcher.stop()
        wall = time.time() - started
        documents, seconds, rate = sustained(watcher.timelines[index], started)
        # From the moment the method began on the data (the stream job: its first micro-batch,
        # not the JVM start; the ceiling: its bodies ready; the others: their process start)
        # to the last document searchable.
        began = {"stream_index": lambda: first_batch_start(es, settings),
                 "ceiling": lambda: serialised_at(log_path)}.get(method, lambda: started)()
        last_visible = max(t for t, n in watcher.timelines[index] if n == final)
        overall = final / (last_visible - began) if began and last_visible > began else float("nan")
        es_cpu_s, kafka_cpu_s = server_cpu_spent("elasticsearch", es_cpu), server_cpu_spent("kafka", kafka_cpu)
        if method != "one_by_one" and final != expected:
            raise SystemExit(f"{method} indexed {final} of {expected} bars; see {log_path}")
    finally:
        es.options(ignore_status=404).indices.delete(index=index)
        es.options(ignore_status=404).indices.delete_index_template(name=index)
    return {
        "method": method, "documents": final, "seconds": round(seconds, 2), "records_per_s": round(rate),
        "records_per_s_from_start": round(overall) if overall == overall else None,
        "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "es_cpu_s": es_cpu_s, "kafka_cpu_s": kafka_cpu_s,
    }


def table(result: dict) -> str:
    """From start and wall time first (all of a method's work counted); the searchable span,
    which leaves out the stream job's first pass, only as a secondary column."""
    rows = result["methods"]
    start_reference = next((r["records_per_s_from_start"] for r in rows if r["method"] == "stream_index"), None)
    lines = [f"{result['bars']:,} minute bars of {result['tickers']} tickers; {result['machine']['cpus']} cores; "
             f"{result['date'][:10]}; index refresh {result['refresh']}"
             + (f"; Elasticsearch warmed up with {result['warm_up_documents']:,} documents first"
                if result.get("warm_up_documents") else ""),
             "",
             "| method | documents | records/s from start | stream_index / method | wall s | "
             "ES CPU ms per 1 000 docs | records/s, searchable span | CPU s | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        from_start = r["records_per_s_from_start"]
        ratio = f"{start_reference / from_start:.2f}" if start_reference and from_start else "-"
        shown = f"{from_start:,}" if from_start else "-"
        es_per_k = f"{1000 * 1000 * r['es_cpu_s'] / r['documents']:.1f}" if r["es_cpu_s"] and r["documents"] else "-"
        lines.append(f"| {r['method']} | {r['documents']:,} | {shown} | {ratio} | {r['wall_s']} | {es_per_k} | "
                     f"{r['records_per_s']:,} | {r['cpu_s']} | {r['peak_rss_mb']:,} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--bars", type=positive_int, default=1_000_000, help="generated minute bars in the topic")
    parser.add_argument("--tickers", type=positive_int, default=1_000, help="series the bars spread over")
    parser.add_argument("--methods", type=choice_list(METHODS), default=",".join(METHODS),
                        help="indexing methods to run, comma-separated, in this order")
    parser.add_argument("--one-by-one-seconds", type=positive, default=60,
                        help="time box of the one-request-per-bar method (its rate is extrapolated)")
    parser.add_argument("--refresh", type=flags.refresh_interval,
                        help="index refresh_interval for every method (default: the template's)")
    parser.add_argument("--warm-up", type=non_negative_int, default=200_000, metavar="DOCUMENTS",
                        help="documents bulk-indexed into a throwaway index before the first method (0: none)")
    parser.add_argument("--spark-conf", type=flags.spark_conf, action="append", default=[], metavar="spark.KEY=VALUE",
                        help="extra --conf for the stream job (tuning experiments); repeatable")
    flags.add_out(parser, "compare")
    args = parser.parse_args()
    methods = args.methods

    run_id, settings, es = L.isolated_run()
    es = es.options(request_timeout=120)
    log_dir = local_dir() / "logs" / f"bench-compare-{run_id}"  # kept after the clean-up
    log_dir.mkdir(parents=True, exist_ok=True)
    series = L.Series(args.tickers, start_ms=(int(time.time() * 1000) // L.MINUTE_MS - 60 * 24 * 60) * L.MINUTE_MS)
    rows = []
    try:
        started = time.time()
        L.publish(settings, series.bars(args.bars), None)
        publish_rate = args.bars / (time.time() - started)
        print(f"published {args.bars:,} bars at {publish_rate:,.0f}/s", flush=True)
        warm_up(es, settings, args.warm_up)
        for method in methods:
            row = run_method(method, settings, es, args.bars, args.one_by_one_seconds, log_dir, args.refresh or "",
                             args.spark_conf)
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        L.cleanup(es, settings, run_id)

    result = {**report.run_info("compare"), "bars": args.bars,
              "tickers": args.tickers, "refresh": args.refresh or "1s", "publish_bars_per_s": round(publish_rate),
              "one_by_one_seconds": args.one_by_one_seconds, "warm_up_documents": args.warm_up, "methods": rows}
    report.write(args.out, result, table(result))
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
