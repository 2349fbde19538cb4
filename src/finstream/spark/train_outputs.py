"""Everything a training run leaves behind: the versioned model with its metadata, the JSON
report, the metric documents in Elasticsearch, and the PNG plots."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from elasticsearch import Elasticsearch, helpers
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from finstream import modelstore, reporting
from finstream.spark import export
from finstream.spark.training import TrainingRun

log = logging.getLogger("finstream.train")


def report_dict(run: TrainingRun, run_id: str, source: str, version: str | None) -> dict:
    q = run.question
    return {
        "run_id": run_id,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "source": source,
        "model_version": version,
        "question": {"name": q.name, "features": list(q.features), "label": q.label, "target": q.actual,
                     "next_bar": q.next_bar},
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in run.options.__dict__.items()},
        "data": run.data,
        "chosen": run.chosen,
        "models": {
            name: {"params": result.params, "holdout": result.holdout.as_dict(),
                   "walk_forward": [m.as_dict() for m in result.walk_forward],
                   "walk_forward_mean": result.walk_forward_mean(),
                   "skill_vs_last_value": run.skill(name)}
            for name, result in run.results.items()
        },
    }


def save_model(run: TrainingRun, model_dir: Path, version: str, report: dict) -> Path:
    folder = modelstore.version_dir(model_dir, run.question.name, version)
    run.model.write().overwrite().save(str(folder / "model"))
    scorer = None
    if run.question.next_bar:
        # The stream scores this question in plain Python: export the model, and refuse to
        # publish it unless the export gives MLlib's floats on the holdout it was judged on.
        scorer = export.scoring_spec(run.model, run.chosen, run.question.features, folder / "model")
        checked = export.check_parity(scorer, run.test_predictions[run.chosen], run.question.features)
        log.info("%s: exported scorer equals MLlib on %d holdout rows", run.question.name, checked)
    metadata = {
        "version": version, "question": report["question"], "model": run.chosen,
        "params": report["models"][run.chosen]["params"], "features": list(run.question.features),
        "training_range": report["data"]["train_period"],
        # The series the model answers for: the stream serves it to these bars only.
        "series": {"timespan": run.options.timespan, "multiplier": run.options.multiplier,
                   "tickers": list(run.options.tickers)}, "data": report["data"],
        "metrics": report["models"][run.chosen]["holdout"], "run_id": report["run_id"], "source": report["source"],
    }
    return modelstore.publish(model_dir, run.question.name, version, metadata, scorer)


def index_metrics(es: Elasticsearch, index: str, report: dict) -> int:
    actions = []
    for doc in reporting.metric_documents(report):
        doc_id = doc.pop("_id")
        clean = {k: v for k, v in doc.items() if not (isinstance(v, float) and math.isnan(v))}
        actions.append({"_index": index, "_id": doc_id, "_source": clean})
    ok, _ = helpers.bulk(es, actions, refresh="wait_for")
    return ok


def _frame(predictions: DataFrame, actual: str) -> pd.DataFrame:
    frame = predictions.select("timestamp", actual, "predicted_close").orderBy("timestamp").toPandas()
    frame["time"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    return frame


def write_plots(run: TrainingRun, out_dir: Path) -> list[Path]:
    q = run.question
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = {name: _frame(df, q.actual) for name, df in run.test_predictions.items()}
    paths = [out_dir / f"{q.name}-predicted-vs-actual.png", out_dir / f"{q.name}-residuals.png"]
    reporting.plot_predictions(frames, q.actual, f"{q.name}: predicted vs actual {q.actual}, test period", paths[0])
    reporting.plot_residuals({k: v for k, v in frames.items() if k != "baseline_mean"}, q.actual, paths[1])
    if q.name == "volume":
        paths.append(out_dir / "volume-close-scatter.png")
        reporting.plot_volume_scatter(
            run.train.select("volume", "close").toPandas(), run.test.select("volume", "close").toPandas(),
            _volume_fits(run), paths[-1])
    return paths


def _volume_fits(run: TrainingRun) -> dict[str, pd.DataFrame]:
    """Each volume model's prediction across the observed volume range."""
    spark = run.train.sparkSession
    lo, hi = run.train.agg(F.min("volume"), F.max("volume")).collect()[0]
    lo = max(lo, 1.0)
    volumes = spark.range(200).select((F.lit(math.log(lo)) + F.col("id") * (math.log(hi) - math.log(lo)) / 199)
                                      .alias("log_v")).select(F.exp("log_v").alias("volume"))
    fits = {}
    for name, model in run.models.items():
        fits[name] = model.transform(volumes).select("volume", F.col("prediction").alias("predicted_close")).toPandas()
    return fits
