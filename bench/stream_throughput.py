"""Throughput of jobs/stream_index.py on a backlog: N generated minute bars published first,
then one --available-now run; the rate is N over the micro-batches' duration (from the
queries' own progress metrics, so Spark's start-up is not counted). The CPU seconds of the
job's processes by role (its JVM, its Python driver, the state step's Python workers) and of
the local Kafka and Elasticsearch over the run say what bounds it (bench/cpu.py).
With --running, the job runs on (trigger 1 s), as after a restart on a backlog, and is
stopped once every bar is searchable; that time from launch is reported too.

    .venv/bin/python -m bench.stream_throughput --bars 200000 --tickers 200 [--predict] [--running]
Runs on the local stack (`make up`) in its own topic, indices and checkpoint, removed
afterwards. Writes bench/results/stream_throughput[-predict].{json,md}. A run of 200 000 bars
takes about 3 minutes on 2 cores with --predict (training included).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import flags, report
from bench import latency as L  # the latency benchmark's generator, isolation and clean-up
from bench.cpu import TreeCpu, server_cpu_seconds, server_cpu_spent
from finstream.core.errors import ArgumentParser, HelpFormatter, exit_on_user_error, positive_int
from finstream.stores import elastic

BENCH = Path(__file__).resolve().parent


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--bars", type=positive_int, default=200_000, help="generated minute bars in the backlog")
    parser.add_argument("--tickers", type=positive_int, default=200, help="series the bars spread over")
    parser.add_argument("--predict", action="store_true", help="with the predict-bars query and a trained model")
    parser.add_argument("--running", action="store_true",
                        help="run the job on (trigger 1 s) and stop it once every bar is searchable")
    parser.add_argument("--out", type=flags.results_path, help="results path, without .json/.md "
                        "(default bench/results/stream_throughput[-predict])")
    args = parser.parse_args()

    run_id, settings, es = L.isolated_run()
    series = L.Series(args.tickers, start_ms=(int(time.time() * 1000) // L.MINUTE_MS - 30 * 24 * 60) * L.MINUTE_MS)
    try:
        started = time.time()
        L.publish(settings, series.bars(args.bars), None)
        publish_s = time.time() - started
        if args.predict:
            subprocess.run(["./spark-submit.sh", "jobs/train.py", "--models", "linear",
                            "--folds", "0", "--timespan", "minute", "--no-plots", "--report-dir",
                            f"bench/{run_id}/report"], cwd=L.ROOT, check=True, capture_output=True)
        job = ["./spark-submit.sh", "jobs/stream_index.py", *(["--trigger", "1 second"] if args.running
                                                             else ["--available-now"])]
        job += [] if args.predict else ["--no-predict"]
        servers = {name: server_cpu_seconds(name) for name in ("kafka", "elasticsearch")}
        started = time.time()
        searchable_s = predicted_s = None
        process = subprocess.Popen(job, cwd=L.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        with TreeCpu(process.pid) as tree:
            if args.running:
                searchable, predicted, output = running_until_searchable(process, es, settings, args.bars,
                                                                         args.predict)
                searchable_s = searchable - started
                predicted_s = None if predicted is None else predicted - started
            else:
                output, _ = process.communicate()
        wall_s = time.time() - started
        if process.returncode != 0 and not args.running:
            raise SystemExit(f"the stream job failed (exit {process.returncode}):\n{output.decode()[-3000:]}")
        spent = {name: server_cpu_spent(name, before) for name, before in servers.items()}
        cpu_s = {"job": tree.totals(), **{name: seconds for name, seconds in spent.items() if seconds is not None}}
        assert elastic.count(es, settings.es_index_bars) == args.bars
        es.indices.refresh(index=settings.es_index_pipeline_metrics)
        hits = es.search(index=settings.es_index_pipeline_metrics, size=10_000)["hits"]["hits"]
        busy: dict[str, float] = {}
        batches: dict[str, int] = {}
        for hit in hits:
            doc = hit["_source"]
            if doc.get("input_rows"):
                busy[doc["query"]] = busy.get(doc["query"], 0.0) + doc["batch_duration_ms"] / 1000
                batches[doc["query"]] = batches.get(doc["query"], 0) + 1
        predictions = elastic.count(es, settings.es_index_predictions) if args.predict else 0
    finally:
        L.cleanup(es, settings, run_id)

    result = {**report.run_info("stream_throughput"), "bars": args.bars,
              "tickers": args.tickers, "predict": args.predict, "predictions": predictions, "running": args.running,
              "catch_up_records": settings.stream_catch_up_records if args.running else None,
              "searchable_s": None if searchable_s is None else round(searchable_s, 1),
              "predicted_s": None if predicted_s is None else round(predicted_s, 1),
              "publish_bars_per_s": round(args.bars / publish_s),
              "job_wall_s": round(wall_s, 1), "cpu_s": cpu_s, "cores": os.cpu_count(),
              "batch_s": {q: round(s, 1) for q, s in busy.items()}, "batches": batches,
              "bars_per_s": {q: round(args.bars / s) for q, s in busy.items()}}
    out = args.out or BENCH / "results" / ("stream_throughput-predict" if args.predict else "stream_throughput")
    report.write(out, result, markdown(result))
    return 0


def running_until_searchable(process: subprocess.Popen, es, settings, bars: int,
                             predict: bool) -> tuple[float, float | None, bytes]:
    """Waits (polling every 0.5 s, no refresh of its own) until the bars index holds `bars`
    searchable documents, and then until index-bars' progress documents count them all (a
    batch's progress follows its commit), and predict-bars' too when `predict`; then stops the
    running job (SIGTERM to its process group). Returns when the bars were searchable, when
    predict-bars had committed them all (time.time(); None without `predict`), and the job's
    output."""
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(process.stdout.read()), daemon=True)
    reader.start()
    try:
        # The job makes the indices: until then, nothing is searchable.
        L.wait_for(lambda: es.count(index=settings.es_index_bars, ignore_unavailable=True)["count"] >= bars, 1800,
                   f"{bars} bars searchable", process)
        searchable = time.time()
        L.wait_for(lambda: progress_rows(es, settings.es_index_pipeline_metrics, "index-bars") >= bars, 120,
                   "index-bars' progress documents", process)
        predicted = None
        if predict:
            L.wait_for(lambda: progress_rows(es, settings.es_index_pipeline_metrics, "predict-bars") >= bars, 1800,
                       "predict-bars' progress documents", process)
            predicted = time.time()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:  # never leave a job holding the shared cores
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
        reader.join(30)
    return searchable, predicted, b"".join(output)


def progress_rows(es, index: str, query: str) -> int:
    """The input rows of `query`'s progress documents in `index` (refreshed first)."""
    es.indices.refresh(index=index, ignore_unavailable=True)
    result = es.search(index=index, size=0, ignore_unavailable=True, query={"term": {"query": query}},
                       aggs={"rows": {"sum": {"field": "input_rows"}}})
    return int(result["aggregations"]["rows"]["value"] or 0) if "aggregations" in result else 0


def markdown(result: dict) -> str:
    """The run as a table: each query's rate over its busy time, and the CPU seconds by process."""
    how = ("a running job (trigger 1 s)" + (f", STREAM_CATCH_UP_RECORDS={result['catch_up_records']}"
                                            if result.get("catch_up_records") is not None else "")
           if result.get("running") else "one --available-now run")
    searchable = (f" Every bar searchable {result['searchable_s']} s after launch"
                  + (f", every bar through predict-bars {result['predicted_s']} s after"
                     if result.get("predicted_s") is not None else "") + "."
                  if result.get("searchable_s") is not None else "")
    lines = [f"Backlog of {result['bars']:,} minute bars over {result['tickers']} tickers, {how}"
             f"{' with predict-bars' if result['predict'] else ''}; commit {result['commit']}, "
             f"{result['date'][:16]} UTC, {result['cores']} cores. Job wall time {result['job_wall_s']} s."
             f"{searchable}", "",
             "| query | bars/s | micro-batches | busy (s) |", "|---|---:|---:|---:|"]
    for query, rate in sorted(result["bars_per_s"].items()):
        lines.append(f"| {query} | {rate:,} | {result['batches'][query]} | {result['batch_s'][query]} |")
    cpu = result["cpu_s"]
    parts = [f"{role} {seconds}" for role, seconds in cpu.get("job", {}).items()]
    parts += [f"{name} {seconds}" for name, seconds in cpu.items() if name != "job"]
    lines += ["", f"CPU seconds over the run: {', '.join(parts)}."]
    if result["predict"]:
        lines.append(f"Predictions indexed: {result['predictions']:,}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
