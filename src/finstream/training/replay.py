"""Bars for training: the Kafka log replayed from the first offset to the last (the Kappa
way), or the bars index through ES-Hadoop. Both go through the stream job's validation
and keep one row per bar (the latest copy)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from finstream.core import schema as S
from finstream.ingest import validation as B
from finstream.stores.elastic import ES_HADOOP_FORMAT


def es_records(spark: SparkSession, index: str, es_options: dict[str, str]) -> DataFrame:
    """Bar documents shaped as Kafka records (JSON value and coordinates), so that they go
    through exactly the validation the stream job applies."""
    docs = (
        spark.read.format(ES_HADOOP_FORMAT)
        .options(**es_options)
        .option("es.read.field.include",
                ",".join([*S.BAR_FIELD_NAMES, "kafka_partition", "kafka_offset", "published_at"]))
        .load(index)
    )
    # ES-Hadoop reads `date` fields as timestamps; the message carries epoch milliseconds.
    # (An index mapped without our template may hold them as plain numbers.)
    if isinstance(docs.schema["timestamp"].dataType, T.TimestampType):
        docs = docs.withColumn("timestamp", B.epoch_millis(F.col("timestamp")))
    return docs.select(
        F.col("ticker").cast("binary").alias("key"),
        F.to_json(F.struct(*[F.col(name) for name in S.BAR_FIELD_NAMES])).cast("binary").alias("value"),
        F.lit(index).alias("topic"),
        F.coalesce(F.col("kafka_partition"), F.lit(0)).alias("partition"),
        F.coalesce(F.col("kafka_offset"), F.lit(0)).cast("long").alias("offset"),
        F.coalesce(F.col("published_at"), F.current_timestamp()).cast("timestamp").alias("timestamp"),
    )


def distinct_bars(records: DataFrame, partitions: int = 4) -> DataFrame:
    """Valid bars, one per document id, in a layout that does not depend on where they
    were read from (so Kafka and ES give the same models)."""
    bars = B.latest_per_doc_id(B.valid_bars(B.checked_messages(records)))
    return bars.repartition(partitions, "doc_id").sortWithinPartitions("doc_id")
