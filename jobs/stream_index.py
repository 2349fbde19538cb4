"""Stream job: Kafka topic -> validated bars, dead letters and predictions in Elasticsearch.

Two streaming queries read the topic, each with its own checkpoint below CHECKPOINT_DIR:
  index-bars    every message -> a bar document or a dead letter
  predict-bars  every new valid bar -> a forecast for each served question (the registry's
                champion, or its naive baseline), and the actuals on the prediction made at
                the bar before it
A running job that starts STREAM_CATCH_UP_RECORDS or more behind first reads index-bars'
backlog as --available-now does, in a task per local core, then runs on.

    ./spark-submit.sh jobs/stream_index.py                 # runs until stopped
    ./spark-submit.sh jobs/stream_index.py --available-now # processes what the topic holds, then exits
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from elasticsearch import Elasticsearch
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from finstream.core.config import Settings
from finstream.core.errors import ArgumentParser, exit_on_user_error, require_folder
from finstream.core.logs import setup_logging
from finstream.core.questions import SERVED
from finstream.ingest import validation as B
from finstream.ingest.indexing import BatchWriter
from finstream.ingest.source import catch_up_splits, catches_up, jvm_cores, processing_time, read_splits, stream_records
from finstream.ops.monitoring import ProgressListener
from finstream.serving import predictor
from finstream.serving.champions import ChampionMirror
from finstream.serving.installed import ServedForecasts
from finstream.serving.live_skill import LiveSkillWatch
from finstream.serving.predictor import PredictionWriter
from finstream.stores import checkpoints, elastic, registry, topics

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="jobs/stream_index.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--available-now", action="store_true",
                      help="process everything the topic holds now, then stop")
    when.add_argument("--trigger", help="processing-time trigger interval (default: STREAM_TRIGGER_INTERVAL)")
    parser.add_argument("--no-predict", action="store_true", help="index bars and dead letters only")
    return parser.parse_args(argv)


def start(spark: SparkSession, stream: DataStreamWriter, name: str, settings: Settings,
          args: argparse.Namespace, *, catching_up: bool = False) -> StreamingQuery:
    """Starts a query (`catching_up`: to the topic's end now, then it ends, as --available-now)."""
    stream = stream.queryName(name).option("checkpointLocation", str(settings.query_checkpoint(name)))
    # Each query's jobs in its own FAIR pool (spark.scheduler.mode, conf/): a slow predict
    # batch does not hold the cores while bars wait. The query thread inherits the property.
    spark.sparkContext.setLocalProperty("spark.scheduler.pool", name)
    if args.available_now or catching_up:
        stream = stream.trigger(availableNow=True)
    else:
        source = "--trigger" if args.trigger else "STREAM_TRIGGER_INTERVAL"
        stream = processing_time(stream, args.trigger or settings.stream_trigger_interval, source)
    query = stream.start()
    log.info("query %s started; checkpoint %s", name, settings.query_checkpoint(name))
    return query


def await_all(spark: SparkSession, queries: list[StreamingQuery],
              then: dict[str, Callable[[], StreamingQuery]] | None = None) -> None:
    """Returns when every query has finished; the first failure is raised (and the caller
    stops the others).

    Args:
        spark: the session.
        queries: the started queries; a successor started here is appended.
        then: query name -> what starts once that query has ended without error (a catch-up's
            running query); each entry is removed once started (start_successors).
    """
    while any(query.isActive for query in queries):
        spark.streams.awaitAnyTermination()  # raises the query's error if it failed
        spark.streams.resetTerminated()
        # A query that failed after awaitAnyTermination returned has its error cleared by the
        # reset: asked of each query, it is never lost.
        raise_failure(queries)
        start_successors(queries, then)
    raise_failure(queries)


def raise_failure(queries: list[StreamingQuery]) -> None:
    """Raises the error of the first query that ended with one (StreamingQueryException)."""
    for query in queries:
        error = None if query.isActive else query.exception()
        if error is not None:
            raise error


def start_successors(queries: list[StreamingQuery], then: dict[str, Callable[[], StreamingQuery]] | None) -> None:
    """Starts the successor of each query in `then` that has ended without error, appends it
    to `queries` and removes its entry from `then`."""
    for ended in [query for query in queries if not query.isActive and query.name in (then or {})]:
        if ended.exception() is None:
            queries.append(then.pop(ended.name)())


def prepare_servers(settings: Settings, names: list[str]) -> tuple[Elasticsearch, dict[str, str]]:
    """The cluster, the indices and the topic ready, no gap in the log since the checkpoints and
    the predictor's state in this version's layout; returns the Elasticsearch client and
    ES-Hadoop's options."""
    es = elastic.client(settings)
    elastic.require_cluster(es, settings)
    elastic.ensure_indices(es, settings)
    topics.ensure_topic(settings)
    checkpoints.require_no_gap(settings, names)  # Spark would only say "data may have been lost"
    if "predict-bars" in names:  # Spark would fail at the first batch, or look in the wrong buckets
        checkpoints.require_state_layout(settings, "predict-bars", predictor.BUCKET, predictor.BUCKET_HASH)
    return es, elastic.es_hadoop_options(settings, elastic.cluster_info(es))


def monitor(spark: SparkSession, settings: Settings, es: Elasticsearch, predicting: bool) -> ProgressListener:
    """A progress line and a pipeline-metrics document per micro-batch, with the live skill watch."""
    watch = LiveSkillWatch(settings.model_path, registry.metric_logger(settings)) if predicting else None
    progress = ProgressListener(
        lambda doc_id, doc: es.index(index=settings.es_index_pipeline_metrics, id=doc_id, document=doc), watch)
    spark.streams.addListener(progress)
    return progress


def start_indexing(spark: SparkSession, checked: DataFrame, settings: Settings, es_options: dict[str, str],
                   args: argparse.Namespace, *, catching_up: bool = False) -> StreamingQuery:
    """index-bars: every checked message (validation.checked_messages) -> a bar document or a dead letter."""
    messages = checked.observe("messages", *B.message_counts())
    writer = BatchWriter(settings, es_options, settings.query_checkpoint("index-bars"))
    return start(spark, messages.writeStream.foreachBatch(writer), "index-bars", settings, args,
                 catching_up=catching_up)


def catch_up(settings: Settings, master: str, cores: int) -> int:
    """The read splits of index-bars' catch-up, when a running job starts far behind
    (source.catch_up_splits; 0: none). predict-bars is not caught up this way: its state step,
    not its read, bounds a backlog (the same rate split or not; bench/results/tuning.md)."""
    if not catches_up(settings, master, cores):  # off, or nothing to split: no need to ask Kafka
        return 0
    behind = checkpoints.behind(settings, "index-bars")
    splits = catch_up_splits(behind, settings, master, cores)
    if splits:
        log.info("index-bars is %d records behind: read in %d tasks a batch to the topic's end, then it runs on "
                 "(STREAM_CATCH_UP_RECORDS=%d)", sum(behind.values()), splits, settings.stream_catch_up_records)
    return splits


def start_predicting(spark: SparkSession, checked: DataFrame, settings: Settings, es_options: dict[str, str],
                     mirror: ChampionMirror, args: argparse.Namespace,
                     meanwhile: Callable[[], None] = lambda: None) -> StreamingQuery:
    """predict-bars: once the mirror's first look at the registry is done (its champions
    installed for the workers), every new valid bar among the checked messages forecast by the
    per-series state step, and the predictions it answers judged. `meanwhile` is called every
    second of that wait (a catch-up that ended starts its running query)."""
    waited = 0
    while not mirror.ready(timeout=1):
        meanwhile()
        waited += 1
        if waited == 10:
            log.info("predict-bars waits for the model registry at %s", registry.tracking_uri(settings))
    models = ServedForecasts(settings.model_path, SERVED)
    models.current()  # load (or warn) now, not inside the first micro-batch
    rows = predictor.prediction_rows(B.valid_bars(checked), settings)
    rows = rows.observe("predictions", *predictor.status_counts(), *predictor.live_skill_sums())
    # Taken by the query when its checkpoint is new; an existing checkpoint keeps its own.
    partitions = predictor.state_partitions(settings.stream_state_partitions, spark.sparkContext.master,
                                            int(spark.conf.get("spark.sql.shuffle.partitions")), jvm_cores(spark))
    spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
    log.info("predict-bars: %d state partitions if its checkpoint is new (an existing one keeps its own)", partitions)
    writer = PredictionWriter(settings, es_options, models)
    return start(spark, rows.writeStream.outputMode("update").foreachBatch(writer), "predict-bars", settings, args)


def run(settings: Settings, es: Elasticsearch, es_options: dict[str, str], mirror: ChampionMirror | None,
        names: list[str], args: argparse.Namespace) -> None:
    """Starts the queries (predict-bars when a mirror is given) and returns when they have ended."""
    spark = SparkSession.builder.appName("finstream-stream-index").getOrCreate()
    progress = monitor(spark, settings, es, predicting=mirror is not None)
    master, cores = spark.sparkContext.master, jvm_cores(spark)
    splits = read_splits(settings.stream_min_partitions, master, cores, catching_up=args.available_now)
    # Built once (each build is hundreds of calls into the JVM); both queries start from it.
    checked = B.checked_messages(stream_records(spark, settings, splits))
    backlog_splits = 0 if args.available_now else catch_up(settings, master, cores)
    then = {}
    if backlog_splits:  # index-bars to the topic's end in split reads, then running on `checked`
        backlog = B.checked_messages(stream_records(spark, settings, backlog_splits))
        queries = [start_indexing(spark, backlog, settings, es_options, args, catching_up=True)]
        then["index-bars"] = lambda: start_indexing(spark, checked, settings, es_options, args)
    else:
        queries = [start_indexing(spark, checked, settings, es_options, args)]
    try:
        if mirror is not None:
            queries.append(start_predicting(spark, checked, settings, es_options, mirror, args,
                                            lambda: (raise_failure(queries), start_successors(queries, then))))
        log.info("Spark UI %s (Structured Streaming tab)", spark.sparkContext.uiWebUrl)
        await_all(spark, queries, then)
    except StreamingQueryException:
        checkpoints.require_no_gap(settings, names)  # a gap opened while running: say which records
        raise
    finally:
        for query in queries:
            if query.isActive:
                query.stop()
        progress.wait_for_termination_events(len(queries))
    log.info("queries %s stopped", ", ".join(dict.fromkeys(query.name for query in queries)))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    settings = Settings.load()
    names = ["index-bars"] + ([] if args.no_predict else ["predict-bars"])
    with checkpoints.one_job(settings):  # held until the queries have stopped
        es, es_options = prepare_servers(settings, names)
        mirror = None
        if not args.no_predict:
            require_folder(settings.model_path, "models", "set MODEL_DIR to a writable folder")
            registry.require_file_store(settings)  # the mirror's MLflow would write among a folder's files
            # Its first look at the registry runs while Spark starts and the index query with it,
            # unless it would make the store (MLflow's migrations set up logging process-wide).
            mirror = ChampionMirror(settings, SERVED).start(wait=registry.may_migrate(settings))
        try:
            run(settings, es, es_options, mirror, names, args)
        finally:
            if mirror is not None:
                mirror.stop()


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
