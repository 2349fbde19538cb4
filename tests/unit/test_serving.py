"""Real-time prediction: the per-series state, and no training/serving skew (the stream,
fed the bars over many micro-batches, computes the trainer's features and predictions)."""

from __future__ import annotations

import json
import logging
import math
import os

import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from finstream import modelstore
from finstream.config import Settings
from finstream.schema import BAR_FIELDS, LAG_FEATURES
from finstream.spark import serving
from finstream.spark.bars import bar_doc_id
from finstream.spark.features import HISTORY_BARS, with_features
from finstream.spark.schema import bar_schema
from finstream.spark.training import fit, predict

DAY = 86_400_000
T0 = 1_600_000_000_000


class FakeState:
    """The GroupState surface keep_history uses."""

    def __init__(self, value=None, timed_out=False, watermark=-1):
        self.value, self.hasTimedOut, self.watermark, self.timeout, self.removed = value, timed_out, watermark, None, False

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


def incoming(*steps: int, offset0: int = 0, vwap=None) -> pd.DataFrame:
    return pd.DataFrame({
        "timestamp": [T0 + s * DAY for s in steps], "open": [100.0 + s for s in steps],
        "high": [102.0 + s for s in steps], "low": [99.0 + s for s in steps], "close": [101.0 + s for s in steps],
        "volume": [1e6] * len(steps), "vwap": [vwap] * len(steps),
        "published_at": [T0 + 10**9 + i for i in range(len(steps))],
        "kafka_offset": [offset0 + i for i in range(len(steps))],
    })


def run(state: FakeState, frame: pd.DataFrame, key=("AAA", "day", 1)) -> pd.DataFrame:
    out = list(serving.keep_history(key, iter([frame]), state, idle_hours=24))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def test_new_bars_are_sorted_and_remembered_up_to_the_history_length():
    state = FakeState()
    rows = run(state, incoming(*reversed(range(30))))
    assert list(rows["status"]) == ["new"] * 30
    assert list(rows["timestamp"]) == [T0 + s * DAY for s in range(30)]
    timestamps = state.value[0]
    assert timestamps == [T0 + s * DAY for s in range(30 - HISTORY_BARS, 30)]
    assert state.value[-1] == [None] * HISTORY_BARS  # vwap absent stays null, not NaN


def test_next_batch_sees_the_history_before_its_new_bars():
    state = FakeState()
    run(state, incoming(*range(25)))
    rows = run(state, incoming(25, 26, offset0=100))
    assert list(rows["status"]) == ["history"] * (HISTORY_BARS - 1) + ["answered", "new", "new"]
    assert rows["timestamp"].is_monotonic_increasing
    assert rows.loc[rows["status"].isin(["history", "answered"]), "published_at"].isna().all()
    assert set(rows["ticker"]) == {"AAA"} and set(rows["multiplier"]) == {1}


def test_late_and_duplicate_bars_are_marked_and_not_remembered():
    state = FakeState()
    run(state, incoming(*range(0, 10, 2)))  # bars 0, 2, 4, 6, 8
    before = state.value
    rows = run(state, incoming(3, 8, 10, 10, offset0=50))
    marked = dict(zip(rows["timestamp"] - T0, rows["status"]))
    assert marked[3 * DAY] == "late" and marked[8 * DAY] in ("answered", "duplicate")
    assert list(rows.loc[rows["timestamp"] == T0 + 10 * DAY, "status"]) == ["duplicate", "new"]
    assert state.value[0] == before[0] + [T0 + 10 * DAY]
    # the last published copy of bar 10 (offset 53) is the one remembered
    assert rows.loc[(rows["timestamp"] == T0 + 10 * DAY) & (rows["status"] == "new"), "open"].item() == 110.0


def test_idle_series_time_out_and_are_forgotten():
    state = FakeState()
    run(state, incoming(0, 1))
    assert state.timeout == T0 + 10**9 + 1 + 3 * DAY  # three daily bars: longer than 24 h
    monthly = FakeState()
    run(monthly, incoming(0), key=("X:BTCUSD", "month", 1))
    assert monthly.timeout - (T0 + 10**9) == 3 * 31 * DAY  # three bars, longer than a day
    timed_out = FakeState(value=state.value, timed_out=True)
    assert list(serving.keep_history(("AAA", "day", 1), iter([]), timed_out, idle_hours=24)) == []
    assert timed_out.removed


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


@pytest.fixture(scope="module")
def equality_run(spark, tmp_path_factory):
    """Trains on the first 60 bars of each series with the trainer's code, then streams all
    90 through the predictor in micro-batches of uneven sizes (file source, one file per
    batch) and collects what it would write."""
    bars = sample_bars(spark, 90)
    frame = spark.createDataFrame(bars, bar_schema())
    training = with_features(frame, serving.QUESTION)
    train_rows = training.where(F.col("labelled") & (F.col("timestamp") < T0 + 60 * DAY))
    model = fit(train_rows, serving.QUESTION, "linear", {"regParam": 0.0})
    served = serving.ServedModel("v-test", "linear", model, "day", 1, ())
    offline = predict(model, training.where("eligible"), serving.QUESTION)
    offline = {r.doc_id: r for r in offline.withColumn("doc_id", bar_doc_id(offline)).collect()}

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
    settings = Settings.load()
    written: dict[str, dict] = {}  # what the predictions index holds: upserts merge non-null fields
    predicted_counts, updates, batches = [], [], []

    def collect(rows, batch_id):
        summary = serving.summarize(rows)
        earlier = {i: written[i]["predicted_close"] for i in summary.answered if i in written}
        documents = serving.documents(serving.feature_rows(rows), served, 0, earlier)
        predicted = 0
        for doc in documents.collect() if documents is not None else []:
            fields = {k: v for k, v in doc.asDict(recursive=True).items() if v is not None}
            if "model_version" not in fields:
                updates.append(fields)
            predicted += "model_version" in fields
            written.setdefault(doc.doc_id, {}).update(fields)
        predicted_counts.append((summary["new"], predicted))
        batches.append(batch_id)

    query = (serving.series_rows(stream, settings).writeStream.outputMode("update").foreachBatch(collect)
             .option("checkpointLocation", str(tmp_path_factory.mktemp("checkpoint")))
             .trigger(availableNow=True).start())
    query.awaitTermination()
    return offline, written, updates, batches, predicted_counts


def test_stream_runs_many_micro_batches(equality_run):
    offline, online, _, batches, predicted_counts = equality_run
    assert len(batches) >= 8
    assert sum(new for new, _ in predicted_counts) == 2 * 90  # every bar is new once
    assert sum(predicted for _, predicted in predicted_counts) == len(online)


def test_stream_predicts_every_eligible_bar_once(equality_run):
    offline, online, *_ = equality_run
    assert set(online) == set(offline)
    assert len(online) == 2 * (90 - (HISTORY_BARS - 1))  # every bar with 20 before it


def test_stream_features_and_predictions_equal_the_trainers(equality_run):
    offline, online, *_ = equality_run
    for doc_id, doc in online.items():
        expected = offline[doc_id]
        assert [doc["features"][f] for f in LAG_FEATURES] == [expected[f] for f in LAG_FEATURES], doc_id
        assert doc["predicted_close"] == expected.predicted_close
        assert doc["predicted_return"] == expected.prediction
        assert doc["model_version"] == "v-test" and doc["target"] == "next_close"


def test_every_prediction_but_the_last_gets_its_actual(equality_run):
    offline, online, updates, *_ = equality_run
    last = {max((d for d in online.values() if d["ticker"] == t), key=lambda d: d["timestamp"])["doc_id"]
            for t in ("AAA", "BBB")}
    assert {i for i, d in online.items() if "actual_close" in d} == set(online) - last
    for doc_id, doc in online.items():
        if doc_id in last:
            continue
        expected = offline[doc_id]
        assert doc["actual_close"] == expected.next_close and doc["actual_timestamp"] == expected.next_timestamp
        assert doc["error"] == pytest.approx(doc["predicted_close"] - expected.next_close)
        assert doc["baseline_error"] == pytest.approx(expected.close - expected.next_close)
    assert updates, "some bars' next bar came in a later batch: judged by a partial document"
    assert all(set(u) == {"doc_id", "actual_timestamp", "actual_close", "error", "abs_error", "baseline_error"}
               for u in updates)


# --- the served model ---------------------------------------------------------------------------
def publish_model(model_dir, version, features=LAG_FEATURES):
    folder = modelstore.version_dir(model_dir, "lags", version)
    (folder / "model").mkdir(parents=True)
    modelstore.publish(model_dir, "lags", version, {"features": list(features), "model": "linear",
                                                    "series": {"timespan": "day", "multiplier": 1, "tickers": []}})


def test_registry_warns_once_without_a_model_then_hot_reloads(tmp_path, caplog):
    loads = []
    registry = serving.ModelRegistry(tmp_path, loader=lambda path: loads.append(path) or object())
    with caplog.at_level(logging.WARNING, logger="finstream.predict"):
        assert registry.current() is None and registry.current() is None
    assert sum("no model at" in r.message for r in caplog.records) == 1
    publish_model(tmp_path, "v1")
    assert registry.current().version == "v1" and registry.current().version == "v1"
    publish_model(tmp_path, "v2")
    assert registry.current().version == "v2"
    assert len(loads) == 2  # loaded once per version, not per batch


def test_registry_keeps_serving_when_a_new_model_cannot_be_used(tmp_path, caplog):
    registry = serving.ModelRegistry(tmp_path, loader=lambda path: object())
    publish_model(tmp_path, "v1")
    assert registry.current().version == "v1"
    publish_model(tmp_path, "v2", features=("volume",))
    with caplog.at_level(logging.ERROR, logger="finstream.predict"):
        assert registry.current().version == "v1"
    assert "retrain it" in caplog.text and "still serving v1" in caplog.text
