"""Publishes bars to Kafka: key = ticker (one ticker's bars stay in order on one partition),
value = the bar's JSON. Idempotent producer with acks=all: a broker retry cannot write a
bar twice, and a send is only counted once every in-sync replica has it."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

from kafka import KafkaProducer
from kafka.errors import NoBrokersAvailable

from finstream.core.config import Settings
from finstream.core.schema import Bar

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    pass


@dataclass
class BarPublisher:
    settings: Settings
    topic: str | None = None
    delivered: int = 0
    failed: int = 0
    _errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.topic = self.topic or self.settings.kafka_topic
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                client_id="finstream-producer",
                acks="all",
                enable_idempotence=True,
                retries=2_147_483_647,  # bounded by delivery_timeout_ms instead
                delivery_timeout_ms=120_000,
                # kafka-python's idempotent producer keeps ordering only with one request in flight.
                max_in_flight_requests_per_connection=1,
                linger_ms=20,
                batch_size=256 * 1024,
                compression_type="gzip",
                **self.settings.kafka_client_options(),
            )
        except NoBrokersAvailable as exc:
            raise PublishError(f"cannot reach Kafka at {self.settings.kafka_bootstrap_servers} ({exc}): "
                               "start it with `make up` or set KAFKA_BOOTSTRAP_SERVERS") from None

    def publish(self, bar: Bar) -> None:
        try:
            value = bar.to_json()
        except ValueError:  # NaN or Infinity from the API: not a bar, but not a reason to stop either
            fields = [name for name, v in dataclasses.asdict(bar).items()
                      if isinstance(v, float) and not math.isfinite(v)]
            log.warning("%s %s: %s not a finite number: published for the stream job to dead-letter", bar.ticker,
                        bar.timestamp, ", ".join(fields))
            value = bar.to_json(allow_nan=True)
        self.send_raw(bar.key, value)

    def send_raw(self, key: bytes | None, value: bytes) -> None:
        """Any bytes: the tests use it to publish malformed messages."""
        future = self._producer.send(self.topic, key=key, value=value)
        future.add_callback(self._on_delivered)
        future.add_errback(self._on_failed)

    def flush(self) -> None:
        """Waits for every send; raises if any bar could not be delivered."""
        self._producer.flush()
        if self.failed:
            raise PublishError(f"{self.failed} message(s) could not be delivered to {self.topic} "
                               f"(first error: {self._errors[0]}); they were not written: re-run the command")

    def close(self, timeout: float = 30.0) -> None:
        # Bounded: an idempotent producer closed before its first broker handshake finished
        # (say, right after an API error) would otherwise wait for it forever.
        self._producer.close(timeout=timeout)

    def __enter__(self) -> "BarPublisher":
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self.close(timeout=30.0 if exc[0] is None else 5.0)

    def _on_delivered(self, _metadata) -> None:
        self.delivered += 1

    def _on_failed(self, exc: Exception) -> None:
        self.failed += 1
        if len(self._errors) < 5:
            self._errors.append(repr(exc))
