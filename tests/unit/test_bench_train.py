"""Smoke run of the training benchmark's harness on a tiny size (not a timing test)."""

from __future__ import annotations

from pyspark.sql import functions as F

from bench.train_scaling import measure, random_walk_bars
from finstream.ingest import validation as B


def test_generated_bars_are_valid_bars(spark):
    bars = random_walk_bars(spark, 3000, bars_per_ticker=1000)
    assert bars.count() == 3000 and bars.select("ticker").distinct().count() == 3
    value = F.to_json(F.struct(*bars.columns, F.lit("bench").alias("source"))).cast("binary")
    records = bars.select(F.col("ticker").cast("binary").alias("key"), value.alias("value"),
                          F.lit("t").alias("topic"), F.lit(0).alias("partition"),
                          F.monotonically_increasing_id().alias("offset"), F.current_timestamp().alias("timestamp"))
    checked = B.checked_messages(records)
    assert B.dead_letters(checked).count() == 0


def test_harness_measures_a_tiny_size(spark):
    row = measure(spark, 1500, folds=0, question="volatility")
    assert row["bars"] == 1500 and row["train_rows"] > 1000 and row["seconds"] > 0
    assert set(row["holdout_loss_ratio"]) == {"ewma", "rolling_20", "linear", "random_forest", "gbt"}
    assert row["holdout_loss_ratio"]["ewma"] == 1.0
