"""Failures on the real stack: the stream job killed, Elasticsearch down, the broker
restarted during a backfill, Elasticsearch with security on. Nothing lost, nothing doubled."""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import time

import requests

from finstream import topics
from finstream.schema import Bar
from tests.catalogue import REFUSED
from tests.fakes.massive import FakeMassive
from tests.integration.conftest import ROOT, drive_stack, wait_until

DAY = 86_400_000
START_MS = 946_706_400_000  # 2000-01-01 05:00 UTC


def generated_bars(tickers: int, days: int) -> list[Bar]:
    return [Bar(ticker=f"T{t:03d}", timespan="day", multiplier=1, timestamp=START_MS + d * DAY, open=10.0 + d % 7,
                high=20.0, low=5.0, close=12.0 + d % 5, volume=1000.0 + d, source="test")
            for t in range(tickers) for d in range(days)]


KILLS = 3  # the README's Guarantees table says the same
OUTAGE_SECONDS = 12


def test_sigkill_at_random_points_loses_and_duplicates_nothing(pipeline, tmp_path):
    seed = int(os.environ.get("CRASH_SEED", time.time()))
    rng = random.Random(seed)
    bars = generated_bars(40, 1150)  # 46 000 distinct bars
    invalid = [(b"BAD", value or b"") for value, _ in REFUSED.values()]
    invalid = (invalid * (2000 // len(invalid) + 1))[:2000]
    messages = [(b.key, b.to_json()) for b in bars] + invalid + [(b.key, b.to_json()) for b in bars[:2000]]
    rng.shuffle(messages)
    assert len(messages) == 50_000
    pipeline.publish(messages)

    kills = []
    for attempt in range(KILLS):
        job = pipeline.start_stream(tmp_path / f"run{attempt}.log", STREAM_MAX_OFFSETS_PER_TRIGGER="2500",
                                    STREAM_TRIGGER_INTERVAL="1 second")
        before = pipeline.committed_batches()
        wait_until(lambda: pipeline.committed_batches() > before, 180, f"progress (seed {seed})", 0.2)
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


def test_elasticsearch_outage_is_ridden_out_with_backoff(pipeline, tmp_path):
    bars = generated_bars(20, 1000)
    pipeline.publish([(b.key, b.to_json()) for b in bars])
    log = tmp_path / "stream.log"
    job = pipeline.start_stream(log, STREAM_MAX_OFFSETS_PER_TRIGGER="1000", STREAM_TRIGGER_INTERVAL="1 second")
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
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(60)
    assert pipeline.ids(pipeline.settings.es_index_bars) == {b.doc_id for b in bars}


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
