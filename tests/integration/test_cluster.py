"""The same jobs on a Spark standalone cluster (a master and two workers started from the
installed pyspark, stack/spark-cluster.sh) give the same documents and metrics as local[*]."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request

import pytest

from finstream.core.config import local_dir
from producer import samples
from tests.integration.conftest import ROOT, TRAINING_JVM

MASTER = "spark://127.0.0.1:7077"
MASTER_UI = "http://127.0.0.1:8080/json/"
GOOG = samples.load_bars("goog-daily")[:600]
BAD = [(b"GOOG", b"not json"), (b"GOOG", b'{"ticker": "GOOG"}')]
# Written at the moment of the run, so never equal between two runs.
RUN_TIME_FIELDS = {"indexed_at", "predicted_at", "latency_ms"}


@pytest.fixture(scope="module")
def cluster():
    script = str(ROOT / "stack" / "spark-cluster.sh")
    subprocess.run([script, "start"], cwd=ROOT, check=True, capture_output=True, timeout=180)
    yield MASTER
    subprocess.run([script, "stop"], cwd=ROOT, check=True, capture_output=True, timeout=120)


def on_cluster(pipeline, *args, env):
    return pipeline.run("./spark-submit.sh", "--master", MASTER, *args, env=env, timeout=600)


def documents(pipeline, index):
    return {i: {k: v for k, v in d.items() if k not in RUN_TIME_FIELDS} for i, d in pipeline.documents(index).items()}


def holdout(report_dir):
    report = json.loads((local_dir() / report_dir / "lags.json").read_text())
    return report["data"]["fingerprint"], {name: m["holdout"] for name, m in report["models"].items()}


def test_stream_and_train_on_a_standalone_cluster_match_local(cluster, pipeline):
    local = pipeline.settings
    suffix = "-cluster"
    env = {"ES_INDEX_BARS": local.es_index_bars + suffix, "ES_INDEX_DEAD_LETTERS": local.es_index_dead_letters + suffix,
           "ES_INDEX_PREDICTIONS": local.es_index_predictions + suffix,
           "ES_INDEX_MODEL_METRICS": local.es_index_model_metrics + suffix,
           "CHECKPOINT_DIR": str(local.checkpoint_path) + suffix, "MODEL_DIR": str(local.model_path) + suffix}
    pipeline.publish([(b.key, b.to_json()) for b in GOOG] + BAD)
    try:
        train_args = ("jobs/train.py", "--questions", "lags", "--models", "linear", "--folds", "0",
                      "--no-plots")
        pipeline.run("./spark-submit.sh", *train_args, "--report-dir", f"{pipeline.env['KAFKA_TOPIC']}-local",
                     env=TRAINING_JVM)
        on_cluster(pipeline, *train_args, "--report-dir", f"{pipeline.env['KAFKA_TOPIC']}-cluster",
                   env={**env, **TRAINING_JVM})
        assert holdout(f"{pipeline.env['KAFKA_TOPIC']}-cluster") == holdout(f"{pipeline.env['KAFKA_TOPIC']}-local")

        # Both stream runs serve the same champion (one MLflow store; the cluster run's version
        # took the alias only if it beat the baseline) from one MODEL_DIR, so their predictions
        # can be compared.
        pipeline.stream_index()
        on_cluster(pipeline, "jobs/stream_index.py", "--available-now", env={**env, "MODEL_DIR": str(local.model_path)})
        for index in ("es_index_bars", "es_index_dead_letters", "es_index_predictions"):
            here, there = getattr(local, index), env[index.upper()]
            assert documents(pipeline, there) == documents(pipeline, here), index
        assert len(documents(pipeline, local.es_index_bars)) == len(GOOG)
        assert len(documents(pipeline, local.es_index_dead_letters)) == len(BAD)
        assert len(documents(pipeline, local.es_index_predictions)) == len(GOOG) - 20

        # They ran on the cluster's executors, not in a local driver.
        apps = json.load(urllib.request.urlopen(MASTER_UI, timeout=10))["completedapps"]
        assert {"finstream-train", "finstream-stream-index"} <= {app["name"] for app in apps}
    finally:
        for side in ("local", "cluster"):
            shutil.rmtree(local_dir() / f"{pipeline.env['KAFKA_TOPIC']}-{side}", ignore_errors=True)
        es = pipeline.es()
        for name in ("ES_INDEX_BARS", "ES_INDEX_DEAD_LETTERS", "ES_INDEX_PREDICTIONS", "ES_INDEX_MODEL_METRICS"):
            es.options(ignore_status=404).indices.delete(index=env[name])
            es.options(ignore_status=404).indices.delete_index_template(name=env[name])
