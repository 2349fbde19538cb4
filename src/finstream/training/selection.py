"""Training and honest evaluation of the three regressors against the naive baselines.

    bars ─▶ features(question) ─▶ one calendar cut for all series (+ embargo, leak check)
         ├─▶ selection: fit on the training period's first 80 %, compare (and tune) on its
         │   last 20 %: the chosen model, before the holdout is read
         ├─▶ holdout: every model refit on the training period, every candidate scored on the
         │   test period, pooled and per series, each with its DM test against the reference
         │   baseline; the chosen model is served only if that test says it is better
         └─▶ walk-forward: k expanding folds
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TypedDict

import pandas as pd
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from finstream.core import skill
from finstream.core.errors import UserError
from finstream.core.questions import QUESTIONS, Question
from finstream.core.schema import SERIES
from finstream.core.series_sets import SeriesSet
from finstream.features.columns import training_rows
from finstream.features.spec import HISTORY_BARS
from finstream.training import evaluation as E
from finstream.training.regressors import REGRESSORS, build_pipeline, grid

log = logging.getLogger(__name__)

VALIDATION_FRACTION = 0.2  # of the training period: where the models are compared and tuned


@dataclass(frozen=True)
class TrainOptions:
    """What a training run is asked (jobs/train.py's flags of the same names).

    Attributes:
        question: a name of finstream.core.questions.QUESTIONS.
        tickers: the series to train on; empty: every ticker of the timespan.
        timespan: the bars' timespan (minute, hour, day, ...).
        multiplier: the bars' multiplier (5 with minute: 5-minute bars).
        test_fraction: the share of the period (by time, one cut for every series) held out.
        folds: walk-forward folds (expanding window) over the period's second half; 0: none.
        tune: choose each model's hyper-parameters from conf/models.toml's grid.
        models: the regressors to fit (finstream.training.regressors.REGRESSORS).
        series_set: the series set the model is registered for (`--set`, a key such as
            hour1-fx); empty: the set it trains on (TrainingRun.series_set).
    """

    question: str = "lags"
    tickers: tuple[str, ...] = ()  # empty: every ticker of the timespan
    timespan: str = "day"
    multiplier: int = 1
    test_fraction: float = 0.2
    folds: int = 3
    tune: bool = False
    models: tuple[str, ...] = tuple(REGRESSORS)
    series_set: str = ""


def series_set_for(options: TrainOptions, tickers: list[str]) -> SeriesSet:
    """The series set a run is registered for: `--set` if given, else the tickers it was asked
    for, else the asset class the tickers it read share, else the bare timespan.

    Args:
        options: the run's options.
        tickers: the tickers it read.
    """
    if options.series_set:
        return SeriesSet.parse(options.series_set)
    return SeriesSet.trained_on(options.timespan, options.multiplier, tickers, listed=bool(options.tickers))


class Fingerprint(TypedDict):
    """Identifies the bars a run read (fingerprint()).

    Attributes:
        bars: how many bars.
        fingerprint: 16 hex digits, a hash of every bar's series, time and values (any order).
        first_bar: the first bar's time, ISO 8601 UTC (None without bars).
        last_bar: the last bar's time, likewise.
    """

    bars: int
    fingerprint: str
    first_bar: str | None
    last_bar: str | None


class DataSummary(Fingerprint):
    """What a run read and how it was split (TrainingRun.data; the report's "data").

    Attributes:
        rows: labelled rows (bars with every feature and their target known).
        train_rows: rows in the training period (after the embargo).
        test_rows: rows in the holdout.
        tickers: the series read, sorted.
        train_period: [first, last] row time of the training period, ISO 8601 UTC.
        test_period: [first, last] row time of the holdout, likewise.
    """

    rows: int
    train_rows: int
    test_rows: int
    tickers: list[str]
    train_period: list[str | None]
    test_period: list[str | None]


@dataclass(frozen=True)
class Selection:
    """How the served model was chosen: on the last VALIDATION_FRACTION of the training period
    (fit on what precedes it), before anything of the holdout is read.

    Attributes:
        chosen: the model with the lowest validation loss.
        params: model -> the hyper-parameters it was then fit with (tuned with --tune).
        validation_loss: model -> its loss on the validation slice (the question's training
            loss: MSE, QLIKE or interval score, on the target's scale).
        validation_period: [first, last] row time of the validation slice, ISO 8601 UTC.
    """

    chosen: str
    params: dict[str, dict]
    validation_loss: dict[str, float]
    validation_period: list[str | None]


@dataclass
class CandidateResult:
    """One candidate's (model's or naive baseline's) figures.

    Attributes:
        name: the model (linear, random_forest, gbt) or baseline (persistence, ewma, ...).
        params: its hyper-parameters ({} for a baseline).
        holdout: finstream.core.skill.compare's figures on the holdout, pooled over the series:
            n, loss, the kind's metrics, loss_ratio (loss / the reference's), dm and p.
        per_series: ticker -> the same figures on that series alone.
        walk_forward: the same figures on each walk-forward fold, in fold order.
        validation_loss: its loss on the validation slice (None for a baseline).
    """

    name: str
    params: dict
    holdout: dict  # finstream.core.skill.compare's figures, pooled over the series
    per_series: dict[str, dict]
    walk_forward: list[dict] = field(default_factory=list)
    validation_loss: float | None = None

    def walk_forward_mean(self) -> dict:
        """The mean of every numeric figure over the folds.

        Returns:
            figure -> mean over the folds, for the figures every fold has as a number (not
            `n`); {} without folds.
        """
        if not self.walk_forward:
            return {}
        keys = [k for k, v in self.walk_forward[0].items()
                if k != "n" and all(isinstance(f.get(k), (int, float)) for f in self.walk_forward)]
        return {k: sum(f[k] for f in self.walk_forward) / len(self.walk_forward) for k in keys}


@dataclass
class TrainingRun:
    """Everything one question's run produced, Spark objects included (run() returns it).

    Attributes:
        question: the question answered.
        options: what the run was asked.
        data: what it read and how it was split.
        results: every candidate's figures, baselines first then models (table order).
        selection: the choice on the validation slice.
        served: the chosen model, or the question's reference baseline when the chosen model
            is not significantly better on the holdout (finstream.core.skill.served_choice).
        served_reason: why (one sentence).
        models: model -> the MLlib pipeline fit on the whole training period.
        quantiles: interval model -> its standardised-return quantiles (lower, upper) in
            training; {} for other kinds.
        holdout: every candidate's holdout forecasts (pandas, finstream.core.skill's frame:
            ticker, timespan, multiplier, timestamp (ms), last, actual, f:<name> or
            lo:<name>/hi:<name>).
        train: the training rows (training_rows' columns and `position`).
        test: the holdout rows, likewise.
    """

    question: Question
    options: TrainOptions
    data: DataSummary
    results: dict[str, CandidateResult]
    selection: Selection
    served: str  # the chosen model, or the question's reference baseline (finstream.core.skill.served_choice)
    served_reason: str
    models: dict[str, PipelineModel]
    quantiles: dict[str, tuple[float, float]]  # interval models' training quantiles
    holdout: pd.DataFrame  # every candidate's holdout forecasts (finstream.core.skill's frame)
    train: DataFrame
    test: DataFrame

    @property
    def chosen(self) -> str:
        """The model chosen on the validation slice."""
        return self.selection.chosen

    @property
    def series_set(self) -> SeriesSet:
        """The series set the model is for: `--set` if given, else the tickers it was asked
        for, else their common asset class, else the bare timespan (SeriesSet.trained_on)."""
        return series_set_for(self.options, self.data["tickers"])

    @property
    def model(self) -> PipelineModel:
        """The chosen model's pipeline (fit on the training period)."""
        return self.models[self.chosen]

    def mllib_predictions(self, kind: str) -> DataFrame:
        """MLlib's own output on the holdout, for the parity check.

        Args:
            kind: a fitted model (a key of `models`).

        Returns:
            The holdout rows with the model's `prediction` (on the label's scale, e.g. the
            next return for lags) and its intermediate feature vectors.

        Raises:
            KeyError: `kind` was not fitted.
        """
        return self.models[kind].transform(self.test)


class NoBars(UserError):
    """No bar of the requested series (the message names what the data holds)."""


class TooFewBars(UserError):
    """Bars of the series, but too few for the split, the validation slice or a fold."""


def inventory(bars: DataFrame, shown: int = 8) -> str:
    """What the bars hold, for a user who asked for a series there is none of.

    Args:
        bars: valid bars (ticker, timespan, multiplier columns at least).
        shown: tickers named per timespan and multiplier before "...".

    Returns:
        One line: "--timespan T --multiplier M: N bars of A, B ...; ...", or "no valid bars at all".
    """
    groups = (bars.groupBy("timespan", "multiplier")
              .agg(F.count(F.lit(1)).alias("bars"), F.sort_array(F.collect_set("ticker")).alias("tickers"))
              .orderBy("timespan", "multiplier").collect())
    return "; ".join(f"--timespan {g.timespan} --multiplier {g.multiplier}: {g.bars} bars of "
                     f"{', '.join(g.tickers[:shown])}{' ...' if len(g.tickers) > shown else ''}" for g in groups) \
        or "no valid bars at all"


def select_series(bars: DataFrame, options: TrainOptions) -> DataFrame:
    """The bars of the options' timespan and multiplier (and tickers, if named).

    Args:
        bars: valid bars (finstream.core.schema.Bar columns).
        options: timespan, multiplier and tickers.

    Returns:
        The matching rows, same columns.
    """
    selected = bars.where((F.col("timespan") == options.timespan) & (F.col("multiplier") == options.multiplier))
    return selected.where(F.col("ticker").isin(*options.tickers)) if options.tickers else selected


def fingerprint(bars: DataFrame) -> Fingerprint:
    """Identifies the training data: order-independent, changes with any bar's values.

    Args:
        bars: bars with the series columns, timestamp (epoch ms) and open, high, low, close, volume.

    Returns:
        {"bars", "fingerprint", "first_bar", "last_bar"} (Fingerprint).
    """
    row = bars.agg(F.count(F.lit(1)).alias("bars"), F.sum(F.xxhash64(*SERIES, "timestamp", "open", "high", "low",
                                                                         "close", "volume")).alias("hash"),
                   F.min("timestamp").alias("first"), F.max("timestamp").alias("last")).collect()[0]
    return {"bars": row.bars, "fingerprint": f"{(row.hash or 0) & 0xFFFFFFFFFFFFFFFF:016x}",
            "first_bar": _iso(row.first), "last_bar": _iso(row.last)}


def _iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat() if ms is not None else None


def fit(train: DataFrame, question: Question, kind: str, params: dict) -> PipelineModel:
    """Fits one regressor's pipeline.

    Args:
        train: rows with the question's features and label columns (doubles, no nulls).
        question: which features and label.
        kind: linear, random_forest or gbt.
        params: the regressor's hyper-parameters (MLlib's names).

    Returns:
        The fitted pipeline: it adds `prediction` (on the label's scale) to rows with the features.
    """
    return build_pipeline(kind, question.features, question.label, params).fit(train)


def _quantiles(models: dict[str, PipelineModel], question: Question, train: DataFrame) -> dict:
    if question.kind != "interval":
        return {}
    return {kind: E.model_quantiles(model, question, train) for kind, model in models.items()}


def evaluate(models: dict[str, PipelineModel], question: Question, train: DataFrame, test: DataFrame,
             names: tuple[str, ...]) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Every candidate (baselines and the fitted models) on `test`.

    Args:
        models: model -> the pipeline fit on `train`.
        question: the question (its kind decides the metrics, its reference the DM test).
        train: the rows the models were fit on (the training mean and the empirical interval
            baselines read it).
        test: the rows scored.
        names: the candidates compared (baselines and models), reference included.

    Returns:
        (frame, figures): the pandas frame of every candidate's forecast per test row
        (finstream.core.skill's frame), and name -> skill.compare's pooled figures.

    Raises:
        TooFewBars: `test` has no row.
    """
    frame = E.scored_frame(test, question, train, models, _quantiles(models, question, train))
    if frame.empty:
        raise TooFewBars("too few bars for this split: a test slice is empty; publish more history, or "
                         "lower --folds")
    return frame, skill.compare(question.kind, frame, names, question.reference)


def select(train: DataFrame, question: Question, config: dict, options: TrainOptions) -> Selection:
    """Each model's parameters (the configured ones, or with --tune the grid's best) and the
    model to serve, all by the loss on the training period's last VALIDATION_FRACTION, fit on
    what precedes it. Takes the training rows only: the holdout cannot take part.

    Args:
        train: training rows with `position` (evaluation.with_position), features and label.
        question: the question.
        config: conf/models.toml: model -> hyper-parameters, and "grid" -> model -> name -> values.
        options: the models and whether to tune.

    Returns:
        The Selection.

    Raises:
        TooFewBars: the validation slice, or what precedes it, is empty.
    """
    cut = train.agg(F.max("position")).collect()[0][0] * (1 - VALIDATION_FRACTION)
    fit_part, validation = E.split_at(train, question, cut)
    if fit_part.isEmpty() or validation.isEmpty():
        raise TooFewBars("too few bars to choose a model: the training period's validation slice (its last "
                         f"{VALIDATION_FRACTION:.0%}) or what precedes it is empty; publish more history")
    params: dict[str, dict] = {}
    losses: dict[str, float] = {}
    for kind in options.models:
        candidates = grid(kind, config) if options.tune else [config[kind]]
        scored = []
        for i, candidate in enumerate(candidates):
            model = fit(fit_part, question, kind, candidate)
            quantiles = _quantiles({kind: model}, question, fit_part)
            frame = E.scored_frame(validation, question, fit_part, {kind: model}, quantiles)
            scored.append((skill.metrics(question.kind, frame, kind)["loss"], i))
        losses[kind], best = min(scored)
        params[kind] = candidates[best]
        if options.tune:
            log.info("%s: tuned %s on the validation slice -> %s", question.name, kind, params[kind])
    chosen = min(losses, key=losses.get)
    log.info("%s: %s chosen on the validation slice (%s)", question.name, chosen,
             ", ".join(f"{k} {v:.6g}" for k, v in losses.items()))
    return Selection(chosen, params, losses, _period(validation))


def run(bars: DataFrame, options: TrainOptions, config: dict) -> TrainingRun:
    """Trains, chooses and evaluates one question's models on one series selection.

    Args:
        bars: valid bars (finstream.core.schema.Bar columns: ticker, timespan, multiplier,
            timestamp in epoch ms, open, high, low, close, volume, vwap), of any series.
        options: the question, the series and the split.
        config: conf/models.toml (finstream.training.regressors.load_params).

    Returns:
        The TrainingRun (its DataFrames persisted).

    Raises:
        NoBars: no bar of the requested series.
        TooFewBars: too few for the split, the validation slice or a walk-forward fold.
        finstream.training.evaluation.LeakageError: a split would let training rows see the test period.
    """
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
    if not data["bars"]:
        tickers = ", ".join(options.tickers) if options.tickers else "any ticker"
        wanted = f"{tickers} at {options.timespan} x{options.multiplier}"
        raise NoBars(f"no bars of {wanted}; the data holds {inventory(bars)}")
    if not data["train_rows"] or not data["test_rows"]:
        raise TooFewBars(f"too few bars for this split: {data['bars']} bars give {data['rows']} rows with "
                         f"{HISTORY_BARS} bars of history and a next bar ({data['train_rows']} to train, "
                         f"{data['test_rows']} to test); publish more history or change --test-fraction")

    selection = select(train, question, config, options)  # before the holdout is touched
    models = {kind: fit(train, question, kind, selection.params[kind]) for kind in options.models}
    names = (*question.baselines, *options.models)
    frame, holdout = evaluate(models, question, train, test, names)
    per_series = {ticker: skill.compare(question.kind, part, names, question.reference)
                  for ticker, part in frame.groupby("ticker")}
    results = {name: CandidateResult(name, selection.params.get(name, {}), holdout[name],
                                     {t: figures[name] for t, figures in per_series.items()},
                                     validation_loss=selection.validation_loss.get(name))
               for name in names}

    for i, fold_train, fold_test in E.walk_forward(rows, question, options.folds):
        # With --tune each fold tunes on its own training rows: never on its test block.
        params = select(fold_train, question, config, options).params if options.tune else selection.params
        fold_models = {kind: fit(fold_train, question, kind, params[kind]) for kind in options.models}
        _, figures = evaluate(fold_models, question, fold_train, fold_test, names)
        for name in names:
            results[name].walk_forward.append(figures[name])
        log.info("%s: walk-forward fold %d/%d done", question.name, i + 1, options.folds)

    chosen = results[selection.chosen].holdout
    served, reason = skill.served_choice(question.name, selection.chosen, chosen.get("dm"), chosen.get("p"))
    (log.info if served == selection.chosen else log.warning)("%s: %s", question.name, reason)
    return TrainingRun(question, options, data, results, selection, served, reason, models,
                       _quantiles(models, question, train), frame, train, test)


def _period(rows: DataFrame) -> list[str | None]:
    row = rows.agg(F.min("timestamp"), F.max("timestamp")).collect()[0]
    return [_iso(row[0]), _iso(row[1])]
