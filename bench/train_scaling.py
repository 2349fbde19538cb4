"""How training cost grows with the data: generated daily bars at several sizes, the
default question (next-bar close from lag features), three regressors, holdout only.

    ./spark-submit.sh bench/train_scaling.py --sizes 10000,100000,1000000
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
from finstream.spark.models import load_params
from finstream.spark.synthetic import random_walk_bars

RESULTS = Path(__file__).resolve().parent / "results"


def measure(spark: SparkSession, size: int, folds: int) -> dict:
    bars = random_walk_bars(spark, size).persist()
    bars.count()  # generation is not what we time
    started = time.perf_counter()
    run = training.run(bars, training.TrainOptions(question="lags", folds=folds), load_params())
    seconds = time.perf_counter() - started
    bars.unpersist()
    return {"bars": size, "tickers": len(run.data["tickers"]), "train_rows": run.data["train_rows"],
            "seconds": round(seconds, 1),
            "holdout_rmse": {k: round(v.holdout.rmse, 4) for k, v in run.results.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--folds", type=int, default=0, help="walk-forward folds (0: holdout only)")
    parser.add_argument("--out", default=str(RESULTS / "train_scaling"))
    args = parser.parse_args()
    spark = SparkSession.builder.appName("finstream-bench-train").getOrCreate()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows.append(measure(spark, size, args.folds))
        print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "train_scaling", "date": datetime.now(timezone.utc).isoformat(),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "spark_master": spark.sparkContext.master, "folds": args.folds, "runs": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    table = ["| bars | tickers | train rows | seconds | s per 100k bars |", "|---:|---:|---:|---:|---:|"]
    table += [f"| {r['bars']:,} | {r['tickers']} | {r['train_rows']:,} | {r['seconds']} | "
              f"{100_000 * r['seconds'] / r['bars']:.1f} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
