"""Input as the field sends it, through the real Kafka, Spark and Elasticsearch: the market-data
API's real answers, one record holding two bars, a writer's skewed clock, an aborted
transaction. Nothing is lost silently, nothing wedges the job, no series loses its forecasts."""

from __future__ import annotations

import json
import time

from kafka import KafkaProducer

from finstream import topics
from finstream.schema import Bar
from producer import resume, samples
from tests.integration.conftest import ROOT, publish_baselines

DAY = 86_400_000
GOOG = samples.load_bars("goog-daily")[:40]


def send(pipeline, records: list[tuple[bytes, bytes, int | None]]) -> None:
    """(key, value, Kafka record timestamp or None for the producer's clock), in order."""
    settings = pipeline.settings
    topics.ensure_topic(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    for key, value, timestamp_ms in records:
        producer.send(settings.kafka_topic, key=key, value=value, timestamp_ms=timestamp_ms)
    producer.flush()
    producer.close()


def bar(ticker: str, timestamp: int, close: float, **fields) -> Bar:
    values = {"open": close, "high": close, "low": close, "volume": 1000.0, **fields}
    return Bar(ticker=ticker, timespan="day", multiplier=1, timestamp=timestamp, close=close, source="test", **values)


def test_the_api_real_answers_and_one_record_per_message(pipeline):
    """An index's bars without volume, trade counts in exponent notation, and a record that
    holds two bars: every message is a bar or a dead letter, with its reason."""
    ndx_t0 = 1_678_320_000_000  # 2023-03-09
    ndx_closes = (12264.64178551227, 12410.23950889041, 12311.04003593493, 12377.36991156857, 12228.4695767327)
    ndx = [json.dumps({"ticker": "I:NDX", "timespan": "day", "multiplier": 1, "timestamp": ndx_t0 + i * DAY,
                       "open": c, "high": c, "low": c, "close": c, "source": "polygon"}).encode()
           for i, c in enumerate(ndx_closes)]
    spy_counts = ("1.412331e+06", "1.105872e+06", "1.251006e+06", "1105872", "98765")
    spy = [bar("SPY", ndx_t0 + i * DAY, 400.0).to_json().replace(b'"transactions":null', f'"transactions":{n}'.encode())
           for i, n in enumerate(spy_counts)]
    first, second = bar("MSFT", 1_717_372_800_000, 300.0), bar("MSFT", 1_717_459_200_000, 301.0)  # 06-03, 06-04
    two_in_one = first.to_json() + b"\n" + second.to_json()
    send(pipeline, [(b"I:NDX", v, None) for v in ndx] + [(b"SPY", v, None) for v in spy]
         + [(b"MSFT", two_in_one, None)])
    pipeline.stream_index()

    settings = pipeline.settings
    bars = pipeline.documents(settings.es_index_bars)
    index = sorted((doc for doc in bars.values() if doc["ticker"] == "I:NDX"), key=lambda d: d["timestamp"])
    assert [doc["close"] for doc in index] == list(ndx_closes)
    assert not any("volume" in doc or "vwap" in doc or "transactions" in doc for doc in index)
    assert sorted(doc["transactions"] for doc in bars.values() if doc["ticker"] == "SPY") == \
        [98765, 1105872, 1105872, 1251006, 1412331]
    dead = list(pipeline.documents(settings.es_index_dead_letters).values())
    assert [(d["reason"], d["raw"]) for d in dead] == [("data after the JSON object", two_in_one.decode())]
    assert second.doc_id not in bars and first.doc_id not in bars  # the record is refused whole
    assert len(bars) + len(dead) == sum(topics.end_offsets(settings).values()) == 11
    assert pipeline.checkpoint_offsets() == topics.end_offsets(settings)
    # The producer's own reader agrees: the refused record is no resume point.
    assert resume.last_published(settings, ["MSFT", "I:NDX"], "day", 1) == {"I:NDX": ndx_t0 + 4 * DAY}


def test_a_writer_clock_skewed_either_way_stops_no_forecast(pipeline):
    """30 GOOG daily bars, one MSFT bar whose Kafka record time is 55 minutes ahead (another
    writer's clock), then the last 10 GOOG bars: 5 on time, 5 stamped a day behind. Every GOOG
    bar from the 21st is predicted and judged, none is dropped, GOOG's state is kept."""
    publish_baselines(pipeline.settings)
    now = int(time.time() * 1000)
    msft = bar("MSFT", GOOG[29].timestamp, 300.0)
    send(pipeline, [(b.key, b.to_json(), None) for b in GOOG[:30]] + [(msft.key, msft.to_json(), now + 55 * 60_000)])
    pipeline.stream_index()
    send(pipeline, [(b.key, b.to_json(), None) for b in GOOG[30:35]]
         + [(b.key, b.to_json(), now - DAY) for b in GOOG[35:]])
    pipeline.stream_index()

    settings = pipeline.settings
    assert pipeline.count(settings.es_index_bars) == 41
    predictions = pipeline.documents(settings.es_index_predictions)
    assert sorted(predictions) == sorted(b.doc_id for b in GOOG[20:])
    assert predictions[GOOG[29].doc_id]["actual_close"] == GOOG[30].close  # bar 30 judged by bar 31
    assert predictions[GOOG[38].doc_id]["actual_close"] == GOOG[39].close
    metrics = pipeline.documents(settings.es_index_pipeline_metrics).values()
    assert sum(m.get("rows_dropped_by_watermark") or 0 for m in metrics) == 0


def test_an_aborted_transaction_is_read_by_no_reader(pipeline):
    """10 bars, then another writer's transaction of 5 bars, aborted: the stream job, the
    training replay and the producer's resume read the 10, and the restart finds no gap."""
    committed, aborted = GOOG[:10], GOOG[10:15]
    send(pipeline, [(b.key, b.to_json(), None) for b in committed])
    settings = pipeline.settings
    writer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, transactional_id="other-writer")
    writer.init_transactions()
    writer.begin_transaction()
    for b in aborted:
        writer.send(settings.kafka_topic, key=b.key, value=b.to_json())
    writer.flush()
    writer.abort_transaction()
    writer.close()

    pipeline.stream_index()
    pipeline.stream_index()  # a restart: the aborted records and markers are no gap
    assert set(pipeline.ids(settings.es_index_bars)) == {b.doc_id for b in committed}
    assert pipeline.count(settings.es_index_dead_letters) == 0
    assert pipeline.checkpoint_offsets() == topics.end_offsets(settings)
    replay = pipeline.run("./spark-submit.sh", str(ROOT / "tests" / "integration" / "replay_count.py"))
    replayed = json.loads(replay.stdout.strip().splitlines()[-1])["replayed"]
    assert sorted(replayed) == sorted(b.doc_id for b in committed)
    assert resume.last_published(settings, ["GOOG"], "day", 1) == {"GOOG": committed[-1].timestamp}
