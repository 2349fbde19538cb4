"""Real-time prediction on the real stack: train the four forecasting questions on the first
part of the sample, stream the rest, every eligible bar forecast (next close, its 90 %
interval, range, variance: each by its model, or by the naive baseline when the model was not
significantly better), forecasts judged when the next bar arrives, and models retrained
mid-stream served from the next micro-batch without a restart."""

from __future__ import annotations

import math
import os
import signal
import subprocess

import pytest

from finstream.core import skill
from finstream.core.questions import SERVED
from finstream.core.questions import served as served_questions
from finstream.core.series_sets import SeriesSet
from finstream.features.spec import FORECAST_FEATURES
from finstream.ops import kibana
from finstream.stores import registry
from producer import samples
from tests.integration.conftest import wait_for_champions, wait_until
from tests.kibana_vega import chart_values, to_svg, with_values

GOOG = samples.load_bars("goog-daily")
FIRST, SECOND, THIRD = GOOG[:1500], GOOG[1500:1700], GOOG[1700:1800]
QUESTIONS = SERVED  # lags, range, volatility, interval
MODEL_FIELDS = {q.name: q.model_fields for q in served_questions()}
TRAIN = ("--questions", ",".join(QUESTIONS), "--models", "linear", "--folds", "0")
# Retrained mid-stream: a price question and the interval, each new version made the champion
# (--promote) so that the switch is certain; the other two keep their versions.
RETRAINED = ("lags", "interval")
RETRAIN = ("--questions", ",".join(RETRAINED), "--models", "linear", "--folds", "0", "--promote")
GOOG_SET = SeriesSet("day", 1, "stocks")  # what training on GOOG's daily bars registers for


def served(settings) -> dict[str, tuple[str, str]]:
    """What each question's champion serves: (model or baseline, registered model/version)."""
    client, result = registry.client(settings), {}
    for question in QUESTIONS:
        name = registry.model_name(question, GOOG_SET)
        champion = registry.champion(client, name)
        kind = client.get_run(champion.run_id).data.params["served"]
        result[question] = (kind, f"{name}/{champion.version}")
    return result


def publish(pipeline, bars) -> None:
    pipeline.publish([(b.key, b.to_json()) for b in bars])


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_every_new_bar_is_predicted_judged_and_served_by_the_champion(pipeline, tmp_path):
    settings = pipeline.settings
    index = settings.es_index_predictions

    # No model yet: the bars are indexed, and each question's reference baseline forecasts every
    # bar with 20 before it, labelled as such; the job says once that no champion exists. One
    # job runs throughout, in batches of at most 500 messages.
    publish(pipeline, FIRST)
    pipeline.publish([(b"GOOG", b'{"ticker": "GOOG"')])  # one dead letter, for the dashboard
    log_path = tmp_path / "stream.log"
    stream = pipeline.start_stream(log_path, STREAM_TRIGGER_INTERVAL="1 second",
                                   STREAM_MAX_OFFSETS_PER_TRIGGER="500")
    try:
        wait_until(lambda: pipeline.es().indices.exists(index=index) and pipeline.count(index) == len(FIRST) - 20,
                   240, "the baselines' predictions", interval=2)
        assert pipeline.count(settings.es_index_bars) == len(FIRST)
        baseline_docs = pipeline.documents(index)
        assert set(baseline_docs) == {b.doc_id for b in FIRST[20:]}
        assert {(d["model"], d["model_version"], d["interval_model"], d["interval_version"])
                for d in baseline_docs.values()} == {("persistence", "baseline", "rolling_std_normal", "baseline")}
        assert log_path.read_text().count("no champion model for") == 1, log_path.read_text()[-3000:]

        pipeline.train(*TRAIN)
        v1 = served(settings)
        # Linear models on 1 200 training days: the holdout's DM test keeps at least one of them
        # from serving, and that question's naive baseline serves instead.
        assert {name for name, _ in v1.values()} & {"persistence", "mean_range_5", "ewma", "rolling_std_normal"}
        wait_for_champions(settings)  # the running job installs them: no restart
        publish(pipeline, SECOND)
        wait_until(lambda: pipeline.count(index) == len(FIRST) - 20 + len(SECOND), 240,
                   "the second slice's predictions", interval=2)
        trained = pipeline.train(*RETRAIN)
        v2 = served(settings)
        assert {q for q in QUESTIONS if v2[q][1] != v1[q][1]} == set(RETRAINED)
        # Each question's new version took the champion alias (here: every retrained one), else
        # the champion stays.
        client = registry.client(settings)
        for question in QUESTIONS:
            name = registry.model_name(question, GOOG_SET)
            newest = max(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
            moved = f"{name} version {newest} as champion" in trained.stdout + trained.stderr
            assert v2[question][1] == (f"{name}/{newest}" if moved else v1[question][1])
        wait_for_champions(settings)  # the running job installs them: no restart
        publish(pipeline, THIRD)
        last_of_second = SECOND[-1].doc_id

        def judged_through_third() -> bool:
            docs = pipeline.documents(index)
            return (len(docs) == len(FIRST) - 20 + len(SECOND) + len(THIRD)
                    and "actual_close" in docs.get(last_of_second, {})
                    and sum("actual_close" in d for d in docs.values()) == len(docs) - 1)

        wait_until(judged_through_third, 240, "the third slice's predictions and actuals", interval=2)
    finally:
        stop(stream)
        output = log_path.read_text()

    docs = pipeline.documents(index)
    assert set(docs) == {b.doc_id for b in GOOG[20:1800]}  # one per bar with 20 before it
    for bars, versions in ((SECOND, v1), (THIRD, v2)):
        for question, (name, version) in versions.items():
            name_field, version_field, run_field = MODEL_FIELDS[question]
            assert {(docs[b.doc_id][name_field], docs[b.doc_id][version_field]) for b in bars} == {(name, version)}
            assert len({docs[b.doc_id][run_field] for b in bars}) == 1  # the MLflow run that trained it
    assert all(f"serving {version} (" in output for q, (_, version) in v2.items())

    streamed = SECOND + THIRD
    for bar, following in zip(streamed, streamed[1:], strict=False):
        doc = docs[bar.doc_id]
        assert doc["timestamp"] == bar.timestamp and doc["last_close"] == bar.close
        assert doc["lower"] < bar.close < doc["upper"] and doc["predicted_range"] > 0 and doc["predicted_variance"] > 0
        if doc["model"] == "persistence":  # the fallback: the last close, exactly
            assert doc["predicted_close"] == bar.close and doc["predicted_return"] == 0.0
        assert doc["actual_close"] == following.close and doc["actual_timestamp"] == following.timestamp
        assert doc["error"] == pytest.approx(doc["predicted_close"] - following.close)
        assert doc["baseline_error"] == pytest.approx(bar.close - following.close)
        assert doc["inside_interval"] == float(doc["lower"] <= following.close <= doc["upper"])
        assert doc["actual_range"] == pytest.approx(math.log(following.high / following.low))
        assert doc["range_error"] == pytest.approx(doc["predicted_range"] - doc["actual_range"])
        assert doc["actual_variance"] == pytest.approx(math.log(following.close / bar.close) ** 2)
        assert ("variance_loss" in doc) == (following.close != bar.close)
        if "variance_loss" in doc:
            assert doc["variance_loss"] == pytest.approx(skill.qlike(doc["predicted_variance"], doc["actual_variance"]))
        assert sorted(doc["features"]) == sorted(FORECAST_FEATURES)
        assert doc["latency_ms"] == doc["predicted_at"] - doc["published_at"] >= 0
    assert "actual_close" not in docs[THIRD[-1].doc_id]  # its next bar has not arrived
    served_docs = [docs[b.doc_id] for b in streamed[:-1]]
    coverage = sum(d["inside_interval"] for d in served_docs) / len(served_docs)
    assert 0.7 < coverage <= 1.0  # a 90 % interval, on 299 days

    check_dashboards(pipeline)


def check_dashboards(pipeline) -> None:
    """Every Kibana chart's query, as Kibana expands it, runs on this run's indices and feeds
    its chart real rows; the charts render, and the numbers they show are the documents'."""
    settings = pipeline.settings
    es = pipeline.es()
    everything = (0, 4_102_444_800_000)  # the dashboard's time picker set wide: 1970-2100
    values = {}
    for chart in kibana.charts():
        spec = chart.spec(settings)
        values[chart.id] = chart_values(es, spec, everything)
        assert values[chart.id], f"{chart.id}: no rows from {chart.index(settings)}"
        assert "<path" in to_svg(with_values(spec, values[chart.id])), chart.id

    def total(chart_id: str, metric: str, field: str = "value") -> float:
        return sum(b[metric][field] for row in values[chart_id] for b in row["series"]["buckets"])

    assert sum(row["doc_count"] for row in values["finstream-dead-letters"]
               if row["key"] == "malformed JSON") == 1
    assert total("finstream-volume", "m0") == pytest.approx(sum(b.volume for b in FIRST + SECOND + THIRD))
    assert {row["key"] for row in values["finstream-throughput"]} == {"index-bars", "predict-bars"}
    judged = [d for d in pipeline.documents(settings.es_index_predictions).values() if "error" in d]
    assert total("finstream-live-error", "m0", "count") == len(judged)
    assert total("finstream-live-error", "m0", "sum_of_squares") == pytest.approx(sum(d["error"] ** 2 for d in judged))
