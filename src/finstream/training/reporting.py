"""What a training run reports: the metrics table, a JSON report, metric documents for
Elasticsearch, and PNG plots. Driver-side; takes plain data (a TrainingReport, pandas frames)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from finstream.core import skill
from finstream.core.questions import TRAINING_LOSSES

if TYPE_CHECKING:  # annotations only: the report's module imports Spark, the table does not need it
    from finstream.training.results import TrainingReport

# The columns of a question's table: (heading, figure, format), after which every table shows
# the loss relative to the reference baseline, the DM statistic and its p-value.
COLUMNS = {
    "price": (("RMSE", "rmse", ".4f"), ("MAE", "mae", ".4f"), ("R²", "r2", ".3f"), ("MAPE %", "mape", ".2f"),
              ("dir.acc", "direction", ".3f"), ("ret.RMSE", "return_rmse", ".5f")),
    "range": (("RMSE", "rmse", ".5f"), ("MAE", "mae", ".5f")),
    "volatility": (("QLIKE", "qlike", ".4f"), ("RMSE", "rmse", ".3e")),
    "interval": (("cover", "coverage", ".3f"), ("width %", "width", ".2%"), ("score", "interval_score", ".5f")),
}


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(label: str, figures: dict, kind: str, extra: str = "") -> str:
    cells = "".join(f"{_fmt(figures.get(key), spec):>11}" for _, key, spec in COLUMNS[kind])
    return (f"{label:<22}{cells}{_fmt(figures.get('loss_ratio'), '.3f'):>10}{_fmt(figures.get('dm'), '.2f'):>8}"
            f"{_fmt(figures.get('p'), '.3f'):>8}{extra}")


def metrics_table(report: TrainingReport) -> str:
    """The tables printed at the end of a run: every model and baseline on the holdout, pooled
    then per series, with its loss relative to the reference baseline and the DM test against
    it; then which have significant skill, and what the stream serves.

    Args:
        report: the run's report (per_series is shown when it names more than one ticker).

    Returns:
        The text, one line per candidate (the chosen one marked *, the reference "(ref)"):
        the kind's COLUMNS, loss/ref, DM, p, validation loss and walk-forward mean loss/ref;
        "-" where a figure is None.
    """
    q, kind, reference = report.question, report.question.kind, report.question.reference
    models, data = report.models, report.data
    heading = "".join(f"{h:>11}" for h, _, _ in COLUMNS[kind])
    loss_name = TRAINING_LOSSES[kind]
    lines = [
        f"question {q.name}: predict {q.actual} from {', '.join(q.features)}",
        f"data: {data['rows']} rows of {', '.join(data['tickers'])}; "
        f"train {data['train_rows']} ({' .. '.join(map(str, data['train_period']))}), "
        f"test {data['test_rows']} ({' .. '.join(map(str, data['test_period']))})",
        f"holdout, pooled; loss = {loss_name}, /ref = loss / {reference}'s, "
        f"DM < 0 and p < 0.05: better than {reference}",
        f"{'candidate':<22}{heading}{'loss/ref':>10}{'DM':>8}{'p':>8}{'val.loss':>11}{'WF l/ref':>10}",
    ]
    for name, result in models.items():
        mark = " *" if name == report.chosen else (" (ref)" if name == reference else "")
        lines.append(_row(name + mark, result.holdout, kind,
                          f"{_fmt(result.validation_loss, '.4g'):>11}"
                          f"{_fmt(result.walk_forward_mean().get('loss_ratio'), '.3f'):>10}"))
    series = sorted(next(iter(models.values())).per_series)
    if len(series) > 1:
        for ticker in series:
            lines.append(f"  {ticker} (n {models[reference].per_series[ticker]['n']})")
            lines += ["  " + _row(name, result.per_series[ticker], kind)
                      for name, result in models.items() if name != reference]
    skilled = [name for name, r in models.items()
               if name != reference and r.holdout.get("p") is not None and r.holdout["p"] < 0.05]
    lines.append(f"significant skill over {reference} (DM, p < 0.05): {', '.join(skilled) or 'none'}")
    lines.append(f"* chosen on the validation slice: {report.chosen}; served: {report.served} "
                 f"({report.served_reason})")
    return "\n".join(lines)


def outcome(report: TrainingReport, tracking_uri: str, path: Path, plots: int, indexed: int, index: str) -> str:
    """The lines printed after the table: where the run's outputs went.

    Args:
        report: the tracked report.
        tracking_uri: the MLflow store (finstream.stores.registry.tracking_uri).
        path: the JSON report's file.
        plots: how many plots were written.
        indexed: how many metric documents were indexed.
        index: the model-metrics index.

    Returns:
        Two lines and a blank one: the registered version and its alias (or why none) with the
        MLflow run, then the report, the plots and the metric documents.
    """
    registered = (f"model {report.model_version} ({report.registered_alias})" if report.model_version
                  else "not registered (the stream does not serve this question)")
    return (f"{registered}; MLflow run {report.mlflow_run_id} at {tracking_uri}\n"
            f"report {path}; {plots} plots; {indexed} metric documents in {index}\n")


def metric_documents(report: TrainingReport) -> list[dict]:
    """One document per candidate and evaluation (pooled and per series), for the model-metrics index.

    Args:
        report: the tracked report.

    Returns:
        Documents with run_id, created_at, question, target, source, fingerprint, tickers,
        model_version, mlflow_run_id, model, chosen, served, evaluation (holdout |
        walk_forward_fold | walk_forward_mean), series ("all" or a ticker), fold (folds only)
        and the figures; each with its `_id`
        ("<run_id>|<question>|<model>|<evaluation>|<series>|<fold>"), to pop before indexing.
    """
    common = {"run_id": report.run_id, "created_at": report.created_at, "question": report.question.name,
              "target": report.question.actual, "source": report.source,
              "fingerprint": report.data["fingerprint"], "tickers": report.data["tickers"],
              "model_version": report.model_version, "mlflow_run_id": report.mlflow_run_id}
    docs = []
    for name, result in report.models.items():
        base = {**common, "model": name, "chosen": name == report.chosen, "served": name == report.served}
        docs.append({**base, "evaluation": "holdout", "series": "all", **result.holdout,
                     "validation_loss": result.validation_loss})
        for ticker, figures in result.per_series.items():
            docs.append({**base, "evaluation": "holdout", "series": ticker, **figures})
        for fold, figures in enumerate(result.walk_forward):
            docs.append({**base, "evaluation": "walk_forward_fold", "series": "all", "fold": fold, **figures})
        mean = result.walk_forward_mean()
        if mean:
            docs.append({**base, "evaluation": "walk_forward_mean", "series": "all", **mean})
    for doc in docs:
        doc["_id"] = (f"{doc['run_id']}|{doc['question']}|{doc['model']}|{doc['evaluation']}|"
                      f"{doc['series']}|{doc.get('fold', '')}")
    return docs


def write_json(report: TrainingReport, path: Path) -> None:
    """Writes the JSON report (TrainingReport.as_dict, indented; values JSON cannot hold as text).

    Args:
        report: the tracked report.
        path: the file (its folder is created if missing).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.as_dict(), indent=2, default=str))


def _pyplot():
    """pyplot on the file-only backend (jobs run headless); imported on first plot only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_predictions(frames: dict[str, pd.DataFrame], actual: str, title: str, path: Path) -> None:
    """Predicted against actual price over the test period, one panel per model.

    Args:
        frames: model -> frame of time (datetime), `actual` and predicted_close (prices), in time order.
        actual: the actual price's column.
        title: the figure's title.
        path: the PNG written.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(len(frames), 1, figsize=(11, 2.6 * len(frames)), sharex=True, squeeze=False)
    for ax, (name, frame) in zip(axes[:, 0], frames.items(), strict=True):
        ax.plot(frame["time"], frame[actual], color="black", linewidth=1, label="actual")
        ax.plot(frame["time"], frame["predicted_close"], linewidth=1, label="predicted")
        ax.set_title(name, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    _save(plt, fig, path)


def plot_residuals(frames: dict[str, pd.DataFrame], actual: str, path: Path) -> None:
    """Histograms of predicted - actual price over the test period, one per model.

    Args:
        frames: model -> frame of `actual` and predicted_close (prices).
        actual: the actual price's column.
        path: the PNG written.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    for name, frame in frames.items():
        ax.hist(frame["predicted_close"] - frame[actual], bins=60, alpha=0.5, label=name)
    ax.set_xlabel("predicted - actual (price)")
    ax.set_title("Residuals over the test period", fontsize=10)
    ax.legend(fontsize=7)
    _save(plt, fig, path)


def plot_volume_scatter(train: pd.DataFrame, test: pd.DataFrame, fits: dict[str, pd.DataFrame], path: Path) -> None:
    """The original report's figure done right: close against volume, training and test
    periods apart, and each model's fitted close across the volume range.

    Args:
        train: the training period's volume and close (price).
        test: the test period's, likewise.
        fits: model -> frame of volume and predicted_close across the volume range.
        path: the PNG written.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.scatter(train["volume"], train["close"], s=4, color="grey", alpha=0.5, label="training period")
    ax.scatter(test["volume"], test["close"], s=4, color="tab:red", alpha=0.6, label="test period (later)")
    for name, frame in fits.items():
        ax.plot(frame["volume"], frame["predicted_close"], linewidth=1.5, label=f"{name} fit")
    ax.set_xscale("log")
    ax.set_xlabel("volume")
    ax.set_ylabel("close")
    ax.set_title("close vs volume: the fit says little about the price", fontsize=10)
    ax.legend(fontsize=7)
    _save(plt, fig, path)


def plot_skill(frame: pd.DataFrame, kind: str, names: list[str], reference: str, title: str, path: Path) -> None:
    """Each candidate's cumulative loss minus the reference's, over the test period in time
    order (pooled): a line that falls beats the reference, one that climbs loses to it.

    Args:
        frame: finstream.core.skill's frame (ticker, timestamp in ms, actual, last, and each
            candidate's f:<name> or lo:<name>/hi:<name>).
        kind: the question's kind (the loss: skill.row_loss).
        names: the candidates drawn (the reference is skipped).
        reference: the reference baseline.
        title: the figure's title.
        path: the PNG written.
    """
    plt = _pyplot()
    ordered = frame.sort_values(["timestamp", "ticker"], kind="stable")
    time = pd.to_datetime(ordered["timestamp"], unit="ms", utc=True)
    base = skill.row_loss(kind, ordered, reference)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name in names:
        if name != reference:
            ax.plot(time, np.cumsum(skill.row_loss(kind, ordered, name) - base), linewidth=1.2, label=name)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel(f"cumulative loss - {reference}'s")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    _save(plt, fig, path)


def plot_fan(frame: pd.DataFrame, names: list[str], path: Path, last: int = 250) -> None:
    """The 90 % interval of each named candidate with the actual next close, over the last
    `last` test bars of the first series.

    Args:
        frame: an interval question's skill frame (ticker, timestamp in ms, actual price,
            lo:<name> and hi:<name> prices).
        names: the candidates drawn.
        path: the PNG written.
        last: how many of the latest bars are drawn.
    """
    plt = _pyplot()
    series = frame[frame["ticker"] == frame["ticker"].iloc[0]].sort_values("timestamp").tail(last)
    time = pd.to_datetime(series["timestamp"], unit="ms", utc=True)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for name in names:
        lo, hi = skill.interval_columns(name)
        ax.fill_between(time, series[lo], series[hi], alpha=0.3, label=f"{name} 90 % interval")
    ax.plot(time, series["actual"], color="black", linewidth=1, label="actual next close")
    ax.set_title(f"{series['ticker'].iloc[0]}: 90 % interval for the next close, last {len(series)} test bars",
                 fontsize=10)
    ax.legend(fontsize=7)
    _save(plt, fig, path)


def plot_calibration(frame: pd.DataFrame, names: list[str], path: Path) -> None:
    """Share of actuals inside each candidate's interval, by decile of its interval's width
    relative to the close (its volatility forecast), against the nominal 90 %.

    Args:
        frame: an interval question's skill frame (last and actual prices, lo:<name> and
            hi:<name>); at least 10 rows.
        names: the candidates drawn.
        path: the PNG written.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    lowest = 1.0
    for name in names:
        lo, hi = skill.interval_columns(name)
        width = (frame[hi] - frame[lo]) / frame["last"]
        inside = ((frame[lo] <= frame["actual"]) & (frame["actual"] <= frame[hi])).astype(float)
        coverage = inside.groupby(pd.qcut(width.rank(method="first"), 10, labels=False)).mean().to_numpy()
        lowest = min(lowest, float(coverage.min()))
        ax.plot(range(1, 11), coverage, marker="o", label=name)
    ax.axhline(1 - skill.ALPHA, color="black", linestyle="--", linewidth=0.8, label="nominal 90 %")
    ax.set_xlabel("decile of the forecast volatility (interval width / close)")
    ax.set_ylabel("coverage")
    ax.set_ylim(min(0.5, lowest - 0.05), 1.02)
    ax.set_title("Interval coverage by forecast volatility, test period", fontsize=10)
    ax.legend(fontsize=7)
    _save(plt, fig, path)
