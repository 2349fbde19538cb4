"""jobs/train.py on the real stack: the report's illusion exposed, Kafka and ES replays
agree, both tracked and registered in MLflow, the registered model loads and predicts, and a
person can open the run and the champion in MLflow's UI (headless Chromium)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import mlflow.spark
import pytest
from elasticsearch import helpers
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import RandomForestRegressor

from finstream.core.config import local_dir
from finstream.core.series_sets import SeriesSet
from finstream.stores import elastic, registry
from producer import samples
from tests.integration.mlflow_ui import assert_visible_in_mlflow_ui

GOOG = samples.load_bars("goog-daily")


def report(pipeline, report_dir: str, question: str) -> dict:
    return json.loads((local_dir() / report_dir / f"{question}.json").read_text())


def test_the_reports_illusion_and_the_honest_figure(pipeline, spark):
    """The original report: every bar indexed five times under random ids, then a random
    80/20 split. Random forest on volume alone looks excellent; train.py is not fooled."""
    settings = pipeline.settings
    es = pipeline.es()
    elastic.ensure_indices(es, settings, only=[settings.es_index_bars])
    copies = [{"_index": settings.es_index_bars, "_source": {**bar.__dict__, "doc_id": bar.doc_id}}
              for _ in range(5) for bar in GOOG]  # no _id: Elasticsearch assigns a random one
    helpers.bulk(es, copies, refresh="wait_for")
    assert pipeline.count(settings.es_index_bars) == 5 * len(GOOG)

    # The illusion, reproduced: the test rows are copies of training rows. Fine bins and
    # deep trees, like scikit-learn's exact splits in the report, let the forest memorise them.
    docs = [hit["_source"] for hit in helpers.scan(es, index=settings.es_index_bars, _source=["volume", "close"])]
    frame = spark.createDataFrame([(d["volume"], d["close"]) for d in docs], "volume double, close double")
    train, test = frame.randomSplit([0.8, 0.2], seed=7)
    model = RandomForestRegressor(
        featuresCol="features", labelCol="close", numTrees=10, maxDepth=20, maxBins=4096, seed=7).fit(
        VectorAssembler(inputCols=["volume"], outputCol="features").transform(train))
    predictions = model.transform(VectorAssembler(inputCols=["volume"], outputCol="features").transform(test))
    illusion_r2 = RegressionEvaluator(labelCol="close", metricName="r2").evaluate(predictions)
    assert illusion_r2 > 0.9

    # The product, on the same index: de-duplicated, split by time, compared with baselines.
    pipeline.train("--source", "es", "--questions", "volume", "--folds", "0", "--models", "linear,random_forest",
                   "--report-dir", "illusion")
    honest = report(pipeline, "illusion", "volume")
    assert honest["data"]["bars"] == len(GOOG)  # 5 x 2148 documents -> 2148 bars
    assert honest["data"]["train_period"][1] < honest["data"]["test_period"][0]
    rf = honest["models"]["random_forest"]["holdout"]
    assert rf["r2"] < 0.5 < illusion_r2
    assert honest["models"]["random_forest"]["holdout"]["loss_ratio"] > 1  # persistence wins


def test_kafka_and_es_replays_train_the_same_models_tracked_in_mlflow(pipeline, spark, tmp_path):
    bars = GOOG[:900]
    pipeline.publish([(b.key, b.to_json()) for b in bars + bars[:100]])  # with duplicates
    pipeline.stream_index()
    args = ("--questions", "volume,lags", "--models", "linear")
    from_kafka = pipeline.train("--source", "kafka", "--report-dir", "from-kafka", "--folds", "1", *args, plots=True)
    # The holdout is what is compared: the ES run skips the walk-forward fold (time).
    pipeline.train("--source", "es", "--report-dir", "from-es", "--folds", "0", *args)
    assert "persistence (ref)" in from_kafka.stdout and "loss/ref" in from_kafka.stdout and " DM " in from_kafka.stdout

    for question in ("volume", "lags"):
        kafka, es = report(pipeline, "from-kafka", question), report(pipeline, "from-es", question)
        assert kafka["data"]["bars"] == es["data"]["bars"] == len(bars)
        assert kafka["data"]["fingerprint"] == es["data"]["fingerprint"]
        assert kafka["data"]["rows"] == es["data"]["rows"]
        for name in ("training_mean", "persistence", "linear"):
            expected = es["models"][name]["holdout"]["rmse"]
            assert kafka["models"][name]["holdout"]["rmse"] == pytest.approx(expected, rel=1e-9)
        assert set(kafka["models"]) == {"training_mean", "persistence", "linear"}
        assert kafka["selection"] == es["selection"] and kafka["served"] == es["served"]

    plots = {p.name for p in (local_dir() / "from-kafka").glob("*.png")}
    assert plots == {"volume-predicted-vs-actual.png", "volume-residuals.png", "volume-close-scatter.png",
                     "volume-skill.png", "lags-predicted-vs-actual.png", "lags-residuals.png", "lags-skill.png"}
    assert all((local_dir() / "from-kafka" / name).stat().st_size > 10_000 for name in plots)

    settings = pipeline.settings
    es_client = pipeline.es()
    metric_docs = es_client.count(index=settings.es_index_model_metrics)["count"]
    # 2 questions x 3 candidates x (holdout pooled and for GOOG, 1 fold, fold mean) from Kafka,
    # x (holdout pooled and for GOOG) from ES
    assert metric_docs == 2 * 3 * 4 + 2 * 3 * 2

    # Tracked and registered in MLflow: two runs per question; lags (a question the stream
    # serves) registered twice.
    client = registry.client(settings)
    runs = {r.data.params["source"] + "/" + r.data.params["question"]: r
            for r in client.search_runs([registry.experiment_id(client, settings)])}
    assert set(runs) == {"kafka/volume", "kafka/lags", "es/volume", "es/lags"}
    kafka_lags = runs["kafka/lags"]
    assert kafka_lags.data.params["fingerprint"] == report(pipeline, "from-kafka", "lags")["data"]["fingerprint"]
    assert sum(int(o.split(":")[1]) for o in kafka_lags.data.params["kafka_end_offsets"].split(",")) == len(bars) + 100
    assert runs["es/lags"].data.params["es_index"] == settings.es_index_bars
    assert kafka_lags.data.metrics["linear.holdout.rmse"] == report(pipeline, "from-kafka", "lags")["models"][
        "linear"]["holdout"]["rmse"]
    artifacts = {a.path for a in client.list_artifacts(kafka_lags.info.run_id)}
    assert {"model", "serving", "report.json", "plots"} <= artifacts
    assert kafka_lags.data.params["series_set"] == "day1-stocks"  # GOOG's daily bars: a US stock
    lags_model = registry.model_name("lags", SeriesSet("day", 1, "stocks"))  # finstream-lags-day1-stocks
    versions = client.search_model_versions(f"name='{lags_model}'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]  # volume is not served: not registered
    champion = registry.champion(client, lags_model)
    # Both runs made the same choice: if the model beat the baseline, the second took the alias.
    lags = report(pipeline, "from-es", "lags")
    expected = ("2", runs["es/lags"]) if lags["served"] == lags["chosen"] else ("1", runs["kafka/lags"])
    assert (str(champion.version), champion.run_id) == (expected[0], expected[1].info.run_id)
    metadata = json.loads(Path(client.download_artifacts(champion.run_id, "serving/metadata.json",
                                                         str(tmp_path))).read_text())
    assert metadata["chosen"] == "linear" and metadata["data"]["bars"] == len(bars)
    assert metadata["model"] in ("linear", "persistence") and metadata["served_reason"]
    assert metadata["mlflow_run_id"] == champion.run_id and metadata["series"]["key"] == "day1-stocks"
    # The ES metric documents carry the run id.
    metric_hits = helpers.scan(es_client, index=settings.es_index_model_metrics)
    run_ids = {hit["_source"]["mlflow_run_id"] for hit in metric_hits}
    assert run_ids == {r.info.run_id for r in runs.values()}

    mlflow.set_tracking_uri(registry.tracking_uri(settings))
    model = mlflow.spark.load_model(f"models:/{lags_model}@champion")
    features = {name: 0.001 for name in metadata["features"]}
    predicted = model.transform(spark.createDataFrame([features])).first().prediction
    assert isinstance(predicted, float) and abs(predicted) < 1  # a next return, not a price

    # A person can open it: the run and the champion in MLflow's UI, in a real browser.
    assert_visible_in_mlflow_ui(pipeline, tmp_path, expected[1], lags_model)
