"""The steps of jobs/train.py around the training itself: where the report goes, the servers
checked before any work, the bars read, and the report's outputs once a run is tracked."""

from __future__ import annotations

import logging
from pathlib import Path

from elasticsearch import Elasticsearch
from pyspark.sql import DataFrame, SparkSession

from finstream.core.config import Settings, local_dir
from finstream.core.errors import require_folder
from finstream.ingest.source import log_records
from finstream.stores import elastic, registry, topics
from finstream.training import replay
from finstream.training.reporting import write_json
from finstream.training.results import TrainingReport
from finstream.training.tracking import index_metrics, log_report

log = logging.getLogger(__name__)


def report_dir(run_id: str, chosen: str | None = None) -> Path:
    """The folder of an invocation's JSON reports and plots.

    Args:
        run_id: the invocation (tracking.new_run_id).
        chosen: --report-dir, relative to .local/ (None: reports/<run_id>).

    Returns:
        The folder, made if missing: before any Spark work, not after the training.

    Raises:
        UserError: this user cannot write a file there (what stands in the way is named).
    """
    folder = local_dir() / "reports" / run_id if not chosen else local_dir() / chosen
    require_folder(folder, "training reports", "give --report-dir a folder this user can write")
    return folder


def check_servers(settings: Settings, source: str) -> Elasticsearch:
    """Checks, before any Spark work, every server the run will write to or read from: the
    cluster (and the model-metrics index, created if missing), the MLflow store and, for a
    Kafka replay, the topic.

    Args:
        settings: the configuration.
        source: "kafka" or "es".

    Returns:
        An Elasticsearch client on the cluster.

    Raises:
        finstream.core.errors.UserError: a server cannot be reached or used (one line:
            elastic.ClusterUnavailable, topics.TopicMissing, the MLflow store's).
    """
    es = elastic.client(settings)
    elastic.require_cluster(es, settings)
    elastic.ensure_indices(es, settings, only=[settings.es_index_model_metrics])
    registry.require_store(settings)
    if source == "kafka":
        topics.require_topic(settings)
    return es


def data_source(settings: Settings, source: str) -> dict[str, str]:
    """What the bars are read from, as MLflow parameters of each run.

    Args:
        settings: the configuration.
        source: "kafka" or "es".

    Returns:
        {"kafka_topic", "kafka_end_offsets" ("partition:offset,..." as the log stands now: the
        replay reads up to there)} or {"es_index"}.
    """
    if source == "kafka":
        return {"kafka_topic": settings.kafka_topic, "kafka_end_offsets": ",".join(
            f"{p}:{o}" for p, o in sorted(topics.end_offsets(settings).items()))}
    return {"es_index": settings.es_index_bars}


def read_bars(spark: SparkSession, settings: Settings, source: str, es: Elasticsearch) -> DataFrame:
    """Every valid bar, once, from the Kafka log replayed or the bars index (replay).

    Args:
        spark: the session (with the Kafka or ES-Hadoop connector).
        settings: the configuration.
        source: "kafka" or "es".
        es: a client on the cluster (ES-Hadoop's options need its name, uuid and version).

    Returns:
        Valid bars as bar documents (the schema's bar fields, timestamp in epoch ms, prices,
        volume; doc_id, published_at, kafka_partition, kafka_offset, indexed_at), one per
        doc_id (the latest copy), persisted and counted.
    """
    if source == "kafka":
        records = log_records(spark, settings)
    else:
        es_options = elastic.es_hadoop_options(settings, elastic.cluster_info(es), id_field=None)
        records = replay.es_records(spark, settings.es_index_bars, es_options)
    bars = replay.distinct_bars(records).persist()
    log.info("%s: %d distinct valid bars", source, bars.count())
    return bars


def save_report(report: TrainingReport, path: Path, settings: Settings, es: Elasticsearch) -> int:
    """Writes the tracked report where it is read: the JSON file, MLflow's report.json and the
    metric documents.

    Args:
        report: the report, tracked (TrainingReport.registered_as).
        path: the JSON file.
        settings: the configuration (the MLflow store, the model-metrics index).
        es: a client on the cluster.

    Returns:
        How many metric documents were indexed.
    """
    write_json(report, path)
    log_report(settings, report.mlflow_run_id, report)
    return index_metrics(es, settings.es_index_model_metrics, report)
