"""Generated daily bars (geometric random walks), for benchmarks at sizes no sample has."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

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
