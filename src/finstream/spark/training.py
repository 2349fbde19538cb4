"""Training and honest evaluation of the three regressors against two baselines.

    bars ─▶ features(question) ─▶ chronological split (+ embargo, leak check)
         ├─▶ holdout: fit on train, score the test period
         └─▶ walk-forward: k expanding folds
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from finstream.spark import evaluation as E
from finstream.spark.features import QUESTIONS, SERIES, Question, training_rows
from finstream.spark.models import REGRESSORS, build_pipeline, grid

log = logging.getLogger("finstream.train")


@dataclass(frozen=True)
class TrainOptions:
    question: str = "lags"
    tickers: tuple[str, ...] = ()  # empty: every ticker of the timespan
    timespan: str = "day"
    multiplier: int = 1
    test_fraction: float = 0.2
    folds: int = 3
    tune: bool = False
    models: tuple[str, ...] = tuple(REGRESSORS)


@dataclass
class ModelResult:
    name: str
    params: dict
    holdout: E.Metrics
    walk_forward: list[E.Metrics] = field(default_factory=list)

    def walk_forward_mean(self) -> dict:
        if not self.walk_forward:
            return {}
        keys = ("rmse", "mae", "r2", "mape")
        return {k: sum(getattr(m, k) for m in self.walk_forward) / len(self.walk_forward) for k in keys}


@dataclass
class TrainingRun:
    question: Question
    options: TrainOptions
    data: dict
    results: dict[str, ModelResult]
    chosen: str
    models: dict[str, PipelineModel]
    test_predictions: dict[str, DataFrame]
    train: DataFrame
    test: DataFrame

    @property
    def model(self) -> PipelineModel:
        return self.models[self.chosen]

    def skill(self, name: str) -> float:
        """RMSE relative to persistence: below 1 beats 'the price stays where it is'."""
        return self.results[name].holdout.rmse / self.results["baseline_last_value"].holdout.rmse


def select_series(bars: DataFrame, options: TrainOptions) -> DataFrame:
    selected = bars.where((F.col("timespan") == options.timespan) & (F.col("multiplier") == options.multiplier))
    return selected.where(F.col("ticker").isin(*options.tickers)) if options.tickers else selected


def fingerprint(bars: DataFrame) -> dict:
    """Identifies the training data: order-independent, changes with any bar's values."""
    row = bars.agg(F.count(F.lit(1)).alias("bars"), F.sum(F.xxhash64(*SERIES, "timestamp", "open", "high", "low",
                                                                         "close", "volume")).alias("hash"),
                   F.min("timestamp").alias("first"), F.max("timestamp").alias("last")).collect()[0]
    return {"bars": row.bars, "fingerprint": f"{(row.hash or 0) & 0xFFFFFFFFFFFFFFFF:016x}",
            "first_bar": _iso(row.first), "last_bar": _iso(row.last)}


def _iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat() if ms is not None else None


def fit(train: DataFrame, question: Question, kind: str, params: dict) -> PipelineModel:
    return build_pipeline(kind, question.features, question.label, params).fit(train)


def predict(model: PipelineModel, rows: DataFrame, question: Question) -> DataFrame:
    return model.transform(rows).withColumn("predicted_close", question.price(F.col("prediction")))


def choose_params(train: DataFrame, question: Question, kind: str, config: dict, tune: bool) -> dict:
    """The configured parameters, or with --tune the grid's best on the last 20% of the
    training period (time-ordered, never shuffled)."""
    candidates = grid(kind, config) if tune else [config[kind]]
    if len(candidates) == 1:
        return candidates[0]
    cut = train.agg(F.max("position")).collect()[0][0] * 0.8
    fit_part, validation = E.split_at(train, question, cut)
    scored = [(E.price_metrics(predict(fit(fit_part, question, kind, p), validation, question), question).rmse, i)
              for i, p in enumerate(candidates)]
    best = candidates[min(scored)[1]]
    log.info("%s: tuned %s on the validation slice -> %s", question.name, kind, best)
    return best


def run(bars: DataFrame, options: TrainOptions, config: dict) -> TrainingRun:
    question = QUESTIONS[options.question]
    selected = select_series(bars, options).persist()
    data = fingerprint(selected)
    rows = E.with_position(training_rows(selected, question)).persist()
    train, test = E.split_at(rows, question, 1 - options.test_fraction)
    train, test = train.persist(), test.persist()
    data.update(rows=rows.count(), train_rows=train.count(), test_rows=test.count(),
                tickers=sorted(r.ticker for r in selected.select("ticker").distinct().collect()),
                train_period=_period(train), test_period=_period(test))
    log.info("%s: %d rows (%d train, %d test)", question.name, data["rows"], data["train_rows"], data["test_rows"])

    results: dict[str, ModelResult] = {}
    predictions: dict[str, DataFrame] = {}
    for name, scored in E.with_baselines(test, question, train).items():
        # Persistence never predicts a move: its direction accuracy would be 0 by definition.
        results[name] = ModelResult(name, {}, E.price_metrics(scored, question, directional=name != "baseline_last_value"))
        predictions[name] = scored
    models: dict[str, PipelineModel] = {}
    for kind in options.models:
        params = choose_params(train, question, kind, config, options.tune)
        models[kind] = fit(train, question, kind, params)
        predictions[kind] = predict(models[kind], test, question)
        results[kind] = ModelResult(kind, params, E.price_metrics(predictions[kind], question))
        log.info("%s/%s: holdout RMSE %.4f", question.name, kind, results[kind].holdout.rmse)

    for i, fold_train, fold_test in E.walk_forward(rows, question, options.folds):
        for name, scored in E.with_baselines(fold_test, question, fold_train).items():
            results[name].walk_forward.append(E.price_metrics(scored, question, directional=name != "baseline_last_value"))
        for kind in options.models:
            fold_model = fit(fold_train, question, kind, results[kind].params)
            results[kind].walk_forward.append(E.price_metrics(predict(fold_model, fold_test, question), question))
        log.info("%s: walk-forward fold %d/%d done", question.name, i + 1, options.folds)

    chosen = min(options.models, key=lambda k: results[k].holdout.rmse)
    return TrainingRun(question, options, data, results, chosen, models, predictions, train, test)


def _period(rows: DataFrame) -> list[str | None]:
    row = rows.agg(F.min("timestamp"), F.max("timestamp")).collect()[0]
    return [_iso(row[0]), _iso(row[1])]
