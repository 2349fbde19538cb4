"""Run by a test through spark-submit: the training replay of the topic (jobs/train.py's
read), printed as one JSON line of what it read."""

import json

from pyspark.sql import SparkSession

from finstream.core.config import Settings
from finstream.ingest.source import log_records
from finstream.training import replay

if __name__ == "__main__":
    spark = SparkSession.builder.appName("finstream-replay-count").getOrCreate()
    bars = replay.distinct_bars(log_records(spark, Settings.load())).collect()
    print(json.dumps({"replayed": sorted(row.doc_id for row in bars)}))
