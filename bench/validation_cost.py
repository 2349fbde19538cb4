"""What validating a message costs the JVM, outside the stream job: finstream.ingest.validation's
checked_messages over N valid bar messages in a local Spark batch (no Kafka or Elasticsearch
needed), as it is, with each of the two
rules that may read the whole text again (one JSON value; duplicate field) left out, and with
both rules reading every text again (their shortcuts for a plain bar left out).

    .venv/bin/python -m bench.validation_cost
    .venv/bin/python -m bench.validation_cost --messages 500000 --repeats 7 --out /tmp/validation_cost

Each form runs --repeats times, in turn, after one unmeasured run each (the JIT and Spark's code
cache); µs per message is the wall time of the batch (local[*]: every core) over N. The messages
are the latency benchmark's generated minute bars, serialised as the producer does (Bar.to_json),
cached in memory before the timing. Writes bench/results/validation_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from unittest import mock

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bench import latency as L
from bench import report
from finstream.ingest import validation as B

NOW_MS = 1_800_000_000_000  # after every generated bar: the future-timestamp rule passes

FORMS: dict[str, dict[str, Callable]] = {
    "as is": {},
    "without the one-value rule": {"_one_value": lambda: F.lit(True)},
    "without the duplicate-field rule": {"_duplicate_field": lambda: F.lit(False)},
    # Both rules reading every text again, as they did before their shortcuts.
    "without the shortcuts": {"_closes_at_the_end": lambda: F.lit(False),
                              "_names_no_field_twice": lambda: F.lit(False)},
}


def records(spark: SparkSession, messages: int) -> DataFrame:
    """`messages` valid bars as Kafka source rows (key, value, topic, partition, offset, timestamp), cached."""
    series = L.Series(1_000, start_ms=1_717_459_200_000)
    rows = [(bar.key, bar.to_json(), "bench", 0, offset, bar.timestamp)
            for offset, bar in enumerate(series.bars(messages))]
    frame = spark.createDataFrame(rows, "key binary, value binary, topic string, partition int, offset long, "
                                        "published long")
    frame = frame.select("key", "value", "topic", "partition", "offset",
                         (F.col("published") / 1000).cast("timestamp").alias("timestamp"))
    frame = frame.repartition(spark.sparkContext.defaultParallelism).cache()
    frame.count()
    return frame


def seconds(frame: DataFrame, form: str) -> float:
    """Wall seconds to check every record of `frame` under `form`; raises if any is refused."""
    with mock.patch.multiple(B, **FORMS[form]) if FORMS[form] else contextlib.nullcontext():
        checked = B.checked_messages(frame, now_ms=F.lit(NOW_MS))
        started = time.perf_counter()
        row = checked.select(F.count("*").alias("n"), F.sum(F.size("reasons")).alias("reasons")).collect()[0]
        elapsed = time.perf_counter() - started
    if row.reasons != 0:
        raise AssertionError(f"{form}: {row.reasons} reasons on valid bars")
    return elapsed


def measure(spark: SparkSession, messages: int, repeats: int) -> dict:
    """µs per message of each form: median, min and max over `repeats` runs."""
    frame = records(spark, messages)
    times: dict[str, list[float]] = {form: [] for form in FORMS}
    for form in FORMS:
        seconds(frame, form)  # unmeasured
    for _ in range(repeats):
        for form in FORMS:
            times[form].append(seconds(frame, form))
    frame.unpersist()
    per_message = {form: [1e6 * t / messages for t in runs] for form, runs in times.items()}
    return {form: {"median": round(statistics.median(v), 2), "min": round(min(v), 2), "max": round(max(v), 2)}
            for form, v in per_message.items()}


def table(result: dict) -> str:
    lines = [f"{result['messages']:,} valid minute bars, local[{result['parallelism']}], {result['repeats']} runs "
             f"each; {result['date'][:10]}",
             "",
             "| checked_messages | µs per message, median | min | max |",
             "|---|---:|---:|---:|"]
    for form, v in result["forms"].items():
        lines.append(f"| {form} | {v['median']} | {v['min']} | {v['max']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(L.RESULTS / "validation_cost"))
    args = parser.parse_args()
    spark = (SparkSession.builder.master("local[*]").appName("bench-validation-cost")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    forms = measure(spark, args.messages, args.repeats)
    result = {**report.run_info("validation_cost"), "messages": args.messages, "repeats": args.repeats,
              "parallelism": spark.sparkContext.defaultParallelism, "forms": forms}
    report.write(args.out, result, table(result))
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
