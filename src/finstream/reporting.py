"""What a training run reports: the metrics table, a JSON report, metric documents for
Elasticsearch, and PNG plots. Driver-side; takes plain data (dicts, pandas frames)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

BASELINES = ("baseline_mean", "baseline_last_value")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def metrics_table(report: dict) -> str:
    """The table printed at the end of a run, models and baselines side by side."""
    q = report["question"]
    lines = [
        f"question {q['name']}: predict {q['target']} from {', '.join(q['features'])}",
        f"data: {report['data']['rows']} rows of {', '.join(report['data']['tickers'])}; "
        f"train {report['data']['train_rows']} ({' .. '.join(map(str, report['data']['train_period']))}), "
        f"test {report['data']['test_rows']} ({' .. '.join(map(str, report['data']['test_period']))})",
        f"{'model':<22}{'RMSE':>11}{'MAE':>11}{'R²':>9}{'MAPE %':>9}{'dir.acc':>9}{'RMSE/last':>11}{'WF RMSE':>11}",
    ]
    for name, result in report["models"].items():
        h = result["holdout"]
        mark = " *" if name == report["chosen"] else ""
        lines.append(
            f"{name + mark:<22}{h['rmse']:>11.4f}{h['mae']:>11.4f}{_fmt(h['r2'], '.3f'):>9}{h['mape']:>9.2f}"
            f"{_fmt(h['direction'], '.3f'):>9}{result['skill_vs_last_value']:>11.3f}"
            f"{_fmt(result['walk_forward_mean'].get('rmse'), '.4f'):>11}"
        )
    best = report["models"][report["chosen"]]["skill_vs_last_value"]
    verdict = ("beats" if best < 1 else "does NOT beat") + " persistence (the last close)"
    lines.append(f"* chosen: {report['chosen']} (lowest holdout RMSE); it {verdict}: RMSE/last = {best:.3f}")
    return "\n".join(lines)


def metric_documents(report: dict) -> list[dict]:
    """One document per model and evaluation, for the model-metrics index."""
    common = {"run_id": report["run_id"], "created_at": report["created_at"], "question": report["question"]["name"],
              "target": report["question"]["target"], "source": report["source"],
              "fingerprint": report["data"]["fingerprint"], "tickers": report["data"]["tickers"],
              "model_version": report.get("model_version")}
    docs = []
    for name, result in report["models"].items():
        base = {**common, "model": name, "chosen": name == report["chosen"]}
        docs.append({**base, "evaluation": "holdout", "skill_vs_last_value": result["skill_vs_last_value"],
                     **result["holdout"]})
        for fold, metrics in enumerate(result["walk_forward"]):
            docs.append({**base, "evaluation": "walk_forward_fold", "fold": fold, **metrics})
        if result["walk_forward_mean"]:
            docs.append({**base, "evaluation": "walk_forward_mean", **result["walk_forward_mean"]})
    for doc in docs:
        doc["_id"] = f"{doc['run_id']}|{doc['question']}|{doc['model']}|{doc['evaluation']}|{doc.get('fold', '')}"
    return docs


def write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))


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
    """Predicted against actual price over the test period, one panel per model."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(frames), 1, figsize=(11, 2.6 * len(frames)), sharex=True, squeeze=False)
    for ax, (name, frame) in zip(axes[:, 0], frames.items()):
        ax.plot(frame["time"], frame[actual], color="black", linewidth=1, label="actual")
        ax.plot(frame["time"], frame["predicted_close"], linewidth=1, label="predicted")
        ax.set_title(name, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    _save(plt, fig, path)


def plot_residuals(frames: dict[str, pd.DataFrame], actual: str, path: Path) -> None:
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
    periods apart, and each model's fitted close across the volume range."""
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
