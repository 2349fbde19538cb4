"""The stream's plain-Python scoring equals the trainer's Spark code, float for float: the
`lags` features against the window functions, and each exported regressor against MLlib's
own `transform` on the same rows."""

from __future__ import annotations

import math
import random

import pytest
from pyspark.sql import functions as F

from finstream.core.questions import QUESTIONS
from finstream.features import scalar
from finstream.features.columns import with_features
from finstream.features.spec import HISTORY_BARS, LAG_FEATURES
from finstream.ingest.spark_types import bar_schema
from finstream.serving import scorers
from finstream.training.evaluation import price
from finstream.training.export import ScorerMismatch, check_parity, scoring_spec
from finstream.training.selection import fit

QUESTION = QUESTIONS["lags"]
DAY = 86_400_000


def random_bars(n: int, seed: int) -> list[dict]:
    """Two series of random-walk bars with awkward values: flat stretches (zero std), zero
    volumes, absent vwap on one series."""
    rng = random.Random(seed)
    rows = []
    for ticker, with_vwap in (("AAA", True), ("BBB", False)):
        close = 50.0 + rng.random() * 100
        for i in range(n):
            previous = close
            close = previous if i % 17 < 3 else previous * math.exp(rng.gauss(0, 0.02))
            high = max(previous, close) * (1 + rng.random() * 0.01)
            low = min(previous, close) * (1 - rng.random() * 0.01)
            volume = 0.0 if 40 <= i < 62 and ticker == "BBB" else rng.uniform(1e3, 1e7)
            rows.append({"ticker": ticker, "timespan": "day", "multiplier": 1, "timestamp": 1_600_000_000_000 + i * DAY,
                         "open": previous, "high": high, "low": low, "close": close, "volume": volume,
                         "vwap": (high + low + close) / 3 if with_vwap else None, "transactions": None,
                         "source": "test"})
    return rows


@pytest.fixture(scope="module")
def featured(spark):
    frame = spark.createDataFrame(random_bars(300, seed=11), bar_schema())
    return with_features(frame, QUESTION).persist()


def python_features(bars: list[dict]) -> dict[tuple, tuple | None]:
    """Each bar's features from the bars before it, as the stream computes them."""
    result = {}
    for ticker in ("AAA", "BBB"):
        series = [b for b in bars if b["ticker"] == ticker]
        for i, bar in enumerate(series):
            window = series[max(0, i - HISTORY_BARS + 1):i + 1]
            result[(ticker, bar["timestamp"])] = scalar.lag_features(
                *([b[k] for b in window] for k in ("open", "high", "low", "close", "volume", "vwap")))
    return result


def test_python_features_equal_the_window_functions_bit_for_bit(featured):
    expected = python_features(random_bars(300, seed=11))
    rows = featured.select("ticker", "timestamp", "eligible", *LAG_FEATURES).collect()
    assert len(rows) == 600
    for row in rows:
        mine = expected[(row.ticker, row.timestamp)]
        if not row.eligible:
            assert mine is None, (row.ticker, row.timestamp)
            continue
        assert mine == tuple(row[f] for f in LAG_FEATURES), (row.ticker, row.timestamp)
    # the awkward stretches are there: zero volumes make bars ineligible, flat closes give std 0
    assert any(not r.eligible for r in rows if r.ticker == "BBB" and r.timestamp > 1_600_000_000_000 + 60 * DAY)
    assert sum(r.eligible for r in rows) > 500


def predict(model, rows, question):
    return model.transform(rows).withColumn("predicted_close", price(question, F.col("prediction")))


def test_calendar_features_equal_sparks(spark):
    """Hour and weekday from epoch milliseconds, as integers: the same in both (2026-11-27,
    a Friday, 14:30 UTC; 1970-01-01, a Thursday; a Monday midnight)."""
    stamps = [1_795_789_800_000, 0, 1_795_392_000_000]
    frame = spark.createDataFrame(
        [{"ticker": "A", "timespan": "hour", "multiplier": 1, "timestamp": t, "open": 1.0, "high": 1.0, "low": 1.0,
          "close": 1.0, "volume": 1.0, "vwap": None, "transactions": None, "source": "test"} for t in stamps],
        bar_schema())
    rows = with_features(frame, QUESTIONS["range"]).orderBy("timestamp").collect()
    assert [scalar.calendar_features(t) for t in sorted(stamps)] == [(r.hour_of_day, r.day_of_week) for r in rows]
    assert scalar.calendar_features(1_795_789_800_000) == (14.0, 4.0)
    assert scalar.calendar_features(1_795_392_000_000) == (0.0, 0.0)


@pytest.mark.parametrize("question, kind, params", [
    ("lags", "linear", {"regParam": 0.01, "elasticNetParam": 0.0}),
    ("lags", "random_forest", {"numTrees": 20, "maxDepth": 6, "seed": 3}),
    ("lags", "gbt", {"maxIter": 15, "maxDepth": 3, "seed": 3}),
    ("volatility", "random_forest", {"numTrees": 20, "maxDepth": 6, "seed": 3}),
    ("range", "linear", {"regParam": 0.01, "elasticNetParam": 0.0}),
])
def test_exported_scorer_equals_mllib_transform(spark, tmp_path, question, kind, params):
    q = QUESTIONS[question]
    featured = with_features(spark.createDataFrame(random_bars(300, seed=11), bar_schema()), q)
    rows = featured.where("labelled")
    model = fit(rows.where(F.col("timestamp") < 1_600_000_000_000 + 200 * DAY), q, kind, params)
    model.write().overwrite().save(str(tmp_path / "model"))
    spec = scoring_spec(model, kind, q.features, tmp_path / "model")
    scored = predict(model, featured.where("eligible"), q)
    assert check_parity(spec, scored, q.features) == scored.count()
    scorer = scorers.scorer_from_spec(spec)
    for row in scored.select("close", "predicted_close", *q.features).limit(50).collect():
        predicted = scorer.predict([row[f] for f in q.features])
        assert (row.close * (1 + predicted) if question == "lags" else predicted) == row.predicted_close


def test_a_scorer_that_disagrees_with_mllib_is_refused(spark, featured, tmp_path):
    model = fit(featured.where("labelled"), QUESTION, "linear", {"regParam": 0.0})
    spec = scoring_spec(model, "linear", QUESTION.features, tmp_path)
    spec["intercept"] += 1e-12
    with pytest.raises(ScorerMismatch, match="MLlib gives"):
        check_parity(spec, predict(model, featured.where("eligible"), QUESTION), QUESTION.features)


def test_a_scorer_for_other_features_is_refused():
    with pytest.raises(ValueError, match="retrain it"):
        scorers.scorer_from_spec({"kind": "linear", "features": ["volume"]})


def test_a_series_without_volume_has_the_trainer_features(spark):
    """Index aggregates carry no volume or vwap (and a series may lose its volume for a while):
    volume_ratio_20 is 1 and vwap_gap 0 where absent, in Python as in Spark, and the bars stay
    eligible."""
    bars = [{**b, "ticker": "I:AAA", "volume": None, "vwap": None} for b in random_bars(80, seed=5)
            if b["ticker"] == "AAA"]
    bars += [{**b, "volume": None if 30 <= i < 45 else b["volume"]}
             for i, b in enumerate(b for b in random_bars(80, seed=6) if b["ticker"] == "AAA")]
    rows = with_features(spark.createDataFrame(bars, bar_schema()), QUESTION) \
        .select("ticker", "timestamp", "eligible", *LAG_FEATURES).collect()
    for row in rows:
        series = [b for b in bars if b["ticker"] == row.ticker and b["timestamp"] <= row.timestamp]
        window = series[-HISTORY_BARS:]
        mine = scalar.lag_features(*([b[k] for b in window] for k in ("open", "high", "low", "close", "volume",
                                                                       "vwap")))
        assert mine == (tuple(row[f] for f in LAG_FEATURES) if row.eligible else None), (row.ticker, row.timestamp)
    index = [r for r in rows if r.ticker == "I:AAA" and r.eligible]
    assert len(index) == 80 - 20 and all(r.volume_ratio_20 == 1.0 and r.vwap_gap == 0.0 for r in index)
