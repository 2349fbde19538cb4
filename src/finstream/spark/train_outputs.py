"""Everything a training run leaves behind: the MLflow run (parameters, metrics, plots, the
model and what the stream serves) and its registered version, the JSON report, the metric
documents in Elasticsearch (carrying the MLflow run id), and the PNG plots."""

from __future__ import annotations

import logging
import math
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyspark
from elasticsearch import Elasticsearch, helpers
from pyspark.sql import functions as F

from finstream import modelstore, registry, reporting, skill
from finstream.config import Settings
from finstream.spark import export, training
from finstream.spark.features import FORECASTS
from finstream.spark.training import TrainingRun

log = logging.getLogger(__name__)


def new_run_id(now: datetime | None = None) -> str:
    """Names a training invocation (its report folder, its metric documents): the UTC time."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")


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


def track(run: TrainingRun, report: dict, settings: Settings, plots: list[Path], data_source: dict,
          promote: bool = False) -> dict:
    """Logs the run to MLflow (parameters, every metric of every candidate, the report and the
    plots, the MLlib model with its signature, and what the stream serves), then registers a
    forecasting question's model as finstream-<question>: champion when the chosen model beat
    its naive baseline (the selection rules) or the question has no champion yet, challenger
    otherwise (champion whatever the rules say with `promote`). Returns {"mlflow_run_id", "version",
    "alias"} (version and alias None when the
    question is not one the stream serves)."""
    import mlflow
    import mlflow.spark
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    q = run.question
    client = registry.client(settings)
    mlflow.set_tracking_uri(registry.tracking_uri(settings))
    with mlflow.start_run(experiment_id=registry.experiment_id(client, settings),
                          run_name=f"{q.name}-{report['run_id']}") as active:
        run_id = active.info.run_id
        mlflow.log_params(run_params(run, report, data_source))
        mlflow.log_metrics(run_metrics(report))
        for plot in plots:
            mlflow.log_artifact(str(plot), "plots")
        # The pipeline takes the feature columns (doubles) and adds `prediction`.
        signature = ModelSignature(inputs=Schema([ColSpec("double", name) for name in q.features]),
                                   outputs=Schema([ColSpec("double", "prediction")]))
        mlflow.spark.log_model(run.model, "model", signature=signature,
                               pip_requirements=[f"pyspark=={pyspark.__version__}"])
        with tempfile.TemporaryDirectory() as tmp:
            saved_at = Path(tmp) / "model"
            if run.served in ("random_forest", "gbt"):  # their exported trees are read from the saved files
                run.model.write().save(str(saved_at))
            scorer = served_spec(run, saved_at) if q.name in FORECASTS else None
        if scorer is not None:
            mlflow.log_dict(scorer, f"{registry.SERVING}/{modelstore.SCORER}")
            mlflow.log_dict(serving_metadata(run, report, run_id), f"{registry.SERVING}/{modelstore.METADATA}")
    version = alias = None
    if scorer is not None:
        version, alias = registry.register(client, q.name, run_id, f"runs:/{run_id}/model",
                                           passed=promote or run.served == run.chosen)
        log.info("%s: registered %s version %s as %s", q.name, registry.model_name(q.name), version, alias)
    return {"mlflow_run_id": run_id, "version": version, "alias": alias}


def log_report(settings: Settings, mlflow_run_id: str, report: dict) -> None:
    """The JSON report, beside the run's other artifacts (once it names the registered version)."""
    registry.client(settings).log_dict(mlflow_run_id, report, "report.json")


def serving_metadata(run: TrainingRun, report: dict, mlflow_run_id: str) -> dict:
    return {
        "question": report["question"], "model": run.served, "chosen": run.chosen,
        "served_reason": run.served_reason, "selection": report["selection"],
        "params": report["models"][run.chosen]["params"], "features": list(run.question.features),
        "training_range": report["data"]["train_period"],
        # The series the model answers for: the stream serves it to these bars only.
        "series": {"timespan": run.options.timespan, "multiplier": run.options.multiplier,
                   "tickers": list(run.options.tickers)}, "data": report["data"],
        "metrics": report["models"][run.served]["holdout"], "run_id": report["run_id"], "source": report["source"],
        "mlflow_run_id": mlflow_run_id, "live_band": holdout_band(run),
    }


def holdout_band(run: TrainingRun) -> dict | None:
    """Where the served forecast's live loss ratio should stay (finstream.skill.live_band), from
    the holdout's rows in time order; None for a question the watch does not follow."""
    q = run.question
    if q.name not in skill.LIVE_LOSSES:
        return None
    frame = run.holdout.sort_values("timestamp")
    return skill.live_band(skill.row_loss(q.kind, frame, run.served), skill.row_loss(q.kind, frame, q.reference))


def run_params(run: TrainingRun, report: dict, data_source: dict) -> dict:
    """What the run was asked and what it read: the question, features, series, split, folds,
    each candidate's hyper-parameters and the data's fingerprint with its Kafka offsets or ES range."""
    options, data = run.options, report["data"]
    params = {"question": run.question.name, "features": ",".join(run.question.features),
              "tickers": ",".join(options.tickers) or "all", "timespan": options.timespan,
              "multiplier": options.multiplier, "test_fraction": options.test_fraction, "folds": options.folds,
              "models": ",".join(options.models), "tune": options.tune, "source": report["source"],
              "fingerprint": data["fingerprint"], "bars": data["bars"], "first_bar": data["first_bar"],
              "last_bar": data["last_bar"], "chosen": run.chosen, "served": run.served, **data_source}
    for name, result in report["models"].items():
        params.update({f"{name}.{key}": value for key, value in result["params"].items()})
    return {key: str(value)[:6000] for key, value in params.items()}


def run_metrics(report: dict) -> dict[str, float]:
    """Every figure of every candidate and baseline: holdout (with the DM test against the
    reference), walk-forward folds' mean, validation loss."""
    metrics = {}
    for name, result in report["models"].items():
        figures = {f"holdout.{k}": v for k, v in result["holdout"].items()}
        figures.update({f"walk_forward_mean.{k}": v for k, v in (result["walk_forward_mean"] or {}).items()})
        figures["validation_loss"] = result.get("validation_loss")
        metrics.update({f"{name}.{k}": float(v) for k, v in figures.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)})
    return metrics


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
