"""Everything a training run leaves behind: the versioned model with its metadata, the JSON
report, the metric documents in Elasticsearch, and the PNG plots."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from elasticsearch import Elasticsearch, helpers
from pyspark.sql import functions as F

from finstream import modelstore, reporting, skill
from finstream.spark import export, training
from finstream.spark.features import FORECASTS
from finstream.spark.training import TrainingRun

log = logging.getLogger(__name__)


def report_dict(run: TrainingRun, run_id: str, source: str, version: str | None) -> dict:
    q = run.question
    selection = run.selection
    return {
        "run_id": run_id,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "source": source,
        "model_version": version,
        "question": {"name": q.name, "kind": q.kind, "features": list(q.features), "label": q.label,
                     "target": q.actual, "next_bar": q.next_bar, "reference": q.reference},
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in run.options.__dict__.items()},
        "data": run.data,
        "chosen": run.chosen,
        "selection": {"on": f"validation slice: the last {training.VALIDATION_FRACTION:.0%} of the training "
                            f"period, models fit on what precedes it; the holdout is not read",
                      "period": selection.validation_period, "loss": selection.validation_loss,
                      "params": selection.params},
        "served": run.served,
        "served_reason": run.served_reason,
        "models": {
            name: {"baseline": name in q.baselines, "params": result.params, "holdout": result.holdout,
                   "per_series": result.per_series, "validation_loss": result.validation_loss,
                   "walk_forward": result.walk_forward, "walk_forward_mean": result.walk_forward_mean()}
            for name, result in run.results.items()
        },
    }


def served_spec(run: TrainingRun, saved_at: Path) -> dict:
    """What the stream serves for this question (finstream.forecasts): the chosen model,
    exported and checked float for float against MLlib on the holdout, or the baseline."""
    q = run.question
    spec: dict = {"question": q.name, "served": run.served}
    if run.served in run.models:
        regressor = export.scoring_spec(run.models[run.served], run.served, q.features, saved_at)
        checked = export.check_parity(regressor, run.mllib_predictions(run.served), q.features)
        log.info("%s: exported scorer equals MLlib on %d holdout rows", q.name, checked)
        spec["regressor"] = regressor
        if q.kind == "interval":
            spec["quantiles"] = list(run.quantiles[run.served])
    return spec


def save_model(run: TrainingRun, model_dir: Path, version: str, report: dict) -> Path:
    folder = modelstore.version_dir(model_dir, run.question.name, version)
    run.model.write().overwrite().save(str(folder / "model"))
    # The stream scores the forecasting questions in plain Python: it serves scorer.json.
    scorer = served_spec(run, folder / "model") if run.question.name in FORECASTS else None
    metadata = {
        "version": version, "question": report["question"], "model": run.served, "chosen": run.chosen,
        "served_reason": run.served_reason, "selection": report["selection"],
        "params": report["models"][run.chosen]["params"], "features": list(run.question.features),
        "training_range": report["data"]["train_period"],
        # The series the model answers for: the stream serves it to these bars only.
        "series": {"timespan": run.options.timespan, "multiplier": run.options.multiplier,
                   "tickers": list(run.options.tickers)}, "data": report["data"],
        "metrics": report["models"][run.served]["holdout"], "run_id": report["run_id"], "source": report["source"],
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


def _frame(run: TrainingRun, name: str) -> pd.DataFrame:
    frame = run.holdout.sort_values("timestamp")[["timestamp", "actual", skill.forecast_column(name)]]
    frame = frame.rename(columns={skill.forecast_column(name): "predicted_close"})
    frame["time"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    return frame


def write_plots(run: TrainingRun, out_dir: Path) -> list[Path]:
    q = run.question
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(run.results)
    paths = [out_dir / f"{q.name}-skill.png"]
    reporting.plot_skill(run.holdout, q.kind, names, q.reference,
                         f"{q.name}: cumulative loss minus {q.reference}'s over the test period", paths[0])
    if q.kind == "price":
        frames = {name: _frame(run, name) for name in names}
        paths += [out_dir / f"{q.name}-predicted-vs-actual.png", out_dir / f"{q.name}-residuals.png"]
        reporting.plot_predictions(frames, "actual", f"{q.name}: predicted vs actual {q.actual}, test period", paths[1])
        reporting.plot_residuals({k: v for k, v in frames.items() if k != "training_mean"}, "actual", paths[2])
    if q.kind == "interval":
        paths += [out_dir / "interval-fan.png", out_dir / "interval-calibration.png"]
        shown = [run.served] + ([run.chosen] if run.chosen != run.served else [])
        reporting.plot_fan(run.holdout, shown, paths[1])
        reporting.plot_calibration(run.holdout, [*q.baselines, *run.models], paths[2])
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
