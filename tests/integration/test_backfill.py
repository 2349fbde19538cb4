"""`python -m producer backfill` against the local fake API, into the real Kafka, then indexed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from kafka import KafkaConsumer

from finstream.core.schema import bar_doc_id
from finstream.stores import topics
from tests.fakes.answers import NDX, NDX_CLOSES, SPY_COUNTS, TJX_2017, TJX_2020
from tests.fakes.massive import FakeMassive, Fault
from tests.integration.conftest import topic_bars

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


# -- the API's real answers, through the real command into the real Kafka -----------------------
def backfill(pipeline, fake: FakeMassive, *args: str) -> str:
    env = {**os.environ, **pipeline.env, "POLYGON_BASE_URL": fake.url, "POLYGON_API_KEY": fake.api_key}
    result = subprocess.run([sys.executable, "-m", "producer", "backfill", *args], env=env, capture_output=True,
                            text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_an_index_answer_reaches_the_topic_without_volume(pipeline):
    """I:NDX, day, 2023-03-09 .. 2023-03-15: the API answers 5 results of o h l c t only."""
    with FakeMassive(api_key=KEY) as fake:
        fake.add_results("I:NDX", NDX)
        output = backfill(pipeline, fake, "--tickers", "I:NDX", "--timespan", "day", "--from", "2023-03-09",
                          "--to", "2023-03-15")
    assert "backfill: 5 bars sent" in output
    bars = topic_bars(pipeline.settings)
    assert [b["close"] for b in bars] == NDX_CLOSES
    assert [b["timestamp"] for b in bars] == [r["t"] for r in NDX]
    for bar in bars:  # the fields an index does not have are null, not zero, not missing
        assert bar["volume"] is None and bar["vwap"] is None and bar["transactions"] is None, bar
        assert (bar["ticker"], bar["timespan"], bar["multiplier"], bar["source"]) == ("I:NDX", "day", 1, "polygon")


def test_integer_fields_reach_the_topic_as_integers_however_the_api_spells_them(pipeline):
    with FakeMassive(api_key=KEY) as fake:
        fake.number_format = "g"
        days = [1704171600000, 1704258000000, 1704344400000, 1704430800000, 1704690000000]  # 2024-01-02 .. 08
        fake.add_results("SPY", [{"v": 7.4e7 + i, "vw": 470.5 + i, "o": 470.0 + i, "c": 471.0 + i, "h": 472.0 + i,
                                  "l": 469.0 + i, "t": days[i], "n": n} for i, n in enumerate(SPY_COUNTS)])
        output = backfill(pipeline, fake, "--tickers", "SPY", "--from", "2024-01-02", "--to", "2024-01-08")
        answer = fake.answered[0].decode()
    assert '"n":1.412331e+06' in answer and '"n":1.105872e+06' in answer and '"n":1.251006e+06' in answer
    assert "backfill: 5 bars sent" in output
    raw = topic_records(pipeline.settings)
    assert [json.loads(r)["transactions"] for r in raw] == [1412331, 987654, 1105872, 1251006, 854321]
    for record, n in zip(raw, (1412331, 987654, 1105872, 1251006, 854321), strict=True):
        assert f'"transactions":{n},' in record and '"multiplier":1,' in record  # JSON integers, not 1412331.0


def test_results_outside_the_window_never_reach_the_topic(pipeline):
    """A one-day minute request for TJX (2020-08-27) answered with 12 results, 4 of them
    stamped 2017-02-03 (another symbol's prices): 8 bars published, the 4 named in one warning."""
    with FakeMassive(api_key=KEY, page_size=5) as fake:
        fake.add_results("TJX", [{"v": 100 + i, "vw": 53.7, "o": 53.7, "c": 53.6, "h": 53.8, "l": 53.5, "t": t,
                                  "n": 1} for i, t in enumerate(TJX_2020)], step_ms=60_000)
        fake.strays["TJX"] = [{"v": 206, "vw": 14.49, "o": 14.49, "c": 14.49, "h": 14.49, "l": 14.49, "t": t, "n": 1}
                              for t in TJX_2017]
        output = backfill(pipeline, fake, "--tickers", "TJX", "--timespan", "minute", "--from", "2020-08-27",
                          "--to", "2020-08-27")
        answered = sum(1 for r in fake.requests)
    assert answered == 3  # 12 results in pages of 5
    assert "backfill: 8 bars sent" in output
    warnings = [line for line in output.splitlines() if "outside the window" in line]
    assert len(warnings) == 1, output
    assert "TJX: 4 result(s) outside the window asked for (2020-08-27T00:00:00Z .. 2020-08-27T23:59:59Z)" in \
        warnings[0]
    assert "2017-02-03T14:30:00Z, 2017-02-03T14:32:00Z, 2017-02-03T14:46:00Z, 2017-02-03T15:12:00Z" in warnings[0]
    bars = topic_bars(pipeline.settings)
    assert [b["timestamp"] for b in bars] == TJX_2020
    assert not [b for b in bars if b["timestamp"] < 1598486400000] and {b["close"] for b in bars} == {53.6}


def topic_records(settings) -> list[str]:
    consumer = KafkaConsumer(settings.kafka_topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    try:
        return [m.value.decode() for m in sorted(consumer, key=lambda m: (m.partition, m.offset))]
    finally:
        consumer.close()
