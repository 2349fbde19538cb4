"""Stream job: Kafka topic -> validated bars and dead letters in Elasticsearch.

    ./spark-submit.sh jobs/stream_index.py                 # runs until stopped
    ./spark-submit.sh jobs/stream_index.py --available-now # processes what the topic holds, then exits
"""

from __future__ import annotations

import argparse
import logging

from pyspark.sql import SparkSession

from finstream import elastic, topics
from finstream.config import Settings
from finstream.logs import setup_logging
from finstream.spark.indexing import BatchWriter, read_records
from finstream.spark.monitoring import ProgressListener

log = logging.getLogger("finstream.stream_index")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--available-now", action="store_true",
                        help="process everything the topic holds now, then stop")
    parser.add_argument("--trigger", help="processing-time trigger interval (default: STREAM_TRIGGER_INTERVAL)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    settings = Settings.load()
    es = elastic.client(settings)
    elastic.require_cluster(es, settings)
    elastic.ensure_indices(es, settings)
    topics.ensure_topic(settings)
    writer = BatchWriter(settings, elastic.es_hadoop_options(settings, elastic.cluster_info(es)))

    spark = SparkSession.builder.appName("finstream-stream-index").getOrCreate()
    progress = ProgressListener(
        lambda doc_id, doc: es.index(index=settings.es_index_pipeline_metrics, id=doc_id, document=doc))
    spark.streams.addListener(progress)
    stream = (
        read_records(spark, settings)
        .writeStream.queryName("index-bars")
        .foreachBatch(writer)
        .option("checkpointLocation", str(settings.checkpoint_path))
    )
    if args.available_now:
        stream = stream.trigger(availableNow=True)
    else:
        stream = stream.trigger(processingTime=args.trigger or settings.stream_trigger_interval)
    query = stream.start()
    log.info("query %s started; checkpoint %s; Spark UI %s", query.name, settings.checkpoint_path,
             spark.sparkContext.uiWebUrl)
    try:
        query.awaitTermination()
    finally:
        progress.wait_for_termination_event()
    log.info("query %s stopped", query.name)


if __name__ == "__main__":
    main()
