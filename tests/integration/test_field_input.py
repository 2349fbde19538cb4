"""Input as the field sends it, through the real Kafka, Spark and Elasticsearch, in one topic and
two runs of the stream job that every test below reads: the market-data API's real answers,
one record holding two bars, a bar Elasticsearch refuses, a writer's skewed clock, another
writer's aborted transaction. Nothing is lost silently, nothing wedges the job, no series
loses its forecasts, and every message is a bar or a dead letter."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

import pytest
from kafka import KafkaProducer

from bench.cleanup import drop_run_data
from finstream.core.schema import Bar
from finstream.stores import topics
from producer import resume, samples
from tests.integration.conftest import ROOT, Pipeline, new_pipeline, publish_baselines, topic_values

DAY = 86_400_000
GOOG = samples.load_bars("goog-daily")[:40]
# Index aggregates: o h l c t only (I:NDX, 2023-03-09 .. 2023-03-15).
NDX_T0 = 1_678_320_000_000
NDX_CLOSES = (12264.64178551227, 12410.23950889041, 12311.04003593493, 12377.36991156857, 12228.4695767327)
# Trade counts as the API's JSON encoder spells them.
SPY_COUNTS = ("1.412331e+06", "1.105872e+06", "1.251006e+06", "1105872", "98765")
LUCENE_MAX_TERM_BYTES = 32_766


def bar(ticker: str, timestamp: int, close: float, **fields) -> Bar:
    values = {"open": close, "high": close, "low": close, "volume": 1000.0, **fields}
    return Bar(ticker=ticker, timespan="day", multiplier=1, timestamp=timestamp, close=close, source="test", **values)


def renamed(bars: list[Bar], ticker: str) -> list[Bar]:
    return [dataclasses.replace(b, ticker=ticker) for b in bars]


NDX = [json.dumps({"ticker": "I:NDX", "timespan": "day", "multiplier": 1, "timestamp": NDX_T0 + i * DAY,
                   "open": c, "high": c, "low": c, "close": c, "source": "polygon"}).encode()
       for i, c in enumerate(NDX_CLOSES)]
SPY = [bar("SPY", NDX_T0 + i * DAY, 400.0).to_json().replace(b'"transactions":null', f'"transactions":{n}'.encode())
       for i, n in enumerate(SPY_COUNTS)]
# One record, two bars (2024-06-03 and 2024-06-04).
TWO_IN_ONE = (bar("MSFT", 1_717_372_800_000, 300.0), bar("MSFT", 1_717_459_200_000, 301.0))
# A valid bar whose source is over Lucene's term limit, between ordinary bars of its series.
REF = renamed(GOOG[:10], "REF")
IMMENSE = dataclasses.replace(REF[5], source="x" * 33_000)
# Ten bars, then another writer's five in a transaction it aborts.
TXN = renamed(GOOG[:15], "TXN")
# Another writer whose clock is 55 minutes ahead.
SKEWED = bar("IBM", GOOG[29].timestamp, 130.0)


@dataclass
class FieldRun:
    pipeline: Pipeline
    outputs: str  # both runs' logs
    coordinates: dict[str, tuple[int, int]]  # (partition, offset) of the records a test names


def send(pipeline: Pipeline, records: list[tuple[str, bytes, bytes, int | None]]) -> dict[str, tuple[int, int]]:
    """(name, key, value, Kafka record timestamp or None for the producer's clock), in order;
    returns each record's (partition, offset) by name."""
    settings = pipeline.settings
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    sent = {name: producer.send(settings.kafka_topic, key=key, value=value, timestamp_ms=timestamp_ms)
            for name, key, value, timestamp_ms in records}
    producer.flush()
    producer.close()
    return {name: (future.get().partition, future.get().offset) for name, future in sent.items()}


def aborted_transaction(pipeline: Pipeline, bars: list[Bar]) -> None:
    settings = pipeline.settings
    writer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, transactional_id="other-writer")
    writer.init_transactions()
    writer.begin_transaction()
    for b in bars:
        writer.send(settings.kafka_topic, key=b.key, value=b.to_json())
    writer.flush()
    writer.abort_transaction()
    writer.close()


def plain(name: str, bars: list[Bar], timestamp_ms: int | None = None) -> list[tuple]:
    return [(f"{name}{i}", b.key, b.to_json(), timestamp_ms) for i, b in enumerate(bars)]


@pytest.fixture(scope="module")
def field(stack) -> FieldRun:
    pipeline = new_pipeline("field-input")
    settings = pipeline.settings
    topics.ensure_topic(settings)
    publish_baselines(settings)  # every daily series is forecast from its 21st bar
    now = int(time.time() * 1000)
    coordinates = send(pipeline, [
        *[(f"ndx{i}", b"I:NDX", value, None) for i, value in enumerate(NDX)],
        *[(f"spy{i}", b"SPY", value, None) for i, value in enumerate(SPY)],
        ("two in one", b"MSFT", TWO_IN_ONE[0].to_json() + b"\n" + TWO_IN_ONE[1].to_json(), None),
        *plain("ref", REF[:5]), ("immense", IMMENSE.key, IMMENSE.to_json(), None), *plain("ref", REF[6:7]),
        *plain("txn", TXN[:10]),
        *plain("goog", GOOG[:30]), ("skewed", SKEWED.key, SKEWED.to_json(), now + 55 * 60_000),
    ])
    aborted_transaction(pipeline, TXN[10:])
    first = pipeline.stream_index()
    send(pipeline, [*plain("goog-on-time", GOOG[30:35]), *plain("goog-a-day-behind", GOOG[35:], now - DAY),
                    *plain("ref-after", REF[7:])])
    second = pipeline.stream_index()  # a restart past the aborted transaction's records and markers
    yield FieldRun(pipeline, "\n".join(r.stdout + r.stderr for r in (first, second)), coordinates)
    drop_run_data(pipeline.es(), settings)


def test_every_committed_message_is_a_bar_or_a_dead_letter(field):
    settings = field.pipeline.settings
    messages = topic_values(settings)  # what a committed reader reads
    bars = field.pipeline.count(settings.es_index_bars)
    letters = field.pipeline.count(settings.es_index_dead_letters)
    assert (bars, letters) == (70, 2) and len(messages) == 72
    ends = topics.end_offsets(settings)
    assert field.pipeline.checkpoint_offsets("index-bars") == ends
    assert field.pipeline.checkpoint_offsets("predict-bars") == ends


def test_an_index_answer_and_trade_counts_spelled_as_floats_are_bars(field):
    bars = field.pipeline.documents(field.pipeline.settings.es_index_bars)
    index = sorted((doc for doc in bars.values() if doc["ticker"] == "I:NDX"), key=lambda d: d["timestamp"])
    assert [doc["close"] for doc in index] == list(NDX_CLOSES)
    assert not any("volume" in doc or "vwap" in doc or "transactions" in doc for doc in index)
    assert sorted(doc["transactions"] for doc in bars.values() if doc["ticker"] == "SPY") == \
        [98765, 1105872, 1105872, 1251006, 1412331]


def test_a_record_with_two_bars_is_one_dead_letter(field):
    settings = field.pipeline.settings
    partition, offset = field.coordinates["two in one"]
    letter = field.pipeline.documents(settings.es_index_dead_letters)[f"{settings.kafka_topic}|{partition}|{offset}"]
    assert letter["reason"] == "data after the JSON object"
    assert letter["raw"] == (TWO_IN_ONE[0].to_json() + b"\n" + TWO_IN_ONE[1].to_json()).decode()
    assert not field.pipeline.ids(settings.es_index_bars) & {b.doc_id for b in TWO_IN_ONE}  # refused whole
    # The producer's own reader agrees: the refused record is no resume point.
    assert resume.last_published(settings, ["MSFT", "I:NDX"], "day", 1) == {"I:NDX": NDX_T0 + 4 * DAY}


def test_a_bar_elasticsearch_refuses_is_a_dead_letter_and_the_job_goes_on(field):
    settings = field.pipeline.settings
    assert "retry 1/" not in field.outputs  # a refusal is not a transient failure
    ids = field.pipeline.ids(settings.es_index_bars)
    assert {b.doc_id for b in REF} & ids == {b.doc_id for b in [*REF[:5], *REF[6:]]}
    partition, offset = field.coordinates["immense"]
    letter = field.pipeline.documents(settings.es_index_dead_letters)[f"{settings.kafka_topic}|{partition}|{offset}"]
    assert "immense term in field=\"source\"" in letter["reason"], letter["reason"][:2000]  # Elasticsearch's own
    assert f"max length {LUCENE_MAX_TERM_BYTES}" in letter["reason"]
    assert letter["reasons"] == ["refused by Elasticsearch"]
    assert (letter["topic"], letter["partition"], letter["offset"]) == (settings.kafka_topic, partition, offset)
    assert (letter["refused_index"], letter["refused_id"]) == (settings.es_index_bars, IMMENSE.doc_id)
    assert json.loads(letter["raw"])["source"] == IMMENSE.source  # the refused document, whole


def test_a_writer_clock_skewed_either_way_stops_no_forecast(field):
    """30 GOOG daily bars, a record 55 minutes ahead of the clock from another writer, then 10
    GOOG bars (5 on time, 5 stamped a day behind): every GOOG bar from the 21st is predicted and
    judged, none is dropped, GOOG's state is kept."""
    settings = field.pipeline.settings
    predictions = field.pipeline.documents(settings.es_index_predictions)
    assert sorted(p for p in predictions if p.startswith("GOOG|")) == sorted(b.doc_id for b in GOOG[20:])
    assert predictions[GOOG[29].doc_id]["actual_close"] == GOOG[30].close  # bar 30 judged by bar 31
    assert predictions[GOOG[38].doc_id]["actual_close"] == GOOG[39].close
    metrics = field.pipeline.documents(settings.es_index_pipeline_metrics).values()
    assert sum(m.get("rows_dropped_by_watermark") or 0 for m in metrics) == 0
    assert SKEWED.doc_id in field.pipeline.ids(settings.es_index_bars)


def test_an_aborted_transaction_is_read_by_no_reader(field):
    """The stream job, the training replay and the producer's resume read TXN's 10 committed
    bars, not the 5 of the aborted transaction, and the restart found no gap."""
    settings = field.pipeline.settings
    assert {b.doc_id for b in TXN} & field.pipeline.ids(settings.es_index_bars) == {b.doc_id for b in TXN[:10]}
    replay = field.pipeline.run("./spark-submit.sh", str(ROOT / "tests" / "integration" / "replay_count.py"))
    replayed = set(json.loads(replay.stdout.strip().splitlines()[-1])["replayed"])
    # The replay reads the log: every valid message, the one Elasticsearch refused to store included.
    assert replayed == field.pipeline.ids(settings.es_index_bars) | {IMMENSE.doc_id}
    assert resume.last_published(settings, ["TXN"], "day", 1) == {"TXN": TXN[9].timestamp}
