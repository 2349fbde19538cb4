"""How training cost grows with the data: generated daily bars at several sizes, each
forecasting question (lags, range, volatility, interval), three regressors, the selection on
the validation slice and the holdout (no walk-forward folds unless asked).

    ./spark-submit.sh bench/train_scaling.py --sizes 10000,100000,1000000 [--questions lags,range]
Writes bench/results/train_scaling.json and .md. A benchmark, never part of `make test`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

# spark-submit runs this file by its path: the project's root is not on the path, bench/ is.
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from bench import flags, report  # noqa: E402
from finstream.core.errors import (
    ArgumentParser,
    HelpFormatter,
    choice_list,
    comma_list,
    exit_on_user_error,
    non_negative_int,
    positive_int,
)
from finstream.core.questions import QUESTIONS, SERVED
from finstream.training import selection
from finstream.training.regressors import load_params

# Generated daily bars (geometric random walks): sizes no sample has. Spark built-ins only, so
# nothing here needs to reach the executors.
DAY_MS = 86_400_000
START_MS = 946_706_400_000  # 2000-01-01 05:00 UTC


def random_walk_bars(spark: SparkSession, bars: int, bars_per_ticker: int = 2500, seed: int = 7) -> DataFrame:
    """`bars` valid daily bars over ceil(bars / bars_per_ticker) tickers."""
    tickers = max(1, -(-bars // bars_per_ticker))
    steps = spark.range(bars).select(
        F.concat(F.lit("SYN"), (F.col("id") % tickers).cast("string")).alias("ticker"),
        (F.col("id") / tickers).cast("long").alias("step"),
        (F.randn(seed) * 0.015 + 0.0003).alias("log_return"),
        F.rand(seed + 1).alias("u1"), F.rand(seed + 2).alias("u2"), F.randn(seed + 3).alias("z"),
    )
    path = Window.partitionBy("ticker").orderBy("step").rowsBetween(Window.unboundedPreceding, 0)
    priced = steps.withColumn("close", 50 * F.exp(F.sum("log_return").over(path)))
    opened = priced.withColumn("open", F.col("close") * F.exp(-F.col("log_return") * F.col("u1")))
    return opened.select(
        "ticker", F.lit("day").alias("timespan"), F.lit(1).alias("multiplier"),
        (F.lit(START_MS) + F.col("step") * DAY_MS).alias("timestamp"),
        "open",
        (F.greatest("open", "close") * (1 + 0.01 * F.col("u2"))).alias("high"),
        (F.least("open", "close") * (1 - 0.01 * F.col("u1"))).alias("low"),
        "close",
        F.round(F.exp(F.col("z") * 0.4 + 14)).alias("volume"),
        F.lit(None).cast("double").alias("vwap"),
    )


def measure(spark: SparkSession, size: int, folds: int, question: str = "lags") -> dict:
    bars = random_walk_bars(spark, size).persist()
    bars.count()  # generation is not what we time
    started = time.perf_counter()
    run = selection.run(bars, selection.TrainOptions(question=question, folds=folds), load_params())
    seconds = time.perf_counter() - started
    bars.unpersist()
    return {"bars": size, "question": question, "tickers": len(run.data["tickers"]),
            "train_rows": run.data["train_rows"], "seconds": round(seconds, 1), "served": run.served,
            "holdout_loss_ratio": {k: round(v.holdout["loss_ratio"], 4) for k, v in run.results.items()}}


def main() -> None:
    parser = ArgumentParser(prog="./spark-submit.sh bench/train_scaling.py", description=__doc__,
                            formatter_class=HelpFormatter)
    parser.add_argument("--sizes", type=comma_list(positive_int), default="10000,100000,1000000",
                        help="daily bars per run, comma-separated")
    parser.add_argument("--folds", type=non_negative_int, default=0, help="walk-forward folds (0: holdout only)")
    parser.add_argument("--questions", type=choice_list(tuple(QUESTIONS)), default=",".join(SERVED),
                        help="forecasting questions to time, comma-separated")
    flags.add_out(parser, "train_scaling")
    args = parser.parse_args()
    spark = SparkSession.builder.appName("finstream-bench-train").getOrCreate()
    rows = []
    for size in args.sizes:
        for question in args.questions:
            rows.append(measure(spark, size, args.folds, question))
            print(json.dumps(rows[-1]), flush=True)
    result = {**report.run_info("train_scaling"), "spark_master": spark.sparkContext.master, "folds": args.folds,
              "runs": rows}
    table = ["| bars | question | tickers | train rows | seconds | s per 100k bars | served |",
             "|---:|---|---:|---:|---:|---:|---|"]
    table += [f"| {r['bars']:,} | {r['question']} | {r['tickers']} | {r['train_rows']:,} | {r['seconds']} | "
              f"{100_000 * r['seconds'] / r['bars']:.1f} | {r['served']} |" for r in rows]
    report.write(args.out, result, "\n".join(table) + "\n")


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
