"""Features use only the past; splits are chronological with an embargo; metrics are right."""

from __future__ import annotations

import math

import pytest
from pyspark.sql import functions as F

from finstream import modelstore, reporting
from finstream.spark import evaluation as E
from finstream.spark.features import LAG_FEATURES, QUESTIONS, with_features
from finstream.spark.models import grid, load_params

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


def test_lag_features_never_look_ahead(spark):
    full = with_features(series(spark, 60), QUESTIONS["lags"]).orderBy("timestamp").collect()
    cut = with_features(series(spark, 40), QUESTIONS["lags"]).orderBy("timestamp").collect()
    for a, b in zip(full[:40], cut):
        assert [a[f] for f in LAG_FEATURES] == [b[f] for f in LAG_FEATURES]
    assert full[39].next_close == full[40].close  # the label is the next bar
    assert cut[39].next_close is None and not cut[39].labelled  # no next bar yet: not trained on


def test_lags_rebuild_the_price_from_the_predicted_return(spark):
    q = QUESTIONS["lags"]
    row = spark.createDataFrame([(200.0, 0.05)], "close double, prediction double").select(q.price(F.col("prediction"))).first()
    assert row[0] == pytest.approx(210.0)
    assert (q.actual, q.last_value) == ("next_close", "close")
    assert (QUESTIONS["volume"].actual, QUESTIONS["volume"].last_value) == ("close", "prev_close")


@pytest.mark.parametrize("question", ["volume", "lags"])
def test_split_is_chronological_per_series_with_an_embargo(spark, question):
    q = QUESTIONS[question]
    bars = series(spark, 100, "AAA").unionByName(series(spark, 50, "BBB", 10.0))
    rows = E.with_position(with_features(bars, q).where("labelled"))
    train, test = E.split_at(rows, q, 0.8)
    for ticker in ("AAA", "BBB"):
        t = train.where(F.col("ticker") == ticker)
        first_test = test.where(F.col("ticker") == ticker).agg(F.min("timestamp")).first()[0]
        assert t.agg(F.max("timestamp")).first()[0] < first_test
        assert t.agg(F.max(q.target_time)).first()[0] < first_test  # no label from the test period


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
    for earlier, later in zip(tests, tests[1:]):
        assert earlier[-1] < later[0]
    assert sum(map(len, tests)) == rows.where("position >= 0.5").count()


def test_price_metrics_by_hand(spark):
    q = QUESTIONS["lags"]
    df = spark.createDataFrame([(10.0, 11.0, 12.0), (10.0, 9.0, 10.5), (10.0, 10.0, 10.0)],
                               "close double, next_close double, predicted_close double")
    m = E.price_metrics(df, q)
    errors = [1.0, 1.5, 0.0]
    assert m.n == 3
    assert m.mse == pytest.approx(sum(e * e for e in errors) / 3)
    assert m.rmse == pytest.approx(math.sqrt(m.mse))
    assert m.mae == pytest.approx(2.5 / 3)
    assert m.mape == pytest.approx(100 * (1 / 11 + 1.5 / 9) / 3)
    assert m.r2 == pytest.approx(1 - m.mse / (2 / 3))
    assert m.direction == pytest.approx(2 / 3)  # up: right, down: wrong sign, flat: right


def test_baselines_are_the_training_mean_and_the_last_close(spark):
    q = QUESTIONS["lags"]
    train = spark.createDataFrame([(1.0, 2.0), (1.0, 4.0)], "close double, next_close double")
    test = spark.createDataFrame([(5.0, 6.0)], "close double, next_close double")
    base = {k: v.first().predicted_close for k, v in E.with_baselines(test, q, train).items()}
    assert base == {"baseline_mean": 3.0, "baseline_last_value": 5.0}


def test_tuning_picks_from_the_grid_on_a_time_ordered_slice(spark):
    from finstream.spark.training import choose_params

    q = QUESTIONS["ohlv"]
    rows = E.with_position(with_features(series(spark, 120), q).where("labelled"))
    train, _ = E.split_at(rows, q, 0.8)
    config = {"linear": {"maxIter": 20, "regParam": 0.0}, "grid": {"linear": {"regParam": [0.0, 100.0]}}}
    # A huge penalty flattens the fit: the validation slice must prefer no penalty.
    assert choose_params(train, q, "linear", config, tune=True) == {"maxIter": 20, "regParam": 0.0}
    assert choose_params(train, q, "linear", config, tune=False) == config["linear"]


def test_grid_combines_candidates_over_the_defaults():
    config = load_params()
    combos = grid("random_forest", config)
    assert len(combos) == 4 and all(c["seed"] == 42 for c in combos)
    assert {(c["maxDepth"], c["numTrees"]) for c in combos} == {(4, 50), (4, 100), (8, 50), (8, 100)}


def test_latest_pointer_names_the_newest_version(tmp_path):
    for version in ("v1", "v2"):
        (tmp_path / "lags" / version).mkdir(parents=True)
        modelstore.publish(tmp_path, "lags", version, {"version": version})
    assert modelstore.latest_version(tmp_path, "lags") == "v2"
    assert modelstore.load_metadata(tmp_path, "lags", "v2") == {"version": "v2"}
    assert modelstore.latest_version(tmp_path, "volume") is None


def test_table_shows_baselines_beside_models_and_says_if_persistence_wins():
    metrics = {"n": 10, "rmse": 2.0, "mae": 1.0, "mse": 4.0, "r2": 0.5, "mape": 1.0, "direction": None}
    report = {"question": {"name": "volume", "target": "close", "features": ["volume"]}, "chosen": "linear",
              "data": {"rows": 10, "tickers": ["AAA"], "train_rows": 8, "test_rows": 2, "train_period": ["a", "b"],
                       "test_period": ["c", "d"]},
              "models": {name: {"holdout": metrics, "skill_vs_last_value": skill, "walk_forward_mean": {}}
                         for name, skill in [("baseline_mean", 2.0), ("baseline_last_value", 1.0), ("linear", 1.3)]}}
    table = reporting.metrics_table(report)
    assert "baseline_mean" in table and "baseline_last_value" in table and "linear *" in table
    assert "does NOT beat persistence" in table
