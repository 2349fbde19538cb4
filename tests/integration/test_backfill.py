"""`python -m producer backfill` against the local fake API, into the real Kafka, then indexed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from kafka import KafkaConsumer

from finstream import topics
from finstream.schema import bar_doc_id
from tests.fakes.massive import FakeMassive, Fault

KEY = "sk-backfill-secret-789"
START_MS = 1_704_096_000_000  # 2024-01-01T08:00Z


def test_backfill_pages_retries_and_never_shows_the_key(pipeline):
    with FakeMassive(api_key=KEY, page_size=7) as fake:
        fake.add_bars("AAPL", START_MS, 20)
        fake.add_bars("X:BTCUSD", START_MS, 15)
        fake.faults = [Fault(429, headers={"Retry-After": "1"}), Fault(500)]
        env = {**pipeline.env, "POLYGON_BASE_URL": fake.url, "POLYGON_API_KEY": KEY, "LOG_LEVEL": "DEBUG"}
        result = subprocess.run(
            [sys.executable, "-m", "producer", "backfill", "--tickers", "AAPL,X:BTCUSD",
             "--from", "2024-01-01", "--to", "2024-02-15"],
            env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "backfill: 35 bars sent" in output
    assert KEY not in output
    assert sum(topics.end_offsets(pipeline.settings).values()) == 35
    consumer = KafkaConsumer(pipeline.settings.kafka_topic, bootstrap_servers=pipeline.settings.kafka_bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    published = [m.key + m.value for m in consumer]
    consumer.close()
    assert len(published) == 35 and not any(KEY.encode() in m for m in published)

    pipeline.stream_index()
    docs = pipeline.documents(pipeline.settings.es_index_bars)
    assert len(docs) == 35
    assert bar_doc_id("X:BTCUSD", "day", 1, START_MS) in docs
    assert docs[bar_doc_id("AAPL", "day", 1, START_MS)]["source"] == "polygon"


def test_backfill_with_a_refused_key_exits_non_zero_with_advice(pipeline):
    with FakeMassive(api_key="the-real-key") as fake:
        env = {**pipeline.env, "POLYGON_BASE_URL": fake.url, "POLYGON_API_KEY": "a-wrong-key"}
        result = subprocess.run([sys.executable, "-m", "producer", "backfill", "--tickers", "AAPL"],
                                env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "POLYGON_API_KEY" in result.stderr and "Traceback" not in result.stderr
    assert "a-wrong-key" not in result.stdout + result.stderr


FAULTS = {
    "400 no key": [Fault(400, b'{"status":"ERROR","error":"API Key was not provided"}')],
    "403 plan": [Fault(403, b'{"status":"NOT_AUTHORIZED","message":"upgrade your plan"}')],
    "404": [Fault(404, b"{}")],
    "status ERROR": [Fault(200, b'{"status":"ERROR","error":"internal"}')],
    "persistent 503": [Fault(503)] * 3,
    "persistent bad JSON": [Fault(200, b'{"resul')] * 3,
    "timeouts": [Fault(200, b"{}", delay=2.5)] * 3,
}


@pytest.mark.parametrize("fault", FAULTS)
def test_api_faults_end_with_advice_and_exit_code_2(pipeline, fault):
    with FakeMassive(api_key=KEY) as fake:
        fake.add_bars("AAPL", START_MS, 3)
        fake.faults = list(FAULTS[fault])
        env = {**os.environ, **pipeline.env, "POLYGON_BASE_URL": fake.url, "POLYGON_API_KEY": KEY,
               "POLYGON_MAX_RETRIES": "2", "POLYGON_TIMEOUT_SECONDS": "1"}
        result = subprocess.run([sys.executable, "-m", "producer", "backfill", "--tickers", "AAPL",
                                 "--from", "2024-01-01", "--to", "2024-01-10"],
                                env=env, capture_output=True, text=True, timeout=120)
    said = result.stdout + result.stderr
    assert result.returncode == 2, said
    assert "error:" in result.stderr and "Traceback" not in said and KEY not in said


def test_connection_refused_ends_with_advice(pipeline):
    env = {**os.environ, **pipeline.env, "POLYGON_BASE_URL": "http://127.0.0.1:9", "POLYGON_API_KEY": KEY,
           "POLYGON_MAX_RETRIES": "1"}
    result = subprocess.run([sys.executable, "-m", "producer", "backfill", "--tickers", "AAPL"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "connection failed" in result.stderr and "Traceback" not in result.stderr
