"""Failures on the real stack: the stream job killed, Elasticsearch down, the broker
restarted during a backfill, Elasticsearch with security on. Nothing lost, nothing doubled."""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time

import requests
from kafka import TopicPartition

from finstream.core.schema import Bar
from finstream.stores import topics
from tests.catalogue import REFUSED
from tests.fakes.massive import FakeMassive
from tests.integration.conftest import (
    ROOT,
    assert_predictions,
    drive_stack,
    publish_baselines,
    register_version,
    wait_for_champions,
    wait_until,
)

DAY = 86_400_000
START_MS = 946_706_400_000  # 2000-01-01 05:00 UTC


def generated_bars(tickers: int, days: int) -> list[Bar]:
    """Each ticker's days in order; prices that move (every forecast feature is defined)."""
    return [Bar(ticker=f"T{t:03d}", timespan="day", multiplier=1, timestamp=START_MS + d * DAY, open=10.0 + d % 7,
                high=20.0 + d % 3, low=5.0 - d % 2, close=12.0 + d % 5, volume=1000.0 + d, source="test")
            for t in range(tickers) for d in range(days)]


KILLS = 3  # docs/reliability.md's table says the same
OUTAGE_SECONDS = 12


def interleaved(rng: random.Random, sequences: list[list]) -> list:
    """A random merge of the sequences that keeps each one's order (as a topic keeps each
    key's order)."""
    slots = []
    for sequence in sequences:
        slots += zip(sorted(rng.random() for _ in sequence), sequence, strict=False)
    return [item for _, item in sorted(slots, key=lambda slot: slot[0])]


def test_sigkill_at_random_points_loses_and_duplicates_nothing(pipeline, tmp_path):
    seed = int(os.environ.get("CRASH_SEED", time.time()))
    rng = random.Random(seed)
    publish_baselines(pipeline.settings)  # every series' bars are forecast from the 21st on
    bars = generated_bars(40, 1150)  # 46 000 distinct bars
    resent = {b.doc_id for b in bars[:2000]}  # each sent twice in a row, as a producer retry would
    series = [[(b.key, b.to_json()) for b in bars[t * 1150:(t + 1) * 1150] for _ in range(1 + (b.doc_id in resent))]
              for t in range(40)]
    invalid = [(b"BAD", value or b"") for value, _ in REFUSED.values()]
    invalid = (invalid * (2000 // len(invalid) + 1))[:2000]
    messages = interleaved(rng, series + [[message] for message in invalid])
    assert len(messages) == 50_000
    pipeline.publish(messages)

    kills = []
    for attempt in range(KILLS):
        job = pipeline.start_stream(tmp_path / f"run{attempt}.log", STREAM_MAX_OFFSETS_PER_TRIGGER="2500",
                                    STREAM_TRIGGER_INTERVAL="1 second")
        before = pipeline.committed_batches()
        wait_until(lambda: pipeline.committed_batches() > before, 180,  # noqa: B023 - called right here
                   f"progress (seed {seed})", 0.2)
        time.sleep(rng.uniform(0, 3))  # somewhere inside a later batch, or between two
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
        kills.append(pipeline.committed_batches())
    assert kills[-1] < 50_000 / 2500, f"the job finished before the last kill (seed {seed}): {kills}"

    pipeline.stream_index()  # the last restart, to the end of the topic
    settings = pipeline.settings
    assert pipeline.ids(settings.es_index_bars) == {b.doc_id for b in bars}, f"seed {seed}"
    assert pipeline.count(settings.es_index_dead_letters) == 2000, f"seed {seed}"
    assert pipeline.checkpoint_offsets() == topics.end_offsets(settings)
    assert_predictions(pipeline, bars)  # 45 200, each judged by its series' next bar


def test_elasticsearch_outage_is_ridden_out_with_backoff(pipeline, tmp_path):
    pipeline.env["KAFKA_TOPIC_PARTITIONS"] = "1"  # the default: a catch-up splits it across the cores
    bars = generated_bars(20, 1000)
    pipeline.publish([(b.key, b.to_json()) for b in bars])
    log = tmp_path / "stream.log"
    # 20 000 records behind: index-bars catches up in split reads (1 000 a batch, written in up
    # to ten tasks: as many as the cores), through the outage, then runs on.
    job = pipeline.start_stream(log, STREAM_MAX_OFFSETS_PER_TRIGGER="1000", STREAM_TRIGGER_INTERVAL="1 second",
                                STREAM_CATCH_UP_RECORDS="10000", STREAM_WRITE_RECORDS_PER_TASK="100")
    try:
        wait_until(lambda: pipeline.committed_batches() >= 2, 180, "two batches before the outage", 0.2)
        try:
            drive_stack("elasticsearch.sh", "stop")
            time.sleep(OUTAGE_SECONDS)  # several failed writes and back-offs (2, 4, 8 s)
        finally:
            drive_stack("elasticsearch.sh", "start")
        index = pipeline.settings.es_index_bars
        # The outcome itself: every bar searchable, with the job still running.
        wait_until(lambda: job.poll() is not None or pipeline.count(index) == len(bars), 300,
                   "every bar to be indexed after the outage", 2.0)
        assert job.poll() is None, f"the job stopped instead of retrying:\n{log.read_text()[-3000:]}"
        assert "retry" in log.read_text()  # it saw the outage and backed off
        assert "index-bars is 20000 records behind: read in" in log.read_text()
        later = generated_bars(20, 1001)[1000::1001]  # one more bar a series, after the catch-up ended
        pipeline.publish([(b.key, b.to_json()) for b in later])
        wait_until(lambda: job.poll() is not None or pipeline.count(index) == len(bars) + len(later), 120,
                   "the running query, after the catch-up, to index new bars", 1.0)
        assert job.poll() is None, log.read_text()[-3000:]
        assert log.read_text().count('"event": "started", "query": "index-bars"') == 2  # the catch-up, then running
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(60)
    assert pipeline.ids(pipeline.settings.es_index_bars) == {b.doc_id for b in bars + later}


def test_broker_restart_during_backfill_delivers_every_bar_once(pipeline):
    with FakeMassive(api_key="k", page_size=50) as fake:
        fake.latency = 0.1
        for i, ticker in enumerate(("AAPL", "MSFT", "NVDA", "AMZN")):
            fake.add_bars(ticker, 1_577_944_800_000, 1000, price=100.0 + i)
        env = {**os.environ, **pipeline.env, "POLYGON_BASE_URL": fake.url, "POLYGON_API_KEY": "k"}
        backfill = subprocess.Popen(
            [sys.executable, "-m", "producer", "backfill", "--tickers", "AAPL,MSFT,NVDA,AMZN",
             "--from", "2020-01-01", "--to", "2023-12-31"], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_until(lambda: len(fake.requests) >= 10, 60, "the backfill to start", 0.2)
        try:
            drive_stack("kafka.sh", "stop")
            time.sleep(3)
        finally:
            drive_stack("kafka.sh", "start")
        output, _ = backfill.communicate(timeout=240)
    assert backfill.returncode == 0, output
    assert "backfill: 4000 bars sent" in output
    assert sum(topics.end_offsets(pipeline.settings).values()) == 4000  # in Kafka itself: no duplicate record
    pipeline.stream_index()
    assert pipeline.count(pipeline.settings.es_index_bars) == 4000


def test_stream_job_against_elasticsearch_with_security(pipeline, monkeypatch):
    password = secrets.token_urlsafe(16)
    creds = {"ES_USERNAME": "finstream_writer", "ES_PASSWORD": password}
    monkeypatch.setenv("ES_PASSWORD", password)  # secrets are read from the environment
    try:
        drive_stack("elasticsearch.sh", "stop")
        drive_stack("elasticsearch.sh", "start", ES_SECURITY="true", **creds)
        assert requests.get("http://127.0.0.1:9200/_cluster/health", timeout=10).status_code == 401

        bars = generated_bars(2, 100)
        pipeline.publish([(b.key, b.to_json()) for b in bars])
        pipeline.env.update(creds)
        result = pipeline.stream_index()
        assert password not in result.stdout + result.stderr
        assert pipeline.count(pipeline.settings.es_index_bars) == 200

        refused = subprocess.run(["./spark-submit.sh", "jobs/stream_index.py", "--available-now"], cwd=ROOT,
                                 env={**os.environ, **pipeline.env, "ES_PASSWORD": "wrong"},
                                 capture_output=True, text=True, timeout=120)
        said = refused.stdout + refused.stderr  # spark-submit merges the driver's stderr into stdout
        assert refused.returncode != 0 and "refused the credentials" in said
        assert "Traceback" not in said and "wrong" not in said
        # Clean up while the credentials still work.
        es = pipeline.es()
        for index in (pipeline.settings.es_index_bars, pipeline.settings.es_index_dead_letters):
            es.options(ignore_status=404).indices.delete(index=index)
    finally:
        drive_stack("elasticsearch.sh", "stop", ES_SECURITY="true", **creds)
        drive_stack("elasticsearch.sh", "start")
        for key in creds:
            pipeline.env.pop(key, None)
        monkeypatch.delenv("ES_PASSWORD")


def test_a_lost_checkpoint_replays_the_log_and_a_gap_in_it_stops_the_job(pipeline):
    settings = pipeline.settings
    publish_baselines(settings)
    bars = generated_bars(1, 300)  # one series: one partition
    pipeline.publish([(b.key, b.to_json()) for b in bars[:100]])
    pipeline.stream_index()

    # The checkpoint lost (or a new CHECKPOINT_DIR): the job replays the log from its start;
    # the documents' ids are deterministic, so nothing is doubled.
    shutil.rmtree(settings.checkpoint_path)
    pipeline.stream_index()
    assert pipeline.ids(settings.es_index_bars) == {b.doc_id for b in bars[:100]}
    assert_predictions(pipeline, bars[:100])

    # Records the job has not read yet are deleted: it stops and names them, skipping nothing.
    (partition, resume), = [(p, o) for p, o in pipeline.checkpoint_offsets().items() if o]
    pipeline.publish([(b.key, b.to_json()) for b in bars[100:]])
    admin = topics.admin_client(settings)
    try:
        admin.delete_records({TopicPartition(settings.kafka_topic, partition): resume + 50})
    finally:
        admin.close()
    said = pipeline.mistake("./spark-submit.sh", "jobs/stream_index.py", "--available-now")
    assert f"{settings.kafka_topic} partition {partition} offsets {resume}-{resume + 49} (50 records)" in said
    assert pipeline.count(settings.es_index_bars) == 100


def test_a_corrupt_model_leaves_the_previous_one_serving(pipeline, tmp_path):
    settings = pipeline.settings
    bars = generated_bars(1, 300)

    def publish_broken_lags() -> None:  # registered, and made the champion
        register_version(settings, "lags", b"\x00\x13garbage", b'{"model": "linear", "series": {"timesp')

    publish_broken_lags()  # and no earlier model: the reference baselines forecast
    log = tmp_path / "stream.log"
    job = pipeline.start_stream(log, STREAM_TRIGGER_INTERVAL="1 second")
    predictions = settings.es_index_predictions
    try:
        pipeline.publish([(b.key, b.to_json()) for b in bars[:100]])
        wait_until(lambda: sum(pipeline.checkpoint_offsets("predict-bars").values()) == 100, 180,
                   "the predictor to take the first bars", 1.0)
        wait_until(lambda: pipeline.count(predictions) == 80, 60, "the baselines' predictions", 1.0)  # from bar 21

        publish_baselines(settings)  # a good version: it serves
        wait_for_champions(settings)
        pipeline.publish([(b.key, b.to_json()) for b in bars[100:200]])
        wait_until(lambda: pipeline.count(predictions) == 180, 180, "predictions by the good version", 1.0)

        publish_broken_lags()  # a bad version after a good one: the good one keeps serving
        pipeline.publish([(b.key, b.to_json()) for b in bars[200:]])
        wait_until(lambda: pipeline.count(predictions) == 280, 180, "predictions after the bad version", 1.0)
        # index-bars is its own query: its last batch may end after predict-bars' does.
        wait_until(lambda: pipeline.count(settings.es_index_bars) == 300, 60, "every bar indexed", 1.0)
        assert job.poll() is None
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(60)
    said = log.read_text()
    assert "cannot serve finstream-lags-day1 version 1" in said and "served as before until one loads" in said
    assert "cannot serve finstream-lags-day1 version 3" in said and "still serving version 2" in said
    docs = pipeline.documents(predictions)
    versions = [doc["model_version"] for doc in sorted(docs.values(), key=lambda d: d["timestamp"])]
    assert versions == ["baseline"] * 80 + ["finstream-lags-day1/2"] * 200
    assert pipeline.count(settings.es_index_bars) == 300
