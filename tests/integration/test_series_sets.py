"""Every series forecast, on the real stack: a champion per question and series set. Hourly FX
and daily equities are trained as two sets of one question and streamed together, each series
served by its own set's champion; promoting and rolling back one set changes that set's
documents only, from the next batch, without a restart; a series no model covers gets each
question's reference baseline, labelled as such. A registry made before series sets (one
model per question) keeps serving."""

from __future__ import annotations

import os
import signal

from finstream.core.questions import QUESTIONS, SERVED
from finstream.core.series_sets import SeriesSet
from finstream.stores import registry
from producer import samples
from tests.integration.conftest import register_version, wait_for_champions, wait_until

MODELS = (".venv/bin/python", "-m", "finstream.models")
GOOG = samples.load_bars("goog-daily")[:660]
EURUSD = samples.load_bars("eurusd-hourly")[:660]
BTC = samples.load_bars("btcusd-monthly")[:60]  # monthly bars: no model is trained for them
FX, STOCKS = SeriesSet("hour", 1, "fx"), SeriesSet("day", 1, "stocks")
RANGE_FX, RANGE_STOCKS = registry.model_name("range", FX), registry.model_name("range", STOCKS)


def publish(pipeline, bars) -> None:
    pipeline.publish([(b.key, b.to_json()) for b in bars])


def champion_of(pipeline, name: str) -> tuple[str, str]:
    """(what the registered model's champion serves, its version as documents name it)."""
    client = registry.client(pipeline.settings)
    champion = registry.champion(client, name)
    return client.get_run(champion.run_id).data.params["served"], f"{name}/{champion.version}"


def range_versions(pipeline, bars) -> set[tuple[str, str]]:
    docs = pipeline.documents(pipeline.settings.es_index_predictions)
    return {(docs[b.doc_id]["range_model"], docs[b.doc_id]["range_version"]) for b in bars}


def test_each_series_is_served_by_its_own_sets_champion_and_the_rest_by_the_baselines(pipeline, tmp_path):
    settings = pipeline.settings
    index = settings.es_index_predictions
    publish(pipeline, GOOG[:500] + EURUSD[:500])
    train = ("--questions", "range", "--models", "linear", "--folds", "0", "--promote")
    hourly = pipeline.train(*train, "--timespan", "hour")  # the set: the tickers' common class, fx
    daily = pipeline.train(*train, "--timespan", "day")
    assert f"registered {RANGE_FX} version 1 as champion" in hourly.stdout + hourly.stderr
    assert f"registered {RANGE_STOCKS} version 1 as champion" in daily.stdout + daily.stderr

    fx_v1, stocks_v1 = champion_of(pipeline, RANGE_FX), champion_of(pipeline, RANGE_STOCKS)
    log = tmp_path / "stream.log"
    job = pipeline.start_stream(log, STREAM_TRIGGER_INTERVAL="1 second", MODEL_POLL_SECONDS="0.5")

    def predicted(count: int):
        wait_until(lambda: pipeline.count(index) >= count, 240, f"{count} predictions", 1.0)

    try:
        wait_until(lambda: pipeline.es().indices.exists(index=index), 120, "the job to start")
        publish(pipeline, GOOG[500:560] + EURUSD[500:560] + BTC)
        predicted(2 * 540 + 40)
        assert range_versions(pipeline, GOOG[500:560]) == {stocks_v1}
        assert range_versions(pipeline, EURUSD[500:560]) == {fx_v1}
        docs = pipeline.documents(index)
        for bar in BTC[20:]:  # no set covers monthly crypto: every question's reference baseline
            doc = docs[bar.doc_id]
            for question in SERVED:
                name_field, version_field, run_field = QUESTIONS[question].model_fields
                assert (doc[name_field], doc[version_field]) == (QUESTIONS[question].reference, "baseline")
                assert run_field not in doc
        assert all(b.doc_id not in docs for b in BTC[:20])  # too little history: unscored

        # A new hourly FX version (its naive baseline), promoted with the real command: the
        # hourly series follow from the next batch; the daily ones do not move.
        version = register_version(settings, "range", {"question": "range", "served": "last_range"},
                                   {"model": "last_range", "series": FX.as_dict()}, champion=False)
        assert version == "2"
        pipeline.run(*MODELS, "promote", "--question", "range", "--set", FX.key, "--version", "2")
        wait_for_champions(settings)
        publish(pipeline, GOOG[560:600] + EURUSD[560:600])
        predicted(2 * 580 + 40)
        assert range_versions(pipeline, EURUSD[560:600]) == {("last_range", f"{RANGE_FX}/2")}
        assert range_versions(pipeline, GOOG[560:600]) == {stocks_v1}
        assert range_versions(pipeline, EURUSD[500:560]) == {fx_v1}  # made before: as made

        pipeline.run(*MODELS, "rollback", "--question", "range", "--set", FX.key)
        wait_for_champions(settings)
        publish(pipeline, GOOG[600:660] + EURUSD[600:660])
        predicted(2 * 640 + 40)
        assert range_versions(pipeline, EURUSD[600:660]) == {fx_v1}
        assert range_versions(pipeline, GOOG[600:660]) == {stocks_v1}
        assert job.poll() is None
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(60)
    said = log.read_text()
    assert f"champion {RANGE_FX} version 2" in said and f"champion {RANGE_STOCKS} version 1" in said
    listing = pipeline.run(*MODELS, "list", "--questions", "range").stdout
    assert f"  hour1-fx: {RANGE_FX}" in listing and f"  day1-stocks: {RANGE_STOCKS}" in listing
    # One live-skill document per batch and watched version: each set's champion on its own.
    live = [d for d in pipeline.documents(settings.es_index_pipeline_metrics).values() if d.get("live_version")]
    assert {d["live_set"] for d in live if d["live_question"] == "range"} == {"hour1-fx", "day1-stocks"}


def test_a_registry_made_before_series_sets_keeps_serving(pipeline, tmp_path):
    """One registered model per question, finstream-<question>: its champion serves the set
    its run trained on (daily bars here), read from the version's own metadata."""
    settings = pipeline.settings
    legacy = registry.model_name("range")
    metadata = {"model": "last_range", "series": {"timespan": "day", "multiplier": 1, "tickers": []}}
    register_version(settings, "range", {"question": "range", "served": "last_range"}, metadata, name=legacy,
                     series_set=SeriesSet("day"))
    log = tmp_path / "stream.log"
    job = pipeline.start_stream(log, STREAM_TRIGGER_INTERVAL="1 second", MODEL_POLL_SECONDS="0.5")
    try:
        wait_until(lambda: f"champion {legacy} version 1" in log.read_text() if log.exists() else False, 120,
                   "the old registry's champion installed", 1.0)
        publish(pipeline, GOOG[:40] + EURUSD[:40])
        wait_until(lambda: pipeline.count(settings.es_index_predictions) >= 40, 180, "predictions", 1.0)
        assert range_versions(pipeline, GOOG[20:40]) == {("last_range", f"{legacy}/1")}
        assert range_versions(pipeline, EURUSD[20:40]) == {("mean_range_5", "baseline")}  # not its set
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(60)
    listing = pipeline.run(*MODELS, "list", "--questions", "range").stdout
    assert f"  day1: {legacy}" in listing
    refused = pipeline.mistake(*MODELS, "rollback", "--question", "range", "--set", "day1")
    assert refused == f"error: {legacy} has no earlier champion to roll back to"
