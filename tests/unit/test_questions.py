"""A question is declared once: a toy question, declared here only, with its forecaster,
flows into the predictions mapping, the state step's documents and their judging, the
live-skill sums and watch, the pipeline-metrics fields and the Kibana charts."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from finstream.core import schema as S
from finstream.core.questions import QUESTIONS, LiveSkill, Question, registered_model_name, served, watched
from finstream.core.series_sets import SeriesSet
from finstream.features.spec import FORECAST_FEATURES
from finstream.ops import kibana
from finstream.serving import forecasters
from finstream.serving.forecasters import QuestionForecaster, forecaster
from finstream.serving.installed import ServedModel
from finstream.serving.live_skill import LiveSkillWatch
from finstream.serving.state_step import empty_window, transition

# The next bar's log(high / low), forecast by the last bar's: a toy beside the range question.
TOY = Question(
    "toy", FORECAST_FEATURES, "next_log_range", kind="range", baselines=("last_range",),
    forecast_fields={"predicted_toy": "the next bar's log(high/low)", "baseline_toy": "the same"},
    judged_fields={"toy_error": "predicted_toy - actual", "toy_baseline_error": "baseline_toy - actual"},
    live=LiveSkill("toy_error", "toy_baseline_error", squared=True, chart_id="finstream-toy-skill",
                   chart_title="Live skill: toy", chart_description="The toy's RMSE over its baseline's."))


def build(model, served_kind, spec):
    def forecast(window, features):
        last = math.log(window["high"][-1] / window["low"][-1])
        return {"predicted_toy": last, "baseline_toy": last}
    return forecast


def judge(doc, high, low, close):
    actual = math.log(high / low)
    return {"toy_error": doc["predicted_toy"] - actual, "toy_baseline_error": doc["baseline_toy"] - actual}


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(forecasters.FORECASTERS, "toy", QuestionForecaster(TOY, build, judge))
    return TOY


def test_the_declared_questions():
    assert [q.name for q in served()] == ["lags", "range", "volatility", "interval"]
    assert [q.name for q in watched()] == ["lags", "range", "volatility"]
    assert not QUESTIONS["volume"].served and QUESTIONS["range"].reference == "mean_range_5"
    assert QUESTIONS["lags"].model_fields == ("model", "model_version", "model_run_id")
    assert registered_model_name("toy") == "finstream-toy"
    for question in served():  # every served question has its forecaster
        assert forecasters.FORECASTERS[question.name].question is question


def test_a_toy_question_flows_into_the_mappings(toy):
    mapping = S.prediction_mapping([*served(), toy])["properties"]
    assert {name: mapping[name]["type"] for name in ("predicted_toy", "baseline_toy", "toy_error", "toy_model",
                                                      "toy_version", "toy_run_id")} == {
        "predicted_toy": "double", "baseline_toy": "double", "toy_error": "double", "toy_model": "keyword",
        "toy_version": "keyword", "toy_run_id": "keyword"}
    assert "predicted_toy" not in S.prediction_mapping()["properties"]  # declared in this test only


def test_a_toy_question_is_forecast_and_judged_by_the_state_step(toy):
    model = ServedModel("finstream-toy-day1/1", "last_range",
                        forecaster({"question": "toy", "served": "last_range"}), SeriesSet("day"))
    day = 86_400_000
    bars = {"timestamp": [i * day + 10**12 for i in range(22)], "open": [100.0 + i for i in range(22)],
            "high": [103.0 + i * 1.1 for i in range(22)], "low": [99.0 + i for i in range(22)],
            "close": [101.0 + i for i in range(22)], "volume": [1e6] * 22, "vwap": [None] * 22,
            "published_at": list(range(22)), "kafka_offset": list(range(22))}
    step = transition(("AAA", "day", 1), empty_window(), None, bars, {"toy": (model,)}, 10**13, {})
    first, second = [row for row in step.rows if row["status"] == "predicted"]
    assert first["predicted_toy"] == math.log(bars["high"][20] / bars["low"][20])
    assert (first["toy_model"], first["toy_version"]) == ("last_range", "finstream-toy-day1/1")
    assert first["toy_error"] == first["predicted_toy"] - math.log(bars["high"][21] / bars["low"][21])
    assert "toy_error" not in second  # judged by the next bar, in a later batch
    assert set(first) - {"status"} <= set(S.prediction_properties([toy])) | {f"feature_{f}" for f in FORECAST_FEATURES}


def test_a_toy_questions_live_skill_is_summed_and_watched(toy, spark, tmp_path):
    from finstream.serving import predictor

    rows = pd.DataFrame({"status": ["predicted", "judged", "unscored", "predicted", "judged"],
                         "toy_error": [0.5, -1.0, None, 3.0, 1.0], "toy_baseline_error": [1.0, 2.0, None, 1.0, 1.0],
                         "toy_version": ["finstream-toy-day1/1"] * 3 + ["finstream-toy-hour1-fx/2", "baseline"]})
    observed = spark.createDataFrame(rows).agg(*predictor.live_skill_sums([toy])).first().asDict(recursive=True)
    assert observed == {"live_toy_judged": [  # summed per version in Spark; the baseline's rows are not watched
        {"version": "finstream-toy-day1/1", "loss": 1.25, "baseline": 5.0, "judged": 2},
        {"version": "finstream-toy-hour1-fx/2", "loss": 9.0, "baseline": 1.0, "judged": 1}]}
    entries = LiveSkillWatch(tmp_path, questions=[toy]).update(observed, batch_id=1)
    assert entries == [  # each set's champion on its own
        {"live_question": "toy", "live_version": "finstream-toy-day1/1", "live_set": "", "live_loss_ratio": 0.25,
         "live_judged": 2},
        {"live_question": "toy", "live_version": "finstream-toy-hour1-fx/2", "live_set": "", "live_loss_ratio": 9.0,
         "live_judged": 1}]


def test_a_toy_question_gets_its_kibana_charts(toy):
    (chart,) = kibana.skill_charts([toy])
    assert chart.id == "finstream-toy-skill" and chart.index_setting == "es_index_predictions"
    assert [(m.label, m.agg, m.field) for m in chart.metrics] == [
        ("served", "extended_stats", "toy_error"), ("last_range", "extended_stats", "toy_baseline_error")]
    fields = S.prediction_properties([toy])
    assert all(fields[m.field]["type"] == "double" for m in chart.metrics)
    assert [m.field for m in kibana.live_skill_chart().metrics] == ["live_loss_ratio"]
    assert kibana.live_skill_chart().split == "live_version"  # one line per series set's champion
