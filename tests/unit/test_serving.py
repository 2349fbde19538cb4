"""Real-time prediction: the per-series state step, and no training/serving skew (the stream,
fed the bars over many micro-batches, computes the trainer's features and MLlib's
predictions, float for float)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os

import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from finstream.core import schema as S
from finstream.core import skill
from finstream.core.config import Settings
from finstream.core.questions import QUESTIONS, SERVED
from finstream.core.schema import BAR_FIELDS
from finstream.features.columns import with_features
from finstream.features.spec import FORECAST_FEATURES, HISTORY_BARS, LAG_FEATURES
from finstream.ingest.spark_types import bar_schema
from finstream.serving import installed, predictor
from finstream.serving.installed import ServedForecasts, ServedModels
from finstream.serving.state_step import STATE_BARS
from finstream.training import evaluation as E
from finstream.training.export import scoring_spec
from finstream.training.selection import fit

DAY = 86_400_000
T0 = 1_600_000_000_000
NOW = 1_700_000_000_000  # the job's clock in the state step


class FakeState:
    """The GroupState surface keep_history uses."""

    def __init__(self, value=None, timed_out=False, watermark=-1):
        self.value, self.hasTimedOut, self.watermark = value, timed_out, watermark
        self.timeout, self.removed = None, False

    @property
    def exists(self):
        return self.value is not None

    @property
    def get(self):
        return self.value

    def update(self, value):
        self.value = value

    def remove(self):
        self.value, self.removed = None, True

    def setTimeoutTimestamp(self, ms):  # noqa: N802 - Spark's name
        self.timeout = ms

    def getCurrentWatermarkMs(self):  # noqa: N802
        return self.watermark


def incoming(*steps: int, offset0: int = 0, vwap=None, series=("AAA", "day", 1)) -> pd.DataFrame:
    ticker, timespan, multiplier = series
    return pd.DataFrame({
        "ticker": [ticker] * len(steps), "timespan": [timespan] * len(steps), "multiplier": [multiplier] * len(steps),
        "timestamp": [T0 + s * DAY for s in steps], "open": [100.0 + s for s in steps],
        "high": [102.0 + s for s in steps], "low": [99.0 + s for s in steps], "close": [101.0 + s for s in steps],
        "volume": [1e6] * len(steps), "vwap": [vwap] * len(steps),
        "published_at": [T0 + 10**9 + i for i in range(len(steps))],
        "kafka_offset": [offset0 + i for i in range(len(steps))],
    })


def run(state: FakeState, *frames: pd.DataFrame, model_dir="/nonexistent", now=NOW) -> pd.DataFrame:
    out = list(predictor.predict_bucket((7,), iter(frames), state, model_dir=str(model_dir), idle_hours=24,
                                        clock=lambda: now / 1000))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def remembered(state: FakeState, series=("AAA", "day", 1)) -> dict:
    """The series' entry in the bucket's state: its window and pending prediction."""
    return json.loads(state.value[0][predictor.series_key(series)])


def test_new_bars_are_sorted_and_remembered_up_to_the_history_length():
    state = FakeState()
    rows = run(state, incoming(*reversed(range(30))))
    # no champion: the reference baselines forecast each bar with 20 before it; history kept
    assert list(rows["status"]) == ["unscored"] * 20 + ["predicted"] * 10
    assert list(rows["doc_id"]) == [f"AAA|1|day|{T0 + s * DAY}" for s in range(30)]
    entry = remembered(state)
    assert entry["window"]["timestamp"] == [T0 + s * DAY for s in range(30 - STATE_BARS, 30)]
    assert entry["window"]["vwap"] == [None] * STATE_BARS  # vwap absent stays null, not NaN
    assert entry["pending"]["model_version"] == "baseline"  # the prediction at the newest bar


def test_a_bucket_keeps_each_series_apart_and_rewrites_only_those_with_bars():
    state = FakeState()
    other = ("C:EURUSD", "hour", 1)
    rows = run(state, incoming(*range(25)), incoming(*range(3), series=other))  # two frames, two series
    assert sorted(set(rows["ticker"].dropna())) == ["AAA"]  # EURUSD: 3 bars, unscored
    assert (rows["doc_id"].str.startswith("C:EURUSD").sum(), len(rows)) == (3, 28)
    untouched = state.value[0][predictor.series_key(other)]
    rows = run(state, incoming(25))
    assert list(rows["status"]) == ["judged", "predicted"]  # AAA's bar 24 judged by bar 25
    assert state.value[0][predictor.series_key(other)] == untouched
    assert remembered(state)["window"]["close"][-1] == 126.0


def test_a_window_survives_the_state_float_for_float():
    state = FakeState()
    frame = incoming(*range(21))
    frame["close"] = [100.0 + 1 / 3 * s for s in range(21)]
    run(state, frame)
    assert remembered(state)["window"]["close"] == [100.0 + 1 / 3 * s for s in range(21 - STATE_BARS, 21)]


def test_late_and_duplicate_bars_are_marked_and_not_remembered():
    state = FakeState()
    run(state, incoming(*range(0, 10, 2)))  # bars 0, 2, 4, 6, 8
    before = remembered(state)["window"]["timestamp"]
    rows = run(state, incoming(3, 8, 10, 10, offset0=50))
    marked = list(zip(rows["doc_id"], rows["status"], strict=False))
    assert marked == [(f"AAA|1|day|{T0 + 3 * DAY}", "late"), (f"AAA|1|day|{T0 + 8 * DAY}", "duplicate"),
                      (f"AAA|1|day|{T0 + 10 * DAY}", "duplicate"), (f"AAA|1|day|{T0 + 10 * DAY}", "unscored")]
    assert remembered(state)["window"]["timestamp"] == before + [T0 + 10 * DAY]
    # the last published copy of bar 10 (offset 53) is the one remembered
    assert remembered(state)["window"]["open"][-1] == 110.0


def test_idle_series_time_out_and_are_forgotten():
    state = FakeState()
    run(state, incoming(0, 1))
    assert state.timeout == NOW + 3 * DAY  # on the job's clock: three daily bars, longer than 24 h
    monthly = FakeState()
    run(monthly, incoming(0, series=("X:BTCUSD", "month", 1)))
    assert monthly.timeout == NOW + 3 * 31 * DAY  # three bars, longer than a day
    behind = FakeState(watermark=NOW + 10 * DAY)  # never at or below the watermark
    run(behind, incoming(0))
    assert behind.timeout == NOW + 10 * DAY + 1
    # Two series in one bucket: the bucket times out at the earlier one, which alone is forgotten.
    run(state, incoming(0, series=("X:BTCUSD", "month", 1)), now=NOW + DAY)
    assert state.timeout == NOW + 3 * DAY
    timed_out = FakeState(value=state.value, timed_out=True, watermark=NOW + 3 * DAY + 1)
    assert run(timed_out).empty
    assert list(timed_out.value[0]) == [predictor.series_key(("X:BTCUSD", "month", 1))]
    assert timed_out.timeout == NOW + DAY + 3 * 31 * DAY and not timed_out.removed
    last = FakeState(value=timed_out.value, timed_out=True, watermark=NOW + 100 * DAY)
    assert run(last).empty
    assert last.removed and last.value is None


# --- training/serving equality ----------------------------------------------------------------
def sample_bars(spark, n: int):
    """Two tickers of real-looking daily bars (with vwap on one of them)."""
    rows = []
    for ticker, start, vwap in (("AAA", 100.0, False), ("BBB", 20.0, True)):
        price = start
        for i in range(n):
            price *= 1 + 0.012 * math.sin(i / 2.7) + 0.004 * math.cos(i * 1.3)
            rows.append({"ticker": ticker, "timespan": "day", "multiplier": 1, "timestamp": T0 + i * DAY,
                         "open": price * (1 - 0.003 * math.cos(i)), "high": price * 1.012, "low": price * 0.987,
                         "close": price, "volume": 1e6 + 3e4 * ((i * 7) % 11),
                         "vwap": price * 1.001 if vwap else None, "transactions": None, "source": "test"})
    return rows


def publish_trained(model_dir, question: str, spec: dict) -> None:
    """As the stream driver installs a champion train.py registered."""
    installed.install(model_dir, question, "v-test", spec,
                       {"model": spec["served"], "series": {"timespan": "day", "multiplier": 1, "tickers": []}})


def trained_forecasts(spark, bars, kind: str, model_dir) -> dict[str, dict]:
    """Fits `kind` for each served question on the first 60 bars of each series with the
    trainer's code, publishes it as train.py does, and returns what the trainer computes for
    every eligible bar: its features, and each question's forecasts (finstream.core.skill's frame)."""
    frame = spark.createDataFrame(bars, bar_schema())
    params = {"regParam": 0.0} if kind == "linear" else {"maxIter": 10, "maxDepth": 3, "seed": 1}
    featured = with_features(frame, QUESTIONS["interval"]).where("eligible")  # every served column
    offline = {S.bar_doc_id(r.ticker, r.timespan, r.multiplier, r.timestamp): r.asDict()
               for r in featured.select(*E.KEYS, "next_close", "next_log_range", "next_sq_return", "close",
                                        *FORECAST_FEATURES).collect()}
    for name in SERVED:
        question = QUESTIONS[name]
        rows = with_features(frame, question)
        train_rows = rows.where(F.col("labelled") & (F.col("timestamp") < T0 + 60 * DAY))
        model = fit(train_rows, question, kind, params)
        saved = installed.version_dir(model_dir, name, "day1", "v-test") / "model"
        model.write().save(str(saved))
        spec = {"question": name, "served": kind, "regressor": scoring_spec(model, kind, question.features, saved)}
        quantiles = {kind: E.model_quantiles(model, question, train_rows)} if name == "interval" else {}
        if quantiles:
            spec["quantiles"] = list(quantiles[kind])
        publish_trained(model_dir, name, spec)
        scored = E.scored_frame(rows.where("eligible"), question, train_rows, {kind: model}, quantiles)
        for record in scored.to_dict("records"):
            doc_id = S.bar_doc_id(record["ticker"], record["timespan"], record["multiplier"], record["timestamp"])
            offline[doc_id].update({f"{name}/{k}": v for k, v in record.items() if ":" in k})
    return offline


@pytest.fixture(scope="module", params=["linear", "gbt"])
def equality_run(request, spark, tmp_path_factory):
    """Trains on the first 60 bars of each series with the trainer's code and publishes the
    models, then streams all 90 through the predictor in micro-batches of uneven sizes (file
    source, one file per batch) and collects what it would write."""
    kind = request.param
    bars = sample_bars(spark, 90)
    model_dir = tmp_path_factory.mktemp("models")
    offline = trained_forecasts(spark, bars, kind, model_dir)

    source = tmp_path_factory.mktemp("bars")
    ordered = sorted(bars, key=lambda b: (b["timestamp"], b["ticker"]))
    sizes, start, batch = [1, 3, 19, 2, 40, 7, 25, 60, 13], 0, 0
    while start < len(ordered):
        chunk = ordered[start:start + sizes[batch % len(sizes)]]
        # Within a batch the order does not matter: write each chunk reversed.
        lines = [json.dumps({**b, "published_at": T0 + start + i, "kafka_offset": start + i})
                 for i, b in enumerate(chunk)][::-1]
        path = source / f"{batch:04d}.json"
        path.write_text("\n".join(lines) + "\n")
        os.utime(path, (1_700_000_000 + batch, 1_700_000_000 + batch))  # the file source reads by mtime
        start, batch = start + len(chunk), batch + 1

    schema = T.StructType([T.StructField(f.name, bar_schema()[f.name].dataType) for f in BAR_FIELDS]
                          + [T.StructField("published_at", T.LongType()), T.StructField("kafka_offset", T.LongType())])
    stream = spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).json(str(source))
    settings = dataclasses.replace(Settings.load(), model_dir=str(model_dir))
    written: dict[str, dict] = {}  # what the predictions index holds: each write replaces a document
    statuses, updates, batches = [], [], []

    def collect(rows, batch_id):
        rows = rows.persist()
        statuses.append(dict(rows.groupBy("status").count().collect()))
        judged = {r.doc_id for r in rows.where(F.col("status") == "judged").select("doc_id").collect()}
        for doc in predictor.documents(rows).collect():
            fields = {k: v for k, v in doc.asDict(recursive=True).items() if v is not None}
            if doc.doc_id in judged:
                updates.append((written[doc.doc_id], fields))
            written[doc.doc_id] = fields
        rows.unpersist()
        batches.append(batch_id)

    query = (predictor.prediction_rows(stream, settings).writeStream.outputMode("update").foreachBatch(collect)
             .option("checkpointLocation", str(tmp_path_factory.mktemp("checkpoint")))
             .trigger(availableNow=True).start())
    query.awaitTermination()
    return (kind, offline), written, updates, batches, statuses


def test_stream_runs_many_micro_batches(equality_run):
    _, online, _, batches, statuses = equality_run
    assert len(batches) >= 8
    assert sum(s.get("predicted", 0) + s.get("unscored", 0) for s in statuses) == 2 * 90  # every bar new once
    assert sum(s.get("predicted", 0) for s in statuses) == len(online)


def test_stream_predicts_every_eligible_bar_once(equality_run):
    (_, offline), online, *_ = equality_run
    assert set(online) == set(offline)
    assert len(online) == 2 * (90 - (HISTORY_BARS - 1))  # every bar with 20 before it


def test_stream_features_and_forecasts_equal_the_trainers(equality_run):
    """Features and the regressors' outputs are the same floats; what is derived through a
    logarithm or an exponential (the baselines, the floored variance, the interval) agrees to
    1e-12: the JVM's and Python's log/exp may differ in the last bit."""
    (kind, offline), online, *_ = equality_run
    close = pytest.approx
    for doc_id, doc in online.items():
        expected = offline[doc_id]
        assert [doc["features"][f] for f in FORECAST_FEATURES] == [expected[f] for f in FORECAST_FEATURES], doc_id
        assert doc["predicted_close"] == expected[f"lags/f:{kind}"]
        assert doc["predicted_range"] == expected[f"range/f:{kind}"]
        assert doc["baseline_range"] == close(expected["range/f:mean_range_5"], rel=1e-12)
        assert doc["predicted_variance"] == close(expected[f"volatility/f:{kind}"], rel=1e-12)
        assert doc["baseline_variance"] == close(expected["volatility/f:ewma"], rel=1e-12)
        assert doc["lower"] == close(expected[f"interval/lo:{kind}"], rel=1e-12)
        assert doc["upper"] == close(expected[f"interval/hi:{kind}"], rel=1e-12)
        assert doc["lower"] < doc["last_close"] < doc["upper"]
        for question in ("model", "interval_model", "range_model", "volatility_model"):
            assert doc[question] == kind
        assert doc["model_version"] == "finstream-lags-day1/v-test"
        assert doc["interval_version"] == "finstream-interval-day1/v-test"
        assert doc["target"] == "next_close"


def test_every_prediction_but_the_last_gets_its_actual(equality_run):
    (_, offline), online, updates, *_ = equality_run
    last = {max((d for d in online.values() if d["ticker"] == t), key=lambda d: d["timestamp"])["doc_id"]
            for t in ("AAA", "BBB")}
    assert {i for i, d in online.items() if "actual_close" in d} == set(online) - last
    close = pytest.approx
    for doc_id, doc in online.items():
        if doc_id in last:
            continue
        expected = offline[doc_id]
        assert doc["actual_close"] == expected["next_close"]
        assert doc["error"] == close(doc["predicted_close"] - expected["next_close"])
        assert doc["baseline_error"] == close(expected["close"] - expected["next_close"])
        assert doc["inside_interval"] == float(doc["lower"] <= expected["next_close"] <= doc["upper"])
        assert doc["interval_score"] == close(float(skill.interval_score(
            doc["lower"] / doc["last_close"] - 1, doc["upper"] / doc["last_close"] - 1,
            expected["next_close"] / doc["last_close"] - 1)), rel=1e-12)
        assert doc["actual_range"] == close(expected["next_log_range"], rel=1e-12)
        assert doc["range_error"] == close(doc["predicted_range"] - expected["next_log_range"], rel=1e-9)
        assert doc["actual_variance"] == close(expected["next_sq_return"], rel=1e-9)
        assert doc["variance_loss"] == close(float(skill.qlike(doc["predicted_variance"], expected["next_sq_return"])),
                                             rel=1e-6)
    assert updates, "some bars' next bar came in a later batch: their documents are written again"
    judged_fields = {"actual_timestamp", "actual_close", "error", "abs_error", "baseline_error", "inside_interval",
                     "interval_score", "actual_range", "range_error", "range_baseline_error", "actual_variance",
                     "variance_loss", "variance_baseline_loss"}
    for before, after in updates:  # the whole prediction again, unchanged, with its actual
        assert not judged_fields & set(before) and set(after) == set(before) | judged_fields
        assert {k: after[k] for k in before} == before


# --- the served model ---------------------------------------------------------------------------
LINEAR_SPEC = {"kind": "linear", "features": list(LAG_FEATURES), "mean": [0.0] * 12, "scale": [1.0] * 12,
               "coefficients": [0.0] * 12, "intercept": 0.001}


def publish_model(model_dir, version, features=LAG_FEATURES, spec=LINEAR_SPEC):
    """As the stream driver installs a champion (checked, then pointed at)."""
    installed.install(model_dir, "lags", version, {**spec, "features": list(features)},
                       {"features": list(features), "model": "linear",
                        "series": {"timespan": "day", "multiplier": 1, "tickers": []}})


def point_at(model_dir, version, scorer: str, metadata: str = '{"series": {"timespan": "day", "multiplier": 1}}'):
    """CHAMPION naming files that do not serve (damaged after their install)."""
    folder = installed.version_dir(model_dir, "lags", "day1", version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / installed.SCORER).write_text(scorer)
    (folder / installed.METADATA).write_text(metadata)
    (model_dir / "lags" / "day1" / installed.POINTER).write_text(version + "\n")


def test_served_models_without_a_model_then_hot_reload(tmp_path, caplog):
    models = ServedModels(tmp_path, "lags", "day1")
    assert models.current() is None and models.current() is None
    with caplog.at_level(logging.WARNING, logger="finstream.serving.installed"):
        forecasts = ServedForecasts(tmp_path, ("lags",))
        assert forecasts.current() == {} and forecasts.current() == {}
    assert sum("no champion model for lags yet" in r.message for r in caplog.records) == 1  # said once
    publish_model(tmp_path, "v1")
    first = models.current()
    assert first.version == "finstream-lags-day1/v1" and models.current() is first  # loaded once per version
    publish_model(tmp_path, "v2")
    assert models.current().version == "finstream-lags-day1/v2"


def test_a_model_that_cannot_serve_is_not_installed_and_the_installed_one_keeps_serving(tmp_path, caplog):
    models = ServedModels(tmp_path, "lags", "day1")
    publish_model(tmp_path, "v1")
    assert models.current().version == "finstream-lags-day1/v1"
    with pytest.raises(ValueError, match="retrain it"):
        publish_model(tmp_path, "v2", features=("volume",))  # other features than this code computes
    assert installed.installed_version(tmp_path, "lags", "day1") == "v1"
    point_at(tmp_path, "v3", "{truncated")  # damaged on disk after its install
    with caplog.at_level(logging.ERROR, logger="finstream.serving.installed"):
        assert models.current().version == "finstream-lags-day1/v1"
    assert "cannot serve lags model v3" in caplog.text and "still serving finstream-lags-day1/v1" in caplog.text
    assert ServedModels(tmp_path, "lags", "day1").current() is None  # a new worker: nothing that loads


def test_the_state_step_scores_with_the_published_model_and_judges_it_later(tmp_path):
    publish_model(tmp_path, "v1")
    state = FakeState()
    first = run(state, incoming(*range(21)), model_dir=tmp_path)
    assert list(first["status"]) == ["unscored"] * 20 + ["predicted"]
    predicted = first.iloc[-1]
    assert predicted["predicted_return"] == 0.001 and predicted["model_version"] == "finstream-lags-day1/v1"
    assert remembered(state)["pending"]["predicted_close"] == predicted["predicted_close"]
    second = run(state, incoming(21, offset0=30), model_dir=tmp_path)
    judged = second[second["status"] == "judged"].iloc[0]
    assert judged["doc_id"] == predicted["doc_id"] and judged["actual_close"] == 101.0 + 21
    assert judged["error"] == predicted["predicted_close"] - (101.0 + 21)
    assert judged["predicted_at"] == predicted["predicted_at"] and judged["feature_ret_1"] == predicted["feature_ret_1"]
    assert list(second["status"]) == ["judged", "predicted"]
