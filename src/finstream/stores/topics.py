"""The Kafka topic: created by the project with unlimited retention, because in a Kappa
architecture the log is the system of record and training replays it from the start."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import (
    IncompatibleBrokerVersion,
    KafkaConnectionError,
    NoBrokersAvailable,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)

from finstream.core.config import Settings
from finstream.core.errors import UserError

log = logging.getLogger(__name__)


def replication(settings: Settings, brokers: int) -> tuple[int, int]:
    """The replication of a topic the project creates on a cluster of `brokers` brokers.

    Returns:
        (replication factor, min.insync.replicas): the configured values, or for 0 (automatic)
        min(3, brokers) copies, of which 2 must have each write when there are 3 or more (else 1).

    Raises:
        UserError: more copies than brokers (Kafka would refuse the topic), or more in-sync
            replicas than copies (Kafka would create it, and refuse every acks=all write).
    """
    factor = settings.kafka_replication_factor or min(3, brokers)
    in_sync = settings.kafka_min_insync_replicas or (2 if factor >= 3 else 1)
    if factor > brokers:
        raise UserError(f"KAFKA_REPLICATION_FACTOR={factor}, but the cluster at {settings.kafka_bootstrap_servers} "
                        f"has {brokers} broker(s): set it to {brokers} or fewer, or to 0 (automatic)")
    if in_sync > factor:
        raise UserError(f"KAFKA_MIN_INSYNC_REPLICAS={in_sync} is more than the topic's replication factor, {factor}: "
                        f"every write would be refused; set it to {factor} or fewer, or to 0 (automatic)")
    return factor, in_sync


def topic_config(settings: Settings, min_insync_replicas: int = 1) -> dict[str, str]:
    """A new topic's configs: KAFKA_RETENTION_MS, no size limit, and `min_insync_replicas`."""
    return {"retention.ms": str(settings.kafka_retention_ms), "retention.bytes": "-1",
            "min.insync.replicas": str(min_insync_replicas)}


class KafkaUnavailable(UserError):
    """No broker answered at KAFKA_BOOTSTRAP_SERVERS; the message says to start Kafka or set it."""


class TopicMissing(UserError):
    """The topic does not exist; the message names the topics there are and how to publish bars."""


class LoginRefused(UserError):
    """A broker refused the SASL login; the message names the user and the settings to check."""


class NotAuthorized(UserError):
    """The Kafka user may neither see nor create the topic; the message says which ACLs to grant."""


@contextmanager
def _refused_logins() -> Iterator[list[str]]:
    """kafka-python says that a broker refused the SASL login only in its connection log, then
    fails with a generic error (no broker, incompatible version): collect those lines, and
    keep them out of the output (the caller says it once, in one line)."""
    logger, refused = logging.getLogger("kafka.conn"), []

    def note(record: logging.LogRecord) -> bool:
        if "Authentication failed" in record.getMessage():
            refused.append(record.getMessage())
        return False

    level = logger.level
    logger.setLevel(min(level or logging.ERROR, logging.ERROR))
    logger.addFilter(note)
    try:
        yield refused
    finally:
        logger.removeFilter(note)
        logger.setLevel(level)


def admin_client(settings: Settings) -> KafkaAdminClient:
    """A Kafka admin client: every command's first contact with Kafka.

    An unreachable cluster or a refused login ends here, with one line saying what to do.

    Raises:
        LoginRefused: a broker refused the SASL login (check KAFKA_SASL_USERNAME and
            KAFKA_SASL_PASSWORD, or KAFKA_SASL_PASSWORD_FILE).
        KafkaUnavailable: no broker could be reached (start Kafka with `make up`, or set
            KAFKA_BOOTSTRAP_SERVERS).
    """
    with _refused_logins() as refused:
        try:
            return KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, client_id="finstream-admin",
                                    **settings.kafka_client_options())
        except (NoBrokersAvailable, KafkaConnectionError, IncompatibleBrokerVersion):
            if refused:
                raise LoginRefused(
                    f"Kafka at {settings.kafka_bootstrap_servers} refused the {settings.kafka_sasl_mechanism} login "
                    f"of {settings.kafka_sasl_username!r}: check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD "
                    "(or KAFKA_SASL_PASSWORD_FILE)") from None
            raise KafkaUnavailable(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: start it with "
                                   "`make up` or set KAFKA_BOOTSTRAP_SERVERS") from None


def require_topic(settings: Settings, topic: str | None = None) -> None:
    """Checks that the topic exists.

    Args:
        settings: the cluster and KAFKA_TOPIC.
        topic: the topic (default: KAFKA_TOPIC).

    Raises:
        TopicMissing: no such topic; the message names the topics there are and says to publish
            bars first (python -m producer replay) or set KAFKA_TOPIC.
        LoginRefused, KafkaUnavailable: as from admin_client.
    """
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
    """Creates the topic unless it exists, replicated per replication() and kept per topic_config().

    With ACLs, a user that may only read or write an existing topic sees it (DESCRIBE) and
    never asks to create it.

    Args:
        settings: the cluster, KAFKA_TOPIC and the topic settings.
        topic: the topic (default: KAFKA_TOPIC).
        partitions: its partitions if created (default: KAFKA_TOPIC_PARTITIONS).

    Raises:
        NotAuthorized: the user may neither see nor create the topic; the message says to grant
            it DESCRIBE (and WRITE or READ), or to have an administrator create the topic.
        LoginRefused, KafkaUnavailable: as from admin_client.
    """
    topic = topic or settings.kafka_topic
    admin = admin_client(settings)
    try:
        if topic in admin.list_topics():
            return
        factor, in_sync = replication(settings, len(admin.describe_cluster()["brokers"]))
        admin.create_topics([
            NewTopic(topic, num_partitions=partitions or settings.kafka_topic_partitions,
                     replication_factor=factor, topic_configs=topic_config(settings, in_sync))
        ])
        log.info("created topic %s (replication factor %d, min.insync.replicas %d)", topic, factor, in_sync)
    except TopicAlreadyExistsError:
        pass
    except TopicAuthorizationFailedError:
        raise NotAuthorized(f"Kafka user {settings.kafka_sasl_username!r} may neither see nor create topic "
                            f"{topic!r}: grant it DESCRIBE (and WRITE or READ) on the topic, or have an "
                            "administrator create it") from None
    finally:
        admin.close()


def consumer(settings: Settings, *topics: str, **options) -> KafkaConsumer:
    """A kafka-python consumer of the cluster that reads committed records only.

    Every Python reader of the topic makes it this way: a transaction another writer aborted
    holds no bars, as for the stream job and the training replay (finstream.ingest.source).

    Args:
        settings: the cluster and its security options.
        *topics: the topics to subscribe to (none: assign partitions later).
        **options: more KafkaConsumer options.
    """
    return KafkaConsumer(*topics, bootstrap_servers=settings.kafka_bootstrap_servers, isolation_level="read_committed",
                         **settings.kafka_client_options(), **options)


def end_offsets(settings: Settings, topic: str | None = None) -> dict[int, int]:
    """Partition -> the end of the log as a committed reader sees it.

    That is the last stable offset: a transaction still open ends it.

    Args:
        settings: the cluster and KAFKA_TOPIC.
        topic: the topic (default: KAFKA_TOPIC).
    """
    return _offsets(settings, topic, end=True)


def beginning_offsets(settings: Settings, topic: str | None = None) -> dict[int, int]:
    """Partition -> the first offset the log still holds (above 0 once records were deleted).

    Args:
        settings: the cluster and KAFKA_TOPIC.
        topic: the topic (default: KAFKA_TOPIC).
    """
    return _offsets(settings, topic, end=False)


def _offsets(settings: Settings, topic: str | None, end: bool) -> dict[int, int]:
    topic = topic or settings.kafka_topic
    reader = consumer(settings)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or [])]
        offsets = reader.end_offsets(partitions) if end else reader.beginning_offsets(partitions)
        return {tp.partition: offset for tp, offset in offsets.items()}
    finally:
        reader.close()
