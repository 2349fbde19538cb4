"""Every series forecast, on the real stack: a champion per question and series set. Hourly FX
and daily equities are trained as two sets of one question, by two trainings at once on a new
MLflow store, and streamed together, each series
served by its own set's champion; promoting and rolling back one set changes that set's
documents only, from the next batch, without a restart; a series no model covers gets each
question's reference baseline, labelled as such. A registry made before series sets (one
model per question) keeps serving the set its run trained on. One stream job serves it all:
the scenario shares its set-up."""

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
LEGACY = registry.model_name("range")  # finstream-range: a registry made before series sets


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
    # Both at once, on a new MLflow store. The hourly set: the tickers' common class, fx.
    hourly, daily = pipeline.trainings((*train, "--timespan", "hour"), (*train, "--timespan", "day"))
    assert f"registered {RANGE_FX} version 1 as champion" in hourly.stdout + hourly.stderr
    assert f"registered {RANGE_STOCKS} version 1 as champion" in daily.stdout + daily.stderr

    fx_v1, stocks_v1 = champion_of(pipeline, RANGE_FX), champion_of(pipeline, RANGE_STOCKS)
    # One model per question, as registries were before series sets: its champion serves the set
    # its run trained on (monthly bars here), read from the version's own metadata.
    metadata = {"model": "last_range", "series": {"timespan": "month", "multiplier": 1, "tickers": []}}
    register_version(settings, "range", {"question": "range", "served": "last_range"}, metadata, name=LEGACY,
                     series_set=SeriesSet("month"))
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
        assert range_versions(pipeline, BTC[20:]) == {("last_range", f"{LEGACY}/1")}  # the old registry's set
        docs = pipeline.documents(index)
        for bar in BTC[20:]:  # no set covers monthly crypto for the rest: each one's reference baseline
            doc = docs[bar.doc_id]
            for question in set(SERVED) - {"range"}:
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
    assert f"champion {LEGACY} version 1" in said
    listing = pipeline.run(*MODELS, "list", "--questions", "range").stdout
    assert f"  hour1-fx: {RANGE_FX}" in listing and f"  day1-stocks: {RANGE_STOCKS}" in listing
    assert f"  month1: {LEGACY}" in listing
    refused = pipeline.mistake(*MODELS, "rollback", "--question", "range", "--set", "month1")
    assert refused == f"error: {LEGACY} has no earlier champion to roll back to"
    # One live-skill document per batch and watched version: each set's champion on its own,
    # the old registry's too.
    live = [d for d in pipeline.documents(settings.es_index_pipeline_metrics).values() if d.get("live_version")]
    assert {d["live_set"] for d in live if d["live_question"] == "range"} == {"hour1-fx", "day1-stocks", "month1"}

