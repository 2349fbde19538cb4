"""What validating a message costs the JVM, outside the stream job: finstream.ingest.validation's
checked_messages over N valid bar messages in a local Spark batch (no Kafka or Elasticsearch
needed), as it is, with each of the two
rules that may read the whole text again (one JSON value; duplicate field) left out, and with
one or both rules reading every text again (their shortcuts for a plain bar left out); on bars
with every field set, and on bars without vwap and trade count (null), for which the
duplicate-field rule's shortcut does not apply.

    .venv/bin/python -m bench.validation_cost
    .venv/bin/python -m bench.validation_cost --messages 500000 --repeats 7 --out /tmp/validation_cost

Each form runs --repeats times, in turn, after one unmeasured run each (the JIT and Spark's code
cache); µs per message is the wall time of the batch (local[*]: every core) over N. The messages
are the latency benchmark's generated minute bars, serialised as the producer does (Bar.to_json),
cached in memory before the timing. Writes bench/results/validation_cost.{json,md}.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable
from unittest import mock

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bench import flags, report
from bench import latency as L
from finstream.core.errors import ArgumentParser, HelpFormatter, exit_on_user_error, positive_int
from finstream.core.schema import Bar
from finstream.ingest import validation as B

NOW_MS = 1_800_000_000_000  # after every generated bar: the future-timestamp rule passes

FORMS: dict[str, dict[str, Callable]] = {
    "as is": {},
    "without the one-value rule": {"_one_value": lambda: F.lit(True)},
    "without the duplicate-field rule": {"_duplicate_field": lambda: F.lit(False)},
    "without the duplicate-field shortcut": {"_names_no_field_twice": lambda: F.lit(False)},
    # Both rules reading every text again, as they did before their shortcuts.
    "without the shortcuts": {"_closes_at_the_end": lambda: F.lit(False),
                              "_names_no_field_twice": lambda: F.lit(False)},
}


# The generated bars have no vwap or trade count (null in their JSON, as an index's or a WebSocket
# bar's are); a stock bar from the aggregates endpoint has both.
KINDS: dict[str, Callable[[Bar], Bar]] = {
    "every field set": lambda bar: dataclasses.replace(bar, vwap=bar.close, transactions=1 + int(bar.volume) // 100),
    "vwap and trade count null": lambda bar: bar,
}


def records(spark: SparkSession, messages: int, kind: str = "every field set") -> DataFrame:
    """`messages` valid bars of `kind` (a KINDS key) as Kafka source rows (key, value, topic, partition,
    offset, timestamp), cached."""
    series = L.Series(1_000, start_ms=1_717_459_200_000)
    rows = [(bar.key, KINDS[kind](bar).to_json(), "bench", 0, offset, bar.timestamp)
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
    """Per kind of bar, µs per message of each form: median, min and max over `repeats` runs."""
    result = {}
    for kind in KINDS:
        frame = records(spark, messages, kind)
        times: dict[str, list[float]] = {form: [] for form in FORMS}
        for form in FORMS:
            seconds(frame, form)  # unmeasured
        for _ in range(repeats):
            for form in FORMS:
                times[form].append(seconds(frame, form))
        frame.unpersist()
        per_message = {form: [1e6 * t / messages for t in runs] for form, runs in times.items()}
        result[kind] = {form: report.summary(v) for form, v in per_message.items()}
    return result


def table(result: dict) -> str:
    lines = [f"{result['messages']:,} valid minute bars, local[{result['parallelism']}], {result['repeats']} runs "
             f"each; {result['date'][:10]}",
             "",
             "µs per message, median (min-max):",
             "",
             "| checked_messages | " + " | ".join(result["kinds"]) + " |",
             "|---|" + "---:|" * len(result["kinds"])]
    for form in FORMS:
        cells = [result["kinds"][kind][form] for kind in result["kinds"]]
        lines.append(f"| {form} | " + " | ".join(f"{v['median']} ({v['min']}-{v['max']})" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--messages", type=positive_int, default=200_000, help="valid bar messages checked per run")
    parser.add_argument("--repeats", type=positive_int, default=5, help="measured runs of each form")
    flags.add_out(parser, "validation_cost")
    args = parser.parse_args()
    spark = report.local_spark("bench-validation-cost", **{"spark.sql.shuffle.partitions": "2"})
    kinds = measure(spark, args.messages, args.repeats)
    result = {**report.run_info("validation_cost"), "messages": args.messages, "repeats": args.repeats,
              "parallelism": spark.sparkContext.defaultParallelism, "kinds": kinds}
    report.write(args.out, result, table(result))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
