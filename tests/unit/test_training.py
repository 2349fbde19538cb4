"""Features use only the past; splits are chronological with an embargo; metrics are right."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import Window
from pyspark.sql import functions as F

from finstream.core import skill
from finstream.core.questions import QUESTIONS
from finstream.features.columns import with_features
from finstream.features.spec import FORECAST_FEATURES
from finstream.serving import installed
from finstream.training import evaluation as E
from finstream.training import reporting, selection, tracking
from finstream.training.regressors import grid, load_params
from finstream.training.results import Registered, TrainingReport
from finstream.training.selection import CandidateResult, Selection, TrainingRun, TrainOptions

DAY = 86_400_000


def series(spark, n: int, ticker: str = "AAA", start: float = 100.0):
    rows = []
    price = start
    for i in range(n):
        price *= 1 + 0.01 * math.sin(i / 3.0)
        rows.append((ticker, "day", 1, 1_600_000_000_000 + i * DAY, price, price * 1.01, price * 0.99,
                     price * (1 + 0.002 * math.cos(i)), 1000.0 + 10 * i, None))
    return spark.createDataFrame(
        rows, "ticker string, timespan string, multiplier int, timestamp long, open double, high double, "
              "low double, close double, volume double, vwap double")


# Everything a forecast or a naive baseline is computed from at a bar.
PAST_ONLY = (*FORECAST_FEATURES, "mean_range_5", "last_range", "rolling_20", "ewma", "log_std_20", "log_return")


@pytest.mark.parametrize("question", ["lags", "volatility"])
def test_features_and_baselines_never_look_ahead(spark, question):
    full = with_features(series(spark, 60), QUESTIONS[question]).orderBy("timestamp").collect()
    cut = with_features(series(spark, 40), QUESTIONS[question]).orderBy("timestamp").collect()
    for a, b in zip(full[:40], cut, strict=False):
        assert [a[f] for f in PAST_ONLY] == [b[f] for f in PAST_ONLY]
        assert a.eligible == b.eligible
    assert full[39].next_close == full[40].close  # the label is the next bar
    assert cut[39].next_close is None and not cut[39].labelled  # no next bar yet: not trained on


def test_lags_rebuild_the_price_from_the_predicted_return(spark):
    q = QUESTIONS["lags"]
    row = spark.createDataFrame([(200.0, 0.05)], "close double, prediction double").select(
        E.price(q, F.col("prediction"))).first()
    assert row[0] == pytest.approx(210.0)
    assert (q.actual, q.last_value) == ("next_close", "close")
    assert (QUESTIONS["volume"].actual, QUESTIONS["volume"].last_value) == ("close", "prev_close")


def crypto_and_equity(spark, days: int):
    """X:BTCUSD trades every day, AAA on weekdays only: over the same calendar the crypto
    series has 7/5 as many bars."""
    def bars(ticker, step_days):
        rows, price = [], 100.0
        for i, day in enumerate(d for d in range(days) if step_days(d)):
            price *= 1 + 0.01 * math.sin(i / 3.0)
            rows.append((ticker, "day", 1, 1_600_000_000_000 + day * DAY, price, price * 1.01, price * 0.99,
                         price, 1000.0 + i, None))
        return rows
    rows = bars("X:BTCUSD", lambda d: True) + bars("AAA", lambda d: d % 7 < 5)
    return spark.createDataFrame(rows, "ticker string, timespan string, multiplier int, timestamp long, "
                                       "open double, high double, low double, close double, volume double, vwap double")


@pytest.mark.parametrize("question", ["volume", "lags", "volatility"])
def test_one_calendar_cut_for_every_series_with_an_embargo(spark, question):
    q = QUESTIONS[question]
    rows = E.with_position(with_features(crypto_and_equity(spark, 200), q).where("labelled"))
    train, test = E.split_at(rows, q, 0.8)
    first_test = test.agg(F.min("timestamp")).first()[0]
    assert train.agg(F.max("timestamp")).first()[0] < first_test
    assert train.agg(F.max(q.target_time)).first()[0] < first_test  # no label from the test period
    for ticker in ("AAA", "X:BTCUSD"):  # both series are in both periods
        assert train.where(F.col("ticker") == ticker).count() and test.where(F.col("ticker") == ticker).count()
        assert test.where(F.col("ticker") == ticker).agg(F.min("timestamp")).first()[0] - first_test < 3 * DAY


def test_per_series_cuts_over_two_calendars_are_refused_as_a_leak(spark):
    """The old split: each series cut at 80 % of its own bars. Crypto's cut then falls on
    another date than the equity's, and one's training rows postdate the other's test rows."""
    q = QUESTIONS["lags"]
    rows = with_features(crypto_and_equity(spark, 200), q).where("labelled")
    per_series = rows.withColumn("position", F.percent_rank().over(Window.partitionBy("ticker").orderBy("timestamp")))
    train, test = per_series.where("position < 0.8"), per_series.where("position >= 0.8")
    with pytest.raises(E.LeakageError):
        E.assert_chronological(train, test, q)


def test_a_random_split_is_refused(spark):
    q = QUESTIONS["volume"]
    rows = E.with_position(with_features(series(spark, 100), q).where("labelled"))
    train, test = rows.randomSplit([0.8, 0.2], seed=1)
    with pytest.raises(E.LeakageError):
        E.assert_chronological(train, test, q)


def test_walk_forward_folds_expand_and_do_not_overlap(spark):
    q = QUESTIONS["volume"]
    rows = E.with_position(with_features(series(spark, 100), q).where("labelled"))
    folds = list(E.walk_forward(rows, q, folds=3))
    tests = [sorted(r.timestamp for r in test.collect()) for _, _, test in folds]
    trains = [train.count() for _, train, _ in folds]
    assert trains == sorted(trains) and trains[0] > 0
    for earlier, later in zip(tests, tests[1:], strict=False):
        assert earlier[-1] < later[0]
    assert sum(map(len, tests)) == rows.where("position >= 0.5").count()


def test_price_metrics_by_hand():
    frame = pd.DataFrame({"ticker": ["A"] * 3, "timestamp": [1, 2, 3], "last": [10.0, 10.0, 10.0],
                          "actual": [11.0, 9.0, 10.0], "f:m": [12.0, 10.5, 10.0]})
    m = skill.metrics("price", frame, "m")
    errors = [1.0, 1.5, 0.0]
    assert m["n"] == 3
    assert m["mse"] == m["loss"] == pytest.approx(sum(e * e for e in errors) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(m["mse"]))
    assert m["mae"] == pytest.approx(2.5 / 3)
    assert m["mape"] == pytest.approx(100 * (1 / 11 + 1.5 / 9) / 3)
    assert m["r2"] == pytest.approx(1 - m["mse"] / (2 / 3))
    assert m["return_rmse"] == pytest.approx(math.sqrt(sum((e / 10) ** 2 for e in errors) / 3))
    assert m["direction"] == pytest.approx(2 / 3)  # up: right, down: wrong sign, flat: right


def test_baselines_are_the_training_mean_and_the_last_close(spark):
    q = QUESTIONS["lags"]
    train = spark.createDataFrame([(1.0, 2.0), (1.0, 4.0)], "close double, next_close double")
    test = spark.createDataFrame([(5.0, 6.0)], "close double, next_close double")
    base = {k: test.select(v).first()[0] for k, v in E.baseline_forecasts(q, train).items()}
    assert base == {"persistence": 5.0, "training_mean": 3.0}


def options(**kw) -> TrainOptions:
    return TrainOptions(**{"question": "lags", "folds": 0, "models": ("linear", "random_forest"), **kw})


CONFIG = {"linear": {"maxIter": 20, "regParam": 0.0}, "random_forest": {"numTrees": 10, "maxDepth": 3, "seed": 1},
          "grid": {"linear": {"regParam": [0.0, 100.0]}}}


def test_tuning_picks_from_the_grid_on_a_time_ordered_slice(spark):
    q = QUESTIONS["ohlv"]
    rows = E.with_position(with_features(series(spark, 120), q).where("labelled"))
    train, _ = E.split_at(rows, q, 0.8)
    # A huge penalty flattens the fit: the validation slice must prefer no penalty.
    tuned = selection.select(train, q, CONFIG, options(question="ohlv", models=("linear",), tune=True))
    assert tuned.params["linear"] == {"maxIter": 20, "regParam": 0.0}
    untuned = selection.select(train, q, CONFIG, options(question="ohlv", models=("linear",)))
    assert untuned.params["linear"] == CONFIG["linear"]


def random_walk(spark, n: int, seed: int, tail_seed: int | None = None):
    """Two random-walk series (no skill to find); from bar n - 30 on (inside the test period), the steps come from
    `tail_seed` if given: the same past, another future."""
    rows = []
    for ticker, start in (("AAA", 100.0), ("BBB", 30.0)):
        rng, price = random.Random(f"{seed}{ticker}"), start
        for i in range(n):
            if i == n - 30 and tail_seed is not None:
                rng = random.Random(f"{tail_seed}{ticker}")
            price *= math.exp(rng.gauss(0, 0.015))
            rows.append((ticker, "day", 1, 1_600_000_000_000 + i * DAY, price, price * (1 + rng.random() * 0.01),
                         price * (1 - rng.random() * 0.01), price, rng.uniform(1e5, 1e6), None))
    return spark.createDataFrame(rows, "ticker string, timespan string, multiplier int, timestamp long, "
                                       "open double, high double, low double, close double, volume double, vwap double")


def test_the_holdout_cannot_choose_the_model(spark):
    """Two data sets with the same training period and different test periods: the choice,
    the parameters and the validation losses are identical, only the holdout figures differ.
    The holdout is never read before the choice."""
    runs = [selection.run(random_walk(spark, 240, seed=5, tail_seed=tail), options(tune=True),
                         {**load_params(), **CONFIG}) for tail in (1, 2)]
    a, b = runs
    assert a.data["train_period"] == b.data["train_period"]
    assert a.selection == b.selection
    assert a.results["linear"].holdout["loss"] != b.results["linear"].holdout["loss"]


def test_a_model_without_significant_skill_is_not_served(spark):
    run = selection.run(random_walk(spark, 240, seed=9), options(), {**load_params(), **CONFIG})
    chosen = run.results[run.chosen].holdout
    assert chosen["p"] >= skill.SIGNIFICANCE  # a random walk: no model beats persistence
    assert run.served == "persistence" and "serving persistence" in run.served_reason
    assert set(run.results["persistence"].per_series) == {"AAA", "BBB"}
    assert run.results["linear"].per_series["AAA"]["n"] + run.results["linear"].per_series["BBB"]["n"] == chosen["n"]


def test_grid_combines_candidates_over_the_defaults():
    config = load_params()
    combos = grid("random_forest", config)
    assert len(combos) == 4 and all(c["seed"] == 42 for c in combos)
    assert {(c["maxDepth"], c["numTrees"]) for c in combos} == {(4, 50), (4, 100), (8, 50), (8, 100)}


def test_install_points_at_a_version_only_once_it_loads(tmp_path):
    series = {"series": {"timespan": "day", "multiplier": 1, "tickers": []}}
    for version in ("1", "2"):
        installed.install(tmp_path, "lags", version, {"question": "lags", "served": "persistence"}, series)
    assert installed.installed_version(tmp_path, "lags", "day1") == "2"
    with pytest.raises(ValueError, match="serves 'range', not 'lags'"):
        installed.install(tmp_path, "lags", "3", {"question": "range", "served": "rolling_20"}, series)
    assert installed.installed_version(tmp_path, "lags", "day1") == "2"
    assert installed.installed_version(tmp_path, "volume", "day1") is None


def test_table_shows_every_candidate_with_its_dm_test_and_what_is_served():
    figures = {"n": 10, "rmse": 2.0, "mae": 1.0, "mse": 4.0, "r2": 0.5, "mape": 1.0, "direction": None,
               "loss": 4.0, "loss_ratio": 1.3, "dm": 1.2, "p": 0.88}
    report = TrainingReport(
        run_id="r", created_at="t", source="kafka",
        question=dataclasses.replace(QUESTIONS["lags"], features=("ret_1",)), options=TrainOptions(),
        selection=Selection("linear", {}, {}, [None, None]), served="persistence",
        served_reason="linear is not significantly better", data={
            "rows": 10, "tickers": ["AAA"], "train_rows": 8, "test_rows": 2, "train_period": ["a", "b"],
            "test_period": ["c", "d"]},
        models={name: CandidateResult(name, {}, {**figures, "p": p}, {"AAA": figures})
                for name, p in [("persistence", None), ("training_mean", 0.99), ("linear", 0.88)]})
    table = reporting.metrics_table(report)
    assert "persistence (ref)" in table and "training_mean" in table and "linear *" in table
    assert "significant skill over persistence (DM, p < 0.05): none" in table
    assert "served: persistence" in table and "0.880" in table


def fake_run(served: str = "persistence") -> TrainingRun:
    """A finished lags run over two series with one walk-forward fold, without Spark."""
    q = QUESTIONS["lags"]

    def figures(loss: float, p: float | None) -> dict:
        return {"n": 4, "loss": loss, "mse": loss, "rmse": math.sqrt(loss), "direction": None, "loss_ratio": loss / 2.0,
                "dm": -1.5, "p": p}
    results = {name: CandidateResult(name, params, figures(loss, p), {t: figures(loss, p) for t in ("AAA", "BBB")},
                                     [figures(loss + 1, p)], validation)
               for name, params, loss, p, validation in [("persistence", {}, 2.0, None, None),
                                                         ("training_mean", {}, 3.0, 0.9, None),
                                                         ("linear", {"regParam": 0.0}, 1.0, 0.01, 0.5)]}
    data = {"bars": 20, "fingerprint": "0123456789abcdef", "first_bar": "2020-01-01T00:00:00+00:00",
            "last_bar": "2020-01-10T00:00:00+00:00", "rows": 16, "train_rows": 12, "test_rows": 4,
            "tickers": ["AAA", "BBB"], "train_period": ["2020-01-01T00:00:00+00:00", "2020-01-07T00:00:00+00:00"],
            "test_period": ["2020-01-08T00:00:00+00:00", "2020-01-10T00:00:00+00:00"]}
    chosen = Selection("linear", {"linear": {"regParam": 0.0}}, {"linear": 0.5},
                       ["2020-01-05T00:00:00+00:00", "2020-01-07T00:00:00+00:00"])
    options = TrainOptions(tickers=("AAA", "BBB"), folds=1, models=("linear",))
    return TrainingRun(q, options, data, results, chosen, served, "why", models={}, quantiles={},
                       holdout=pd.DataFrame(), train=None, test=None)


def legacy_report(run: TrainingRun, run_id: str, source: str, created_at: str, mlflow_run_id: str,
                  version: str | None, alias: str | None) -> dict:
    """The report as tracking.report_dict built it and jobs/train.py completed it, before the
    report became a dataclass: what the report.json files already written hold."""
    q, chosen = run.question, run.selection
    report = {
        "run_id": run_id, "created_at": created_at, "source": source, "model_version": None,
        "question": {"name": q.name, "kind": q.kind, "features": list(q.features), "label": q.label,
                     "target": q.actual, "next_bar": q.next_bar, "reference": q.reference},
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in run.options.__dict__.items()},
        "data": run.data, "chosen": run.chosen,
        "selection": {"on": f"validation slice: the last {selection.VALIDATION_FRACTION:.0%} of the training "
                            f"period, models fit on what precedes it; the holdout is not read",
                      "period": chosen.validation_period, "loss": chosen.validation_loss, "params": chosen.params},
        "served": run.served, "served_reason": run.served_reason,
        "models": {name: {"baseline": name in q.baselines, "params": r.params, "holdout": r.holdout,
                          "per_series": r.per_series, "validation_loss": r.validation_loss,
                          "walk_forward": r.walk_forward, "walk_forward_mean": r.walk_forward_mean()}
                   for name, r in run.results.items()},
    }
    report.update(mlflow_run_id=mlflow_run_id, registered_alias=alias,
                  model_version=version and f"finstream-{q.name}/{version}")
    return report


@pytest.mark.parametrize(("served", "version", "alias"), [("linear", "3", "champion"), ("persistence", None, None)])
def test_the_report_dataclass_writes_the_json_the_dict_did(served, version, alias):
    run = fake_run(served)
    now = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    report = TrainingReport.from_run(run, "20240102T030405000006Z", "kafka", now=now)
    assert report.mlflow_run_id is None and report.model_version is None  # not tracked yet
    written = report.registered_as(Registered("abc123", version, alias, "finstream-lags")).as_dict()
    expected = legacy_report(run, "20240102T030405000006Z", "kafka", now.isoformat(), "abc123", version, alias)
    assert list(written) == ["run_id", "created_at", "source", "model_version", "question", "options", "data",
                             "chosen", "selection", "served", "served_reason", "models", "mlflow_run_id",
                             "registered_alias"]
    assert written == expected
    # Byte for byte, key order included: what report.json and MLflow's report.json hold.
    assert json.dumps(written, indent=2, default=str) == json.dumps(expected, indent=2, default=str)
    assert written["model_version"] == (f"finstream-lags/{version}" if version else None)
    assert written["models"]["linear"]["walk_forward_mean"]["loss"] == 2.0
    assert written["options"]["tickers"] == ["AAA", "BBB"] and written["question"]["target"] == "next_close"


def test_the_functions_reading_the_report_see_its_figures():
    report = TrainingReport.from_run(fake_run("linear"), "r1", "es")
    report = report.registered_as(Registered("abc123", "3", "champion", "finstream-lags"))
    written = report.as_dict()
    metrics = tracking.run_metrics(report)
    assert metrics["linear.holdout.loss"] == written["models"]["linear"]["holdout"]["loss"] == 1.0
    assert metrics["linear.walk_forward_mean.loss"] == 2.0 and metrics["linear.validation_loss"] == 0.5
    assert "persistence.holdout.p" not in metrics and "persistence.validation_loss" not in metrics  # None: left out
    params = tracking.run_params(report, {"es_index": "bars"})
    assert params["linear.regParam"] == "0.0" and params["tickers"] == "AAA,BBB" and params["es_index"] == "bars"
    assert (params["source"], params["chosen"], params["served"]) == ("es", "linear", "linear")
    docs = reporting.metric_documents(report)
    assert len(docs) == 3 * 5 and len({d["_id"] for d in docs}) == len(docs)  # pooled, 2 series, 1 fold, fold mean
    assert all(d["mlflow_run_id"] == "abc123" and d["model_version"] == "finstream-lags/3" for d in docs)
    assert reporting.outcome(report, "sqlite:///x", Path("lags.json"), 2, len(docs), "model-metrics") == (
        "model finstream-lags/3 (champion); MLflow run abc123 at sqlite:///x\n"
        "report lags.json; 2 plots; 15 metric documents in model-metrics\n")


def test_a_version_is_champion_by_the_rules_only_when_its_model_is_served():
    assert tracking.champion_by_rules(fake_run("linear"))
    assert not tracking.champion_by_rules(fake_run("persistence"))
    assert tracking.champion_by_rules(fake_run("persistence"), promote=True)
