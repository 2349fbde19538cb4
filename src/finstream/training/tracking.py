"""Everything a training run leaves behind: the MLflow run (parameters, metrics, plots, the
model and what the stream serves) and its registered version, the JSON report, the metric
documents in Elasticsearch (carrying the MLflow run id), and the PNG plots.

track() composes one step per role, in this order:

    served_scorer  the served model as the stream's scorer (export_served), checked float
                   for float against MLlib: the parity gate, which raises before anything is logged
    log_run        the MLflow run: parameters, metrics, plots, model, serving artifacts
    register       the registered version and its alias (champion_by_rules: the alias policy)
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyspark
from elasticsearch import Elasticsearch, helpers
from pyspark.sql import functions as F

from finstream.core import skill
from finstream.core.config import Settings
from finstream.core.errors import hide_credentials
from finstream.serving import installed
from finstream.stores import registry
from finstream.training import export, reporting
from finstream.training.results import Registered, TrainingReport
from finstream.training.selection import TrainingRun, series_set_for

log = logging.getLogger(__name__)

# Models whose exported trees are read back from the pipeline's saved data files.
TREE_MODELS = ("random_forest", "gbt")


def new_run_id(now: datetime | None = None) -> str:
    """Names a training invocation (its report folder, its metric documents).

    Args:
        now: the time, in UTC (default: now).

    Returns:
        The UTC time as YYYYMMDDTHHMMSSffffffZ, e.g. 20240102T030405000006Z.
    """
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")


def export_served(run: TrainingRun, saved_at: Path) -> dict:
    """What the stream serves for this question (finstream.serving.forecasters): the chosen model,
    exported and checked float for float against MLlib on the holdout, or the baseline.

    Args:
        run: a run of a question the stream serves.
        saved_at: where the served pipeline was saved (read for tree models only).

    Returns:
        The scorer spec (serving/scorer.json): {"question", "served"}, plus, when a model is
        served, "regressor" (finstream.training.export.scoring_spec) and, for an interval
        question, "quantiles" ([lower, upper] standardised-return quantiles).

    Raises:
        finstream.training.export.ScorerMismatch: the exported scorer's prediction differs
            from MLlib's on a holdout row (up to export.PARITY_ROWS rows are compared).
    """
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


def served_scorer(run: TrainingRun) -> dict | None:
    """Exports what the stream serves for the run's question, through the parity gate.

    Args:
        run: the run.

    Returns:
        The scorer spec (export_served), or None for a question the stream does not serve.

    Raises:
        finstream.training.export.ScorerMismatch: as export_served.
    """
    if not run.question.served:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        saved_at = Path(tmp) / "model"
        if run.served in TREE_MODELS:
            run.models[run.served].write().save(str(saved_at))
        return export_served(run, saved_at)


def log_run(client, settings: Settings, run: TrainingRun, report: TrainingReport, scorer: dict | None,
            plots: list[Path], data_source: dict[str, str]) -> str:
    """Logs the run to MLflow: parameters, every metric of every candidate, the plots, the
    chosen MLlib model with its signature and, for a question the stream serves, what it serves.

    Args:
        client: an MlflowClient on the store (finstream.stores.registry.client).
        settings: the configuration (the tracking URI and the experiment's artifact location).
        run: the run.
        report: its report (not yet tracked).
        scorer: the scorer spec (served_scorer), logged as serving/scorer.json with
            serving/metadata.json beside it; None logs neither.
        plots: PNG files, logged under plots/.
        data_source: what the bars were read from (run_params).

    Returns:
        The MLflow run id.
    """
    import mlflow
    import mlflow.spark
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    q = run.question
    mlflow.set_tracking_uri(registry.tracking_uri(settings))
    # At the run's end MLflow writes links to it on stdout, with a server's URI as configured
    # (password and all): they are printed again with credentials hidden.
    links = io.StringIO()
    try:
        experiment = registry.experiment_id(client, settings)
        with contextlib.redirect_stdout(links), mlflow.start_run(experiment_id=experiment,
                                                                 run_name=f"{q.name}-{report.run_id}") as active:
            mlflow_run_id = active.info.run_id
            mlflow.log_params(run_params(report, data_source))
            mlflow.log_metrics(run_metrics(report))
            for plot in plots:
                mlflow.log_artifact(str(plot), "plots")
            # The pipeline takes the feature columns (doubles) and adds `prediction`.
            signature = ModelSignature(inputs=Schema([ColSpec("double", name) for name in q.features]),
                                       outputs=Schema([ColSpec("double", "prediction")]))
            mlflow.spark.log_model(run.model, "model", signature=signature,
                                   pip_requirements=[f"pyspark=={pyspark.__version__}"])
            if scorer is not None:
                mlflow.log_dict(scorer, f"{registry.SERVING}/{installed.SCORER}")
                metadata = serving_metadata(run, report, mlflow_run_id)
                mlflow.log_dict(metadata, f"{registry.SERVING}/{installed.METADATA}")
    finally:
        print(hide_credentials(links.getvalue()), end="", flush=True)
    return mlflow_run_id


def champion_by_rules(run: TrainingRun, promote: bool = False) -> bool:
    """The alias policy's own rule: whether the new version takes the champion alias whatever
    the registry holds. finstream.stores.registry.register adds the other rule: a question
    with no champion yet gets one; otherwise the version is the challenger.

    Args:
        run: the run.
        promote: --promote: champion whatever the rules say (for a new series the stream should follow).

    Returns:
        True when `promote`, or when the chosen model beat its reference baseline (it is served).
    """
    return promote or run.served == run.chosen


def register(client, run: TrainingRun, mlflow_run_id: str, promote: bool = False) -> Registered:
    """Registers the run's model (its MLflow `model` artifact) as a new version of
    finstream-<question>-<series set>, champion or challenger of that set (champion_by_rules,
    registry.register); another set's champion never changes.

    Args:
        client: an MlflowClient on the store.
        run: the run (of a question the stream serves).
        mlflow_run_id: the MLflow run holding the model (log_run).
        promote: as champion_by_rules.

    Returns:
        The run id, the new version and its alias.
    """
    name = registry.model_name(run.question.name, run.series_set)
    version, alias = registry.register(client, name, mlflow_run_id, f"runs:/{mlflow_run_id}/model",
                                       passed=champion_by_rules(run, promote))
    log.info("%s: registered %s version %s as %s", run.question.name, name, version, alias)
    return Registered(mlflow_run_id, version, alias, name)


def track(run: TrainingRun, report: TrainingReport, settings: Settings, plots: list[Path],
          data_source: dict[str, str], promote: bool = False) -> Registered:
    """Exports what the stream serves (through the parity gate), logs the run to MLflow and,
    for a question the stream serves, registers its model.

    Args:
        run: the run.
        report: its report (not yet tracked).
        settings: the configuration.
        plots: PNG files to log.
        data_source: what the bars were read from (run_params).
        promote: make the new version the champion whatever the rules say.

    Returns:
        The MLflow run id, and the version and alias (None for a question the stream does not serve).

    Raises:
        finstream.training.export.ScorerMismatch: the exported scorer differs from MLlib;
            nothing is logged.
    """
    scorer = served_scorer(run)  # first: a model that fails the parity gate is never logged
    client = registry.client(settings)
    mlflow_run_id = log_run(client, settings, run, report, scorer, plots, data_source)
    if scorer is None:
        return Registered(mlflow_run_id)
    return register(client, run, mlflow_run_id, promote)


def log_report(settings: Settings, mlflow_run_id: str, report: TrainingReport) -> None:
    """Logs the JSON report beside the run's other artifacts (once it names the registered version).

    Args:
        settings: the configuration (the tracking store).
        mlflow_run_id: the run (Registered.mlflow_run_id).
        report: the tracked report; logged as report.json (TrainingReport.as_dict).
    """
    registry.client(settings).log_dict(mlflow_run_id, report.as_dict(), "report.json")


def serving_metadata(run: TrainingRun, report: TrainingReport, mlflow_run_id: str) -> dict:
    """What the stream shows about the version it serves (serving/metadata.json).

    Args:
        run: the run (its options and holdout frame).
        report: its report.
        mlflow_run_id: the MLflow run being logged.

    Returns:
        {"question", "model" (what is served), "chosen", "served_reason", "selection",
        "params" (the chosen model's), "features", "training_range" ([first, last] ISO),
        "series" ({"timespan", "multiplier", "tickers"}), "data", "metrics" (the served
        candidate's pooled holdout figures), "run_id", "source", "mlflow_run_id",
        "live_band" (holdout_band)}.
    """
    return {
        "question": report.question_summary(), "model": run.served, "chosen": run.chosen,
        "served_reason": run.served_reason, "selection": report.selection_summary(),
        "params": report.models[run.chosen].params, "features": list(run.question.features),
        "training_range": report.data["train_period"],
        # The series the model answers for: the stream serves it to these bars only.
        "series": run.series_set.as_dict(), "data": report.data,
        "registered_model": registry.model_name(run.question.name, run.series_set),
        "metrics": report.models[run.served].holdout, "run_id": report.run_id, "source": report.source,
        "mlflow_run_id": mlflow_run_id, "live_band": holdout_band(run),
    }


def holdout_band(run: TrainingRun) -> dict | None:
    """Where the served forecast's live loss ratio should stay (finstream.core.skill.live_band), from
    the holdout's rows in time order.

    Args:
        run: the run (its holdout frame: timestamp, actual and the served and reference forecasts).

    Returns:
        skill.live_band's band; None for a question the watch does not follow, or a holdout
        shorter than the live window.
    """
    q = run.question
    if q.live is None:
        return None
    frame = run.holdout.sort_values("timestamp")
    return skill.live_band(skill.row_loss(q.kind, frame, run.served), skill.row_loss(q.kind, frame, q.reference))


def run_params(report: TrainingReport, data_source: dict[str, str]) -> dict[str, str]:
    """What the run was asked and what it read: the question, features, series, split, folds,
    each candidate's hyper-parameters and the data's fingerprint with its Kafka offsets or ES range.

    Args:
        report: the run's report.
        data_source: {"kafka_topic", "kafka_end_offsets" ("partition:offset,...")} or {"es_index"}.

    Returns:
        MLflow parameters: name -> value as a string cut at 6000 characters (MLflow's limit);
        each candidate's hyper-parameters as "<candidate>.<name>".
    """
    options, data, q = report.options, report.data, report.question
    params = {"question": q.name, "features": ",".join(q.features),
              "tickers": ",".join(options.tickers) or "all", "timespan": options.timespan,
              "multiplier": options.multiplier, "test_fraction": options.test_fraction, "folds": options.folds,
              "models": ",".join(options.models), "tune": options.tune, "source": report.source,
              "fingerprint": data["fingerprint"], "bars": data["bars"], "first_bar": data["first_bar"],
              "last_bar": data["last_bar"], "chosen": report.chosen, "served": report.served,
              "series_set": series_set_for(options, data["tickers"]).key, **data_source}
    for name, result in report.models.items():
        params.update({f"{name}.{key}": value for key, value in result.params.items()})
    return {key: str(value)[:6000] for key, value in params.items()}


def run_metrics(report: TrainingReport) -> dict[str, float]:
    """Every figure of every candidate and baseline: holdout (with the DM test against the
    reference), walk-forward folds' mean, validation loss.

    Args:
        report: the run's report.

    Returns:
        MLflow metrics: "<candidate>.holdout.<figure>", "<candidate>.walk_forward_mean.<figure>"
        and "<candidate>.validation_loss" -> float; figures that are None, booleans or not
        finite are left out (MLflow takes finite numbers only).
    """
    metrics = {}
    for name, result in report.models.items():
        figures = {f"holdout.{k}": v for k, v in result.holdout.items()}
        figures.update({f"walk_forward_mean.{k}": v for k, v in result.walk_forward_mean().items()})
        figures["validation_loss"] = result.validation_loss
        metrics.update({f"{name}.{k}": float(v) for k, v in figures.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)})
    return metrics


def index_metrics(es: Elasticsearch, index: str, report: TrainingReport) -> int:
    """Indexes the report's metric documents (reporting.metric_documents), NaN figures left out.

    Args:
        es: the cluster.
        index: the model-metrics index (settings.es_index_model_metrics).
        report: the tracked report (its documents carry the MLflow run id and version).

    Returns:
        How many documents were indexed (refreshed: searchable on return).

    Raises:
        elasticsearch.helpers.BulkIndexError: a document was refused.
    """
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
    """Draws the run's PNG plots into `out_dir` (created if missing).

    Args:
        run: the run (its holdout frame; for volume, its training and test rows too).
        out_dir: the report folder.

    Returns:
        The files written: <question>-skill.png for every question; for a price question
        <question>-predicted-vs-actual.png and <question>-residuals.png; for interval
        interval-fan.png and interval-calibration.png; for volume volume-close-scatter.png.
    """
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
    """Each volume model's prediction across the observed volume range (200 log-spaced volumes):
    model -> frame of volume, predicted_close (price)."""
    spark = run.train.sparkSession
    lo, hi = run.train.agg(F.min("volume"), F.max("volume")).collect()[0]
    lo = max(lo, 1.0)
    volumes = spark.range(200).select((F.lit(math.log(lo)) + F.col("id") * (math.log(hi) - math.log(lo)) / 199)
                                      .alias("log_v")).select(F.exp("log_v").alias("volume"))
    fits = {}
    for name, model in run.models.items():
        fits[name] = model.transform(volumes).select("volume", F.col("prediction").alias("predicted_close")).toPandas()
    return fits
