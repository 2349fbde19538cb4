"""Where a micro-batch's time goes, in a steady stream: per query, the parts of Spark's trigger
(durationMs: Kafka offsets, planning, the batch itself, the offset and commit logs), and per
Spark stage of those batches its wall time, task run time and CPU time, with the state
operator's own timers. Several variants (environment settings of the stream job) run one
after another in the same run, so they can be compared.

    .venv/bin/python -m bench.batch_breakdown                       # 10 bars/s, the defaults
    .venv/bin/python -m bench.batch_breakdown --rate 10 --seconds 60 \
        --variant default --variant STREAM_STATE_PARTITIONS=2
    .venv/bin/python -m bench.batch_breakdown --variant spark.sql.streaming.noDataMicroBatches.enabled=true

Runs on the local stack (`make up`) in its own topic, indices, checkpoint and model folder per
variant, removed afterwards. Steps per variant: publish 40 minute bars of history for each of
--tickers tickers, start jobs/stream_index.py (trigger 1 s; no model trained: each question's
reference baseline serves every series, the same per-bar work as a champion), wait until it
has caught up, publish at --rate for --seconds, stop it, and read its Spark event log
(uncompressed for this run). Only batches of 1 to 10 x rate rows count: the backlog's first
batch is left out. Writes bench/results/batch_breakdown.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

from bench import flags, report
from bench.cleanup import drop_run_data
from bench.latency import HISTORY, MINUTE_MS, ROOT, Series, isolated_env, publish, wait_for
from finstream.core.config import Settings, local_dir
from finstream.core.errors import ArgumentParser, HelpFormatter, exit_on_user_error, positive, positive_int
from finstream.stores import elastic, topics

# The trigger's parts, in the order Spark runs them (StreamingQueryProgress.durationMs).
TRIGGER_PARTS = ("latestOffset", "getBatch", "queryPlanning", "walCommit", "addBatch", "commitOffsets",
                 "triggerExecution")
# The state operator's timers (SQL metrics, ms): the Python round trip, the state store's commit, removals.
STATE_METRICS = ("time to update", "time to commit changes", "time to remove")


def run_variant(name: str, overrides: dict[str, str], rate: float, seconds: float, tickers: int) -> dict:
    """One stream job with `overrides` in its environment; returns its breakdown."""
    run_id = f"breakdown-{uuid.uuid4().hex[:6]}"
    settings_env, spark_props = split_overrides(overrides)
    spark_conf = [arg for key, value in spark_props.items() for arg in ("--conf", f"{key}={value}")]
    env = {**isolated_env(run_id), **settings_env, "STREAM_TRIGGER_INTERVAL": "1 second"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    settings = Settings.load()
    es = elastic.client(settings)
    topics.ensure_topic(settings)
    log_path = local_dir() / "logs" / f"bench-breakdown-{run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    series = Series(tickers, start_ms=(int(time.time() * 1000) // MINUTE_MS - 2 * 24 * 60) * MINUTE_MS)
    print(f"{name}: {HISTORY} bars x {tickers} tickers of history, then {rate:g} bars/s for {seconds:g} s",
          flush=True)
    publish(settings, series.bars(HISTORY * tickers), None)
    stream = subprocess.Popen(["./spark-submit.sh", "--conf", "spark.eventLog.compress=false", *spark_conf,
                               "jobs/stream_index.py"],
                              cwd=ROOT, env=os.environ.copy(), stdout=log_path.open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        expected = (HISTORY - 20) * tickers
        wait_for(lambda: es.indices.exists(index=settings.es_index_predictions)
                 and elastic.count(es, settings.es_index_predictions) >= expected, 300,
                 f"the stream job to catch up (log: {log_path})", stream)
        publish(settings, series.bars(int(rate * seconds)), rate)
        time.sleep(10)  # the last batches
    finally:
        os.killpg(stream.pid, signal.SIGTERM)
        stream.wait(timeout=60)
        drop_run_data(es, settings)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    event_log = next(Path(env["SPARK_EVENT_LOG_DIR"]).iterdir())
    result = {"variant": name, "overrides": overrides, **breakdown(event_log, max_rows=max(1, int(10 * rate)))}
    if not result["queries"]:
        raise SystemExit(f"{name}: no micro-batch of 1 to {10 * rate:g} rows in {event_log} (log: {log_path})")
    shutil.rmtree(local_dir() / "bench" / run_id, ignore_errors=True)
    return result


def breakdown(event_log: Path, max_rows: int) -> dict:
    """Per query, the medians over its batches of 1..max_rows input rows: durationMs parts, and
    per stage (in job order) wall, task run and CPU time and the state operator's timers."""
    names: dict[str, str] = {}
    batches: dict[str, dict[int, dict]] = defaultdict(dict)  # query -> batch id -> durationMs, rows
    empty: dict[str, list[float]] = defaultdict(list)  # query -> the triggers of its batches without rows
    jobs: list[tuple[str, int, list[int]]] = []
    stages: dict[int, dict] = {}
    with event_log.open() as lines:
        for line in lines:
            if not line.endswith("\n"):
                break  # the last line of a job that was stopped while writing it
            event = json.loads(line)
            kind = event["Event"]
            if kind.endswith("QueryStartedEvent"):
                names[event["id"]] = event["name"]
            elif kind.endswith("QueryProgressEvent"):
                progress = event["progress"]
                rows = sum(source["numInputRows"] for source in progress["sources"])
                if 0 < rows <= max_rows and progress["batchId"] > 0:
                    batches[progress["name"]][progress["batchId"]] = {"rows": rows, **progress["durationMs"]}
                elif rows == 0 and progress["batchId"] > 0:  # a no-data batch (a watermark moved)
                    empty[progress["name"]].append(progress["durationMs"].get("triggerExecution", 0))
            elif kind == "SparkListenerJobStart":
                props = event.get("Properties") or {}
                if props.get("sql.streaming.queryId"):
                    jobs.append((props["sql.streaming.queryId"], int(props["streaming.sql.batchId"]),
                                 event["Stage IDs"]))
            elif kind == "SparkListenerStageCompleted":
                info = event["Stage Info"]
                metrics = {}
                for accumulable in info.get("Accumulables", []):
                    try:
                        metrics[accumulable["Name"]] = float(accumulable["Value"])
                    except (KeyError, TypeError, ValueError):
                        continue
                stages[info["Stage ID"]] = {
                    "tasks": info["Number of Tasks"],
                    "wall_ms": info["Completion Time"] - info["Submission Time"],
                    "run_ms": metrics.get("internal.metrics.executorRunTime", 0.0),
                    "cpu_ms": metrics.get("internal.metrics.executorCpuTime", 0.0) / 1e6,
                    **{key: metrics[key] for key in STATE_METRICS if key in metrics},
                }
    per_stage: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for query_id, batch_id, stage_ids in jobs:
        query = names.get(query_id, query_id)
        if batch_id not in batches.get(query, {}):
            continue
        for position, stage_id in enumerate(sorted(s for s in stage_ids if s in stages)):
            per_stage[(query, position)].append(stages[stage_id])
    result = {}
    for query, by_batch in sorted(batches.items()):
        values = list(by_batch.values())
        result[query] = {
            "batches": len(values),
            "median_rows": statistics.median(v["rows"] for v in values),
            # Spark runs a batch without rows when a stateful query's watermark has moved: it
            # holds the query's cores like any other, before the next data can be read.
            "empty_batches": len(empty.get(query, [])),
            "empty_trigger_ms": statistics.median(empty[query]) if empty.get(query) else 0,
            "trigger_ms": {part: statistics.median(v.get(part, 0) for v in values) for part in TRIGGER_PARTS},
            "stages": [
                {"stage": position, "tasks": statistics.median(s["tasks"] for s in found), "batches": len(found),
                 **{key: round(statistics.median(s.get(key, 0.0) for s in found), 1)
                    for key in ("wall_ms", "run_ms", "cpu_ms", *STATE_METRICS) if any(key in s for s in found)}}
                for (name, position), found in sorted(per_stage.items()) if name == query
            ],
        }
    return {"queries": result}


def table(results: list[dict]) -> str:
    lines = ["| variant | query | batches (median rows) | trigger ms: " + " / ".join(TRIGGER_PARTS)
             + " | stages: tasks, wall / task run / CPU ms (state: update / commit / remove) "
             "| batches without rows: count, median trigger ms |",
             "|---|---|---|---|---|---|"]
    for result in results:
        for query, q in result["queries"].items():
            parts = " / ".join(f"{q['trigger_ms'][p]:.0f}" for p in TRIGGER_PARTS)
            stages = "; ".join(
                f"{s['tasks']:g}: {s['wall_ms']:.0f} / {s['run_ms']:.0f} / {s['cpu_ms']:.0f}"
                + (f" ({s.get('time to update', 0):.0f} / {s.get('time to commit changes', 0):.0f} / "
                   f"{s.get('time to remove', 0):.0f})" if "time to update" in s else "")
                for s in q["stages"])
            lines.append(f"| {result['variant']} | {query} | {q['batches']} ({q['median_rows']:g}) | {parts} | "
                         f"{stages} | {q.get('empty_batches', 0)}, {q.get('empty_trigger_ms', 0):.0f} |")
    return "\n".join(lines) + "\n"


# What every variant sets itself: its own topic, indices, folders and the 1 s trigger. A variant
# naming one of these could point the run, and its clean-up, at a real pipeline's data.
RESERVED = frozenset([*isolated_env("x"), "STREAM_TRIGGER_INTERVAL"])
RESERVED_SPARK = frozenset(["spark.eventLog.enabled", "spark.eventLog.dir", "spark.eventLog.compress"])


def split_overrides(overrides: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """A variant's overrides as (the job's environment settings, Spark properties)."""
    spark = {key: value for key, value in overrides.items() if key.startswith("spark.")}
    return {key: value for key, value in overrides.items() if key not in spark}, spark


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """`default`, or KEY=VALUE[,KEY=VALUE...]: settings of conf/pipeline.toml for the stream job,
    or Spark properties (`spark.…`, given to spark-submit as --conf).

    Raises:
        argparse.ArgumentTypeError: not a setting, one the benchmark sets itself (RESERVED), or a
            value of the wrong type (argparse prints it on one line and exits 2).
    """
    if text == "default":
        return text, {}
    known = {field.name.upper() for field in dataclasses.fields(Settings)}
    overrides = {}
    for part in text.split(","):
        key, equals, value = part.partition("=")
        if equals and key.startswith("spark.") and value:
            if key in RESERVED_SPARK:
                raise argparse.ArgumentTypeError(f"{key} is set by the benchmark itself (it reads the event log)")
            overrides[key] = value
            continue
        if not equals or key not in known:
            raise argparse.ArgumentTypeError(f"{part!r} is not KEY=VALUE with KEY a setting of conf/pipeline.toml "
                                             "or a Spark property (spark.…)")
        if key in RESERVED:
            raise argparse.ArgumentTypeError(f"{key} is set by the benchmark itself (its own topic, indices, "
                                             "folders and trigger)")
        overrides[key] = value
    try:
        Settings.load(environ=split_overrides(overrides)[0])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text, overrides


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--rate", type=positive, default=10.0, help="bars per second")
    parser.add_argument("--seconds", type=positive, default=60, help="seconds of feed per variant")
    parser.add_argument("--tickers", type=positive_int, default=100, help="series in the feed")
    parser.add_argument("--variant", action="append", type=parse_variant,
                        help="`default` or KEY=VALUE,... for the stream job (repeat to compare; default: default)")
    flags.add_out(parser, "batch_breakdown")
    args = parser.parse_args()
    settings = Settings.load()
    elastic.require_cluster(elastic.client(settings), settings)
    results = [run_variant(name, overrides, args.rate, args.seconds, args.tickers)
               for name, overrides in (args.variant or [("default", {})])]
    result = {**report.run_info("batch_breakdown"), "rate": args.rate, "seconds": args.seconds,
              "tickers": args.tickers, "trigger": "1 second", "variants": results}
    report.write(args.out, result, table(results))
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
