"""Where the live feed resumes: the last published bar time per ticker, read back from the
topic itself (the tail of the partition its key maps to), never from a side file that could
drift from it. Both live modes (REST polling and WebSocket) start from here."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner import DefaultPartitioner

from finstream.core.config import Settings
from finstream.ingest import messages
from finstream.stores import topics

log = logging.getLogger(__name__)

TAIL_RECORDS = 2_000  # records read back per step when looking for a ticker's last bar


def resume_points(settings: Settings, tickers: Sequence[str], timespan: str, multiplier: int) -> dict[str, int]:
    """last_published, each ticker's starting point logged (both live modes start here)."""
    found = last_published(settings, tickers, timespan, multiplier)
    for ticker in tickers:
        if ticker in found:
            log.info("%s: resuming after %s (last bar in the topic)", ticker, iso_minute(found[ticker]))
        else:
            log.info("%s: nothing in the topic yet: starting %g hours back", ticker, settings.live_start_hours_back)
    return found


def iso_minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="minutes")


def last_published(settings: Settings, tickers: Iterable[str], timespan: str, multiplier: int) -> dict[str, int]:
    """{ticker: start of its newest bar in the topic} for the series (ticker, timespan,
    multiplier), read from the tail of each ticker's partition. Tickers never published
    are absent."""
    wanted = set(tickers)
    consumer = topics.consumer(settings, enable_auto_commit=False, group_id=None, consumer_timeout_ms=5_000)
    try:
        partitions = sorted(consumer.partitions_for_topic(settings.kafka_topic) or [])
        if not partitions:
            return {}
        # Bars are keyed by ticker: each ticker's bars are on the partition its key maps to.
        by_partition: dict[int, set[str]] = {}
        for ticker in wanted:
            partition = DefaultPartitioner()(ticker.encode(), partitions, partitions)
            by_partition.setdefault(partition, set()).add(ticker)
        found: dict[str, int] = {}
        for partition, names in by_partition.items():
            found.update(_tail_scan(consumer, TopicPartition(settings.kafka_topic, partition), names, timespan,
                                    multiplier))
        return found
    finally:
        consumer.close()


def _tail_scan(consumer: KafkaConsumer, tp: TopicPartition, tickers: set[str], timespan: str,
               multiplier: int) -> dict[str, int]:
    """Reads the partition backwards in growing windows until every ticker has been seen
    or the beginning is reached; the newest bar time per ticker in what was read."""
    consumer.assign([tp])
    begin, end = consumer.beginning_offsets([tp])[tp], consumer.end_offsets([tp])[tp]
    found: dict[str, int] = {}
    stop, window = end, TAIL_RECORDS
    while stop > begin and not tickers <= set(found):
        start = max(begin, stop - window)
        consumer.seek(tp, start)
        while consumer.position(tp) < stop:
            batch = consumer.poll(timeout_ms=2_000)
            if not batch:
                break
            for record in batch.get(tp, []):
                if record.offset >= stop:
                    break
                # Only a bar the stream job indexes counts: a refused message is no resume point.
                bar = messages.valid_bar(record.value)
                if bar and bar["ticker"] in tickers and bar["timespan"] == timespan \
                        and bar["multiplier"] == multiplier:
                    found[bar["ticker"]] = max(found.get(bar["ticker"], bar["timestamp"]), bar["timestamp"])
        stop, window = start, window * 4
    return found

