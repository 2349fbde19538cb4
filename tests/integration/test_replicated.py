"""The replicated stack: 3 KRaft brokers (topic replication factor 3, min.insync.replicas 2)
and 3 Elasticsearch nodes (1 replica per shard), started by this module on its own ports beside
the single stack (`KAFKA_BROKERS=3 ES_NODE_COUNT=3 make up` starts the same on the default
ports). A broker or an Elasticsearch node is SIGKILLed while the stream job runs with
predictions on and a backfill publishes: nothing is lost, nothing doubled."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from kafka.admin import ConfigResource

from finstream.core.config import local_dir
from finstream.core.schema import Bar
from finstream.stores import elastic, topics
from tests.fakes.massive import FakeMassive
from tests.integration.conftest import ROOT, assert_predictions, drive_stack, publish_baselines, wait_until
from tests.integration.test_reliability import generated_bars

NODES = 3
KAFKA_PORT, ES_PORT = 19092, 19200
STACK = {"KAFKA_BROKERS": str(NODES), "ES_NODE_COUNT": str(NODES), "KAFKA_PORT": str(KAFKA_PORT),
         "KAFKA_CONTROLLER_PORT": str(KAFKA_PORT + 1), "ES_PORT": str(ES_PORT), "ES_TRANSPORT_PORT": "19300"}
BROKERS = [f"127.0.0.1:{KAFKA_PORT + 2 * i}" for i in range(NODES)]  # node i+1 (stack/kafka.sh)
ES_NODES = [f"127.0.0.1:{ES_PORT + i}" for i in range(NODES)]
DATA = (local_dir() / f"kafka-cluster-{KAFKA_PORT}", local_dir() / f"elasticsearch-cluster-{ES_PORT}")


def remove_stack() -> None:
    """SIGKILLs every node and removes the data: the next run starts from scratch."""
    for name in [f"kafka-{KAFKA_PORT + 2 * i}" for i in range(NODES)] + [f"elasticsearch-{ES_PORT + i}"
                                                                           for i in range(NODES)]:
        if (local_dir() / "run" / f"{name}.pid").exists():
            try:
                sigkill(f"{name}.pid")
            except ProcessLookupError:
                pass
            (local_dir() / "run" / f"{name}.pid").unlink()
    for folder in DATA:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def replicated():
    remove_stack()  # what an interrupted run may have left
    try:
        drive_stack("kafka.sh", "start", **STACK)
        drive_stack("elasticsearch.sh", "start", **STACK)
        yield {"KAFKA_BOOTSTRAP_SERVERS": ",".join(BROKERS), "ES_NODES": ",".join(ES_NODES)}
    finally:
        remove_stack()


def sigkill(pidfile_name: str) -> None:
    pid = int((local_dir() / "run" / pidfile_name).read_text())
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):  # reaped by its parent (init): gone from the process table
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def partitions(settings) -> list[dict]:
    """The topic's partitions as the brokers describe them, once its metadata has spread."""
    described: list[dict] = []

    def known() -> bool:
        admin = topics.admin_client(settings)
        try:
            described[:] = admin.describe_topics([settings.kafka_topic])[0]["partitions"]
        finally:
            admin.close()
        return len(described) == settings.kafka_topic_partitions

    wait_until(known, 30, "the topic's metadata", 0.5)
    return sorted(described, key=lambda p: p["partition"])


def stop(job: subprocess.Popen) -> None:
    os.killpg(job.pid, signal.SIGTERM)
    job.wait(60)


def test_topic_and_indices_are_replicated(replicated, pipeline):
    pipeline.env.update(replicated)
    settings = pipeline.settings
    topics.ensure_topic(settings)
    assert [len(p["replicas"]) for p in partitions(settings)] == [NODES] * settings.kafka_topic_partitions
    entries: dict[str, str] = {}

    def described() -> bool:  # a broker that has not applied the new topic yet answers without it
        admin = topics.admin_client(settings)
        try:
            configs = admin.describe_configs([ConfigResource("TOPIC", settings.kafka_topic)])
        finally:
            admin.close()
        entries.update({name: value for name, value, *_ in configs[0].resources[0][4]})
        return "min.insync.replicas" in entries

    wait_until(described, 30, "the topic's configuration", 0.5)
    assert entries["min.insync.replicas"] == "2"
    es = pipeline.es()
    elastic.ensure_indices(es, settings)
    health = es.cluster.health(index=settings.es_index_bars, wait_for_status="green", timeout="60s")
    assert health["status"] == "green" and health["number_of_nodes"] == NODES
    assert es.indices.get_settings(index=settings.es_index_bars)[settings.es_index_bars]["settings"]["index"][
        "number_of_replicas"] == "1"


def test_partition_leader_killed_mid_stream_loses_and_doubles_nothing(replicated, pipeline, tmp_path):
    pipeline.env.update(replicated)
    settings = pipeline.settings
    publish_baselines(settings)
    dead = [(b"BAD", b'{"ticker": "AAPL"'), (b"BAD", b"not json")] * 5
    pipeline.publish(dead)
    log = tmp_path / "stream.log"
    job = pipeline.start_stream(log, STREAM_TRIGGER_INTERVAL="1 second")
    tickers = ("AAPL", "MSFT", "NVDA", "AMZN")
    try:
        wait_until(lambda: pipeline.committed_batches() >= 1, 120, "the stream job's first batch", 0.5)
        with FakeMassive(api_key="k", page_size=50) as fake:
            fake.latency = 0.25  # 40 pages: about 10 s of publishing
            for i, ticker in enumerate(tickers):
                fake.add_bars(ticker, 1_577_944_800_000, 500, price=100.0 + i)
            env = {**os.environ, **pipeline.env, "POLYGON_BASE_URL": fake.url, "POLYGON_API_KEY": "k"}
            backfill = subprocess.Popen(
                [sys.executable, "-m", "producer", "backfill", "--tickers", ",".join(tickers),
                 "--from", "2020-01-01", "--to", "2023-12-31"], cwd=ROOT, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            wait_until(lambda: len(fake.requests) >= 8, 60, "the backfill to publish", 0.2)
            sigkill(f"kafka-{KAFKA_PORT + 2 * (partitions(settings)[0]['leader'] - 1)}.pid")
            assert backfill.poll() is None  # killed mid-backfill
            time.sleep(5)  # the backfill and the stream job carry on with two brokers
            drive_stack("kafka.sh", "start", **STACK)
            output, _ = backfill.communicate(timeout=240)
        assert backfill.returncode == 0, output
        assert "backfill: 2000 bars sent" in output
        # In Kafka itself: exactly the records sent, none written twice by a producer retry.
        assert sum(topics.end_offsets(settings).values()) == 2000 + len(dead)
        bars = [b for t in tickers for b in fake_bars(fake, t)]
        wait_until(lambda: job.poll() is not None or (pipeline.count(settings.es_index_bars) == 2000
                                                      and pipeline.count(settings.es_index_predictions) == 2000 - 80),
                   240, "every bar and prediction", 2.0)
        assert job.poll() is None, log.read_text()[-3000:]
    finally:
        stop(job)
    assert pipeline.ids(settings.es_index_bars) == {b.doc_id for b in bars}
    assert pipeline.count(settings.es_index_dead_letters) == len(dead)
    assert_predictions(pipeline, bars)


def fake_bars(fake: FakeMassive, ticker: str) -> list[Bar]:
    return [Bar(ticker=ticker, timespan="day", multiplier=1, timestamp=r["t"], open=r["o"], high=r["h"], low=r["l"],
                close=r["c"], volume=r["v"], vwap=r["vw"], transactions=r["n"], source="polygon")
            for r in fake.bars[ticker]]


def test_an_elasticsearch_node_killed_mid_stream_is_ridden_out(replicated, pipeline, tmp_path):
    pipeline.env.update(replicated)
    settings = pipeline.settings
    publish_baselines(settings)
    bars = generated_bars(10, 400)
    first, second = bars[:2000], bars[2000:]  # tickers T000-T004, then T005-T009
    pipeline.publish([(b.key, b.to_json()) for b in first])
    log = tmp_path / "stream.log"
    job = pipeline.start_stream(log, STREAM_TRIGGER_INTERVAL="1 second", STREAM_MAX_OFFSETS_PER_TRIGGER="500")
    es = pipeline.es()
    try:
        wait_until(lambda: pipeline.committed_batches() >= 2, 180, "two batches before the kill", 0.5)
        shards = es.cat.shards(index=settings.es_index_bars, format="json")
        primary = next(s["node"] for s in shards if s["prirep"] == "p")  # node-<i>
        sigkill(f"elasticsearch-{ES_PORT + int(primary.split('-')[1]) - 1}.pid")
        pipeline.publish([(b.key, b.to_json()) for b in second])
        wait_until(lambda: job.poll() is not None or (pipeline.count(settings.es_index_bars) == len(bars)
                                                      and pipeline.count(settings.es_index_predictions) == 10 * 380),
                   300, "every bar and prediction with a node down", 2.0)
        assert job.poll() is None, log.read_text()[-3000:]
        assert es.cluster.health()["number_of_nodes"] == NODES - 1
        drive_stack("elasticsearch.sh", "start", **STACK)
        health = es.cluster.health(wait_for_status="green", wait_for_nodes=str(NODES), timeout="120s")
        assert health["status"] == "green"
        assert job.poll() is None, log.read_text()[-3000:]
    finally:
        stop(job)
    assert pipeline.ids(settings.es_index_bars) == {b.doc_id for b in bars}
    assert pipeline.count(settings.es_index_dead_letters) == 0
    assert_predictions(pipeline, bars)
