"""How training cost grows with the data: generated daily bars at several sizes, each
forecasting question (lags, range, volatility, interval), three regressors, the selection on
the validation slice and the holdout (no walk-forward folds unless asked).

    ./spark-submit.sh bench/train_scaling.py --sizes 10000,100000,1000000 [--questions lags,range]
Writes bench/results/train_scaling.json and .md. A benchmark, never part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

from pyspark.sql import SparkSession

from finstream.spark import training
from finstream.errors import choice_list, comma_list
from finstream.spark.features import FORECASTS, QUESTIONS
from finstream.spark.models import load_params
from finstream.spark.synthetic import random_walk_bars

RESULTS = Path(__file__).resolve().parent / "results"


def measure(spark: SparkSession, size: int, folds: int, question: str = "lags") -> dict:
    bars = random_walk_bars(spark, size).persist()
    bars.count()  # generation is not what we time
    started = time.perf_counter()
    run = training.run(bars, training.TrainOptions(question=question, folds=folds), load_params())
    seconds = time.perf_counter() - started
    bars.unpersist()
    return {"bars": size, "question": question, "tickers": len(run.data["tickers"]),
            "train_rows": run.data["train_rows"], "seconds": round(seconds, 1), "served": run.served,
            "holdout_loss_ratio": {k: round(v.holdout["loss_ratio"], 4) for k, v in run.results.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=comma_list(int), default=(10_000, 100_000, 1_000_000))
    parser.add_argument("--folds", type=int, default=0, help="walk-forward folds (0: holdout only)")
    parser.add_argument("--questions", type=choice_list(tuple(QUESTIONS)), default=FORECASTS)
    parser.add_argument("--out", default=str(RESULTS / "train_scaling"))
    args = parser.parse_args()
    spark = SparkSession.builder.appName("finstream-bench-train").getOrCreate()
    rows = []
    for size in args.sizes:
        for question in args.questions:
            rows.append(measure(spark, size, args.folds, question))
            print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "train_scaling", "date": datetime.now(timezone.utc).isoformat(),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "spark_master": spark.sparkContext.master, "folds": args.folds, "runs": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    table = ["| bars | question | tickers | train rows | seconds | s per 100k bars | served |",
             "|---:|---|---:|---:|---:|---:|---|"]
    table += [f"| {r['bars']:,} | {r['question']} | {r['tickers']} | {r['train_rows']:,} | {r['seconds']} | "
              f"{100_000 * r['seconds'] / r['bars']:.1f} | {r['served']} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
