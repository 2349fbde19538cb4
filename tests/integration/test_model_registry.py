"""The model lifecycle on MLflow, with the real stream job running: it serves the registry's
champion and follows the alias without a restart (promote, rollback, both with the real
command), refuses a version it cannot serve, and warns when a served model's live skill leaves
the band its holdout promised (a model fitted to volatile days, served on calm ones)."""

from __future__ import annotations

import os
import signal

import numpy as np

from finstream.core import skill
from finstream.core.schema import Bar
from finstream.core.series_sets import SeriesSet
from finstream.features.spec import LAG_FEATURES
from finstream.stores import registry
from tests.integration.conftest import publish_baselines, register_version, wait_for_champions, wait_until
from tests.integration.test_reliability import DAY, START_MS

MODELS = (".venv/bin/python", "-m", "finstream.models")
DAILY = SeriesSet("day")
SERIES = DAILY.as_dict()
LAGS = registry.model_name("lags", DAILY)  # finstream-lags-day1


def drifting_lags(intercept: float, band: dict | None = None) -> tuple[dict, dict]:
    """A lags model that always forecasts a return of `intercept` (a linear scorer)."""
    n = len(LAG_FEATURES)
    regressor = {"kind": "linear", "features": list(LAG_FEATURES), "mean": [0.0] * n, "scale": [1.0] * n,
                 "coefficients": [0.0] * n, "intercept": intercept}
    return ({"question": "lags", "served": "linear", "regressor": regressor},
            {"model": "linear", "series": SERIES, "live_band": band})


def calm_bars(days: int, first_day: int = 0) -> list[Bar]:
    """One series whose close barely moves: persistence is all but perfect."""
    bars = []
    for d in range(first_day, first_day + days):
        close = 100.0 + 0.01 * ((d * 7) % 5)
        bars.append(Bar(ticker="CALM", timespan="day", multiplier=1, timestamp=START_MS + d * DAY, open=close - 0.005,
                        high=close + 0.02, low=close - 0.02, close=close, volume=1000.0 + d, source="test"))
    return bars


def versions_of(pipeline, bars: list[Bar]) -> set[str]:
    docs = pipeline.documents(pipeline.settings.es_index_predictions)
    return {docs[b.doc_id]["model_version"] for b in bars if b.doc_id in docs}


def test_the_stream_follows_the_champion_and_warns_when_live_skill_drifts(pipeline, tmp_path):
    settings = pipeline.settings
    publish_baselines(settings)                                   # version 1 of each: naive baselines
    # Version 2 of lags: a model that forecasts +1 % a bar. On volatile days (where its band
    # comes from) that costs little against persistence; on calm days it is far worse.
    rng = np.random.default_rng(5)
    moves = rng.normal(0, 0.03, 600)
    band = skill.live_band((0.01 - moves) ** 2, moves ** 2, window=40)
    assert band["high"] < 2
    scorer, metadata = drifting_lags(0.01, band)
    assert register_version(settings, "lags", scorer, metadata, champion=False) == "2"  # a challenger
    bars = calm_bars(200)
    log = tmp_path / "stream.log"
    job = pipeline.start_stream(log, STREAM_TRIGGER_INTERVAL="1 second", MODEL_POLL_SECONDS="0.5")

    def through(count: int) -> None:
        wait_until(lambda: pipeline.count(settings.es_index_predictions) >= count - 20, 180,
                   f"predictions through bar {count}", 1.0)

    try:
        wait_until(lambda: pipeline.es().indices.exists(index=settings.es_index_predictions), 120, "the job to start")
        pipeline.publish([(b.key, b.to_json()) for b in bars[:60]])
        through(60)
        assert versions_of(pipeline, bars[20:60]) == {f"{LAGS}/1"}

        pipeline.run(*MODELS, "promote", "--question", "lags", "--set", "day1", "--version", "2")
        wait_for_champions(settings)                              # the running job installs it
        # One bar first: it judges version 1's last prediction (the watch follows each version on its own).
        pipeline.publish([(bars[60].key, bars[60].to_json())])
        through(61)
        pipeline.publish([(b.key, b.to_json()) for b in bars[61:120]])
        through(120)
        assert versions_of(pipeline, bars[60:120]) == {f"{LAGS}/2"}
        wait_until(lambda: f"live skill of {LAGS}/2 has left its holdout band" in log.read_text(), 60,
                   "the drift warning", 1.0)

        pipeline.run(*MODELS, "rollback", "--question", "lags", "--set", "day1")
        wait_for_champions(settings)
        pipeline.publish([(b.key, b.to_json()) for b in bars[120:160]])
        through(160)
        assert versions_of(pipeline, bars[120:160]) == {f"{LAGS}/1"}

        incompatible = drifting_lags(0.0)[0]
        incompatible["regressor"]["features"] = ["volume"] * len(LAG_FEATURES)  # not what this code computes
        register_version(settings, "lags", incompatible, drifting_lags(0.0)[1])  # version 3, made champion
        wait_until(lambda: f"cannot serve {LAGS} version 3" in log.read_text(), 60, "the refusal", 0.5)
        pipeline.publish([(b.key, b.to_json()) for b in bars[160:]])
        through(200)
        assert versions_of(pipeline, bars[160:]) == {f"{LAGS}/1"}
        assert job.poll() is None
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(60)
    said = log.read_text()
    assert "still serving version 1" in said
    assert said.count("has left its holdout band") == 1  # once, naming the version
    # The watch's ratios: in the pipeline metrics (Kibana) and in MLflow, against version 2's run.
    metrics = pipeline.documents(settings.es_index_pipeline_metrics)
    ratios = [d["live_loss_ratio"] for d in metrics.values() if d.get("live_version") == f"{LAGS}/2"]
    assert {d["live_set"] for d in metrics.values() if d.get("live_version") == f"{LAGS}/2"} == {"day1"}
    assert ratios and max(ratios) > band["high"]
    client = registry.client(settings)
    second = client.get_model_version(LAGS, "2")
    history = client.get_metric_history(second.run_id, "live.lags.loss_ratio")
    assert sorted(m.value for m in history) == sorted(ratios)
    listing = pipeline.run(*MODELS, "list", "--questions", "lags").stdout
    assert "version 1" in listing and "[champion]" in listing and "version 3" in listing
    assert "day1: finstream-lags-day1" in listing
    assert str(registry.champion(client, LAGS).version) == "3"  # the registry says 3; the stream refuses it
