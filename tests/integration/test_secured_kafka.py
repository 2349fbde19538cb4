"""Kafka secured for real: a broker with SASL_SSL (SCRAM-SHA-512 over TLS, a CA made by the
test) and ACLs. The producer's user may only write the topic, the readers' user only read it
(and use its consumer groups); the producer, the stream job (Spark's Kafka source) and
train.py run with credentials from the environment; a wrong password stops each with one
line, and no password appears in any output."""

from __future__ import annotations

import secrets
import sys

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType
from kafka.errors import KafkaError

from finstream.core.config import Settings
from finstream.stores import topics
from tests.integration.conftest import TRAINING_JVM
from tests.secured_kafka import SecuredKafka

PRODUCER, READER = "finstream-producer", "finstream-reader"
BARS = 700  # GOOG daily: enough for a chronological split


@pytest.fixture
def secured(tmp_path):
    kafka = SecuredKafka(tmp_path / "secured-kafka")
    kafka.folder.mkdir()
    kafka.start([PRODUCER, READER])
    yield kafka
    kafka.stop()


def grant(settings: Settings, topic: str) -> None:
    """The ACLs an operator would set: least privilege for each user."""
    on_topic = ResourcePattern(ResourceType.TOPIC, topic)
    # Spark's Kafka source and batch reader name their groups spark-kafka-source-... / -relation-...
    spark_groups = ResourcePattern(ResourceType.GROUP, "spark-kafka-", ACLResourcePatternType.PREFIXED)
    acls = [ACL(f"User:{user}", "*", operation, ACLPermissionType.ALLOW, resource)
            for user, operation, resource in ((PRODUCER, ACLOperation.WRITE, on_topic),
                                              (PRODUCER, ACLOperation.DESCRIBE, on_topic),
                                              (READER, ACLOperation.READ, on_topic),
                                              (READER, ACLOperation.DESCRIBE, on_topic),
                                              (READER, ACLOperation.READ, spark_groups))]
    admin = topics.admin_client(settings)
    try:
        assert not admin.create_acls(acls)["failed"]
    finally:
        admin.close()


def test_sasl_ssl_with_acls_end_to_end(secured, pipeline, monkeypatch):
    for key, value in secured.client_env("admin").items():  # this process acts as the operator
        monkeypatch.setenv(key, value)
    operator = Settings.load(environ={**pipeline.env, **secured.client_env("admin")})
    topics.ensure_topic(operator)
    grant(operator, operator.kafka_topic)
    producer_env, reader_env = secured.client_env(PRODUCER), secured.client_env(READER)
    outputs = []

    outputs.append(pipeline.run(sys.executable, "-m", "producer", "replay", "--dataset", "goog-daily",
                                "--limit", str(BARS), env=producer_env))
    assert sum(topics.end_offsets(operator).values()) == BARS
    outputs.append(pipeline.run("./spark-submit.sh", "jobs/stream_index.py", "--available-now", "--no-predict",
                                env=reader_env))
    assert pipeline.count(pipeline.settings.es_index_bars) == BARS
    outputs.append(pipeline.run("./spark-submit.sh", "jobs/train.py", "--no-plots", "--questions", "lags",
                                "--models", "linear", "--folds", "0", env={**TRAINING_JVM, **reader_env}))
    assert "lags" in outputs[-1].stdout + outputs[-1].stderr

    # The ACLs hold: the readers' user cannot write, the producer's user cannot read.
    monkeypatch.setenv("KAFKA_SASL_USERNAME", READER)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", secured.users[READER])
    as_reader = Settings.load(environ={**pipeline.env, **reader_env})
    writer = KafkaProducer(bootstrap_servers=secured.bootstrap, **as_reader.kafka_client_options())
    with pytest.raises(KafkaError, match="TopicAuthorizationFailed"):
        writer.send(as_reader.kafka_topic, b"not allowed").get(timeout=30)
    writer.close(timeout=5)
    monkeypatch.setenv("KAFKA_SASL_USERNAME", PRODUCER)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", secured.users[PRODUCER])
    as_producer = Settings.load(environ={**pipeline.env, **producer_env})
    reader = KafkaConsumer(bootstrap_servers=secured.bootstrap, **as_producer.kafka_client_options())
    reader.assign([TopicPartition(as_producer.kafka_topic, 0)])
    reader.seek(TopicPartition(as_producer.kafka_topic, 0), 0)
    with pytest.raises(KafkaError, match="TopicAuthorizationFailed"):
        for _ in range(10):
            reader.poll(timeout_ms=2000)
    reader.close()

    # A wrong password: one line from each command, naming the user, not the password.
    wrong = f"wrong-{secrets.token_hex(8)}"
    for user, command in ((PRODUCER, (sys.executable, "-m", "producer", "replay", "--limit", "1")),
                          (READER, ("./spark-submit.sh", "jobs/stream_index.py", "--available-now")),
                          (READER, ("./spark-submit.sh", "jobs/train.py", "--no-plots"))):
        said = pipeline.mistake(*command, env=secured.client_env(user, wrong))
        assert f"refused the SCRAM-SHA-512 login of '{user}'" in said and wrong not in said, said
    for result in outputs:
        text = result.stdout + result.stderr
        assert not any(password in text for password in secured.users.values())
