"""The Kafka topic: created by the project with unlimited retention, because in a Kappa
architecture the log is the system of record and training replays it from the start."""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import NoBrokersAvailable, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from finstream.config import Settings
from finstream.errors import UserError

log = logging.getLogger(__name__)


def replication(settings: Settings, brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of a topic the project creates on a cluster of
    `brokers`: the configured values, or (0 = automatic) min(3, brokers) copies of which 2 must
    have each write when there are 3 or more."""
    factor = settings.kafka_replication_factor or min(3, brokers)
    in_sync = settings.kafka_min_insync_replicas or (2 if factor >= 3 else 1)
    return factor, in_sync


def topic_config(settings: Settings, min_insync_replicas: int = 1) -> dict[str, str]:
    return {"retention.ms": str(settings.kafka_retention_ms), "retention.bytes": "-1",
            "min.insync.replicas": str(min_insync_replicas)}


class KafkaUnavailable(UserError):
    pass


class TopicMissing(UserError):
    pass


def admin_client(settings: Settings) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, client_id="finstream-admin",
                                **settings.kafka_client_options())
    except NoBrokersAvailable:
        raise KafkaUnavailable(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: start it with `make up` "
                               "or set KAFKA_BOOTSTRAP_SERVERS") from None


def require_topic(settings: Settings, topic: str | None = None) -> None:
    """Raises TopicMissing (naming the topics there are) unless the topic exists."""
    topic = topic or settings.kafka_topic
    admin = admin_client(settings)
    try:
        existing = sorted(t for t in admin.list_topics() if not t.startswith("__"))
    finally:
        admin.close()
    if topic not in existing:
        raise TopicMissing(f"Kafka at {settings.kafka_bootstrap_servers} has no topic {topic!r} (it has: "
                           f"{', '.join(existing) or 'none'}): publish bars first (python -m producer replay) "
                           "or set KAFKA_TOPIC")


def ensure_topic(settings: Settings, topic: str | None = None, partitions: int | None = None) -> None:
    topic = topic or settings.kafka_topic
    admin = admin_client(settings)
    try:
        factor, in_sync = replication(settings, len(admin.describe_cluster()["brokers"]))
        admin.create_topics([
            NewTopic(topic, num_partitions=partitions or settings.kafka_topic_partitions,
                     replication_factor=factor, topic_configs=topic_config(settings, in_sync))
        ])
        log.info("created topic %s (replication factor %d, min.insync.replicas %d)", topic, factor, in_sync)
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def delete_topic(settings: Settings, topic: str | None = None) -> None:
    """Removes a topic (tests and benchmarks clean up after themselves); absent is fine."""
    admin = admin_client(settings)
    try:
        admin.delete_topics([topic or settings.kafka_topic])
    except UnknownTopicOrPartitionError:
        pass
    finally:
        admin.close()


def end_offsets(settings: Settings, topic: str | None = None) -> dict[int, int]:
    """Partition -> next offset to be written (the log's end)."""
    return _offsets(settings, topic, end=True)


def beginning_offsets(settings: Settings, topic: str | None = None) -> dict[int, int]:
    """Partition -> the first offset the log still holds (above 0 once records were deleted)."""
    return _offsets(settings, topic, end=False)


def _offsets(settings: Settings, topic: str | None, end: bool) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    topic = topic or settings.kafka_topic
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, **settings.kafka_client_options())
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        offsets = consumer.end_offsets(partitions) if end else consumer.beginning_offsets(partitions)
        return {tp.partition: offset for tp, offset in offsets.items()}
    finally:
        consumer.close()
