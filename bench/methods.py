"""The ways to index the topic that the stream job is compared with (bench/compare.py runs
each as its own process, so its CPU time and peak memory are its own):

  one_by_one  the report's original method: a kafka-python consumer that indexes each bar
              with its own request (`es.index`)
  bulk        what a Python user would write instead: kafka-python consumer, `helpers.bulk`
              with large chunks, large fetches
  parallel_bulk  the same with `helpers.parallel_bulk` on two threads
  follow      the latency peer (bench/latency.py): bulk-indexes each poll as it comes
  ceiling     no Kafka and no Python per document in the timed part: the documents are
              serialised into `_bulk` bodies first, then POSTed straight to Elasticsearch
              over two connections; what Elasticsearch itself can take here

The consumers do what the stream job does to a bar: parse the JSON, take the bar's fields,
compute its deterministic id, add the Kafka coordinates and times (the same document, under
the same strict mapping). Refused messages are counted, not dead-lettered: the benchmark
topic holds none.

    python -m bench.methods bulk --index bench-bulk-x --expected 1000000
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from elasticsearch import helpers
from kafka import KafkaConsumer

from finstream.core.config import Settings
from finstream.core.errors import ArgumentParser, HelpFormatter, exit_on_user_error, non_negative_int
from finstream.core.schema import Bar, bar_from_dict
from finstream.ingest import messages
from finstream.stores import elastic, topics

ROOT = Path(__file__).resolve().parents[1]

CHUNK = 5_000  # documents per _bulk request (ES-Hadoop's es.batch.size.entries is the same)


def document(bar: Bar, published_at: int, partition: int, offset: int) -> dict:
    """The document the stream job writes for a bar: its fields, its id, its Kafka coordinates,
    when it was published and indexed (epoch ms)."""
    return {**bar.__dict__, "doc_id": bar.doc_id, "published_at": published_at,
            "indexed_at": int(time.time() * 1000), "kafka_partition": partition, "kafka_offset": offset}


def bar_document(record) -> dict | None:
    """The document the stream job writes for a valid bar, or None for a refused message."""
    fields = messages.valid_bar(record.value)  # the stream job's rules, in Python
    if fields is None:
        return None
    return document(bar_from_dict(fields), record.timestamp, record.partition, record.offset)


def consumer(settings: Settings, **options) -> KafkaConsumer:
    return topics.consumer(settings, settings.kafka_topic, group_id=f"bench-{uuid.uuid4().hex[:8]}",
                           auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=10_000,
                           **options)


def documents(records, expected: int, stop: threading.Event):
    seen = 0
    for record in records:
        seen += 1
        document = bar_document(record)
        if document is not None:
            yield document
        if seen >= expected or stop.is_set():
            return


def one_by_one(settings: Settings, index: str, expected: int, stop: threading.Event) -> int:
    es = elastic.client(settings)
    indexed = 0
    for document in documents(consumer(settings), expected, stop):
        es.index(index=index, id=document["doc_id"], document=document)
        indexed += 1
    return indexed


def bulk(settings: Settings, index: str, expected: int, stop: threading.Event) -> int:
    es = elastic.client(settings).options(request_timeout=120)
    records = consumer(settings, max_poll_records=CHUNK, fetch_max_bytes=64 * 1024 * 1024,
                       max_partition_fetch_bytes=16 * 1024 * 1024)
    actions = ({"_index": index, "_id": d["doc_id"], "_source": d} for d in documents(records, expected, stop))
    indexed, errors = helpers.bulk(es, actions, chunk_size=CHUNK, max_chunk_bytes=50 * 1024 * 1024,
                                   stats_only=True)
    if errors:
        raise SystemExit(f"{errors} documents refused by Elasticsearch")
    return indexed


def parallel_bulk(settings: Settings, index: str, expected: int, stop: threading.Event) -> int:
    """bulk with helpers.parallel_bulk on two threads: what a careful Python user writes."""
    es = elastic.client(settings).options(request_timeout=120)
    records = consumer(settings, max_poll_records=CHUNK, fetch_max_bytes=64 * 1024 * 1024,
                       max_partition_fetch_bytes=16 * 1024 * 1024)
    actions = ({"_index": index, "_id": d["doc_id"], "_source": d} for d in documents(records, expected, stop))
    indexed = 0
    for ok, item in helpers.parallel_bulk(es, actions, thread_count=2, chunk_size=CHUNK,
                                          max_chunk_bytes=50 * 1024 * 1024, raise_on_error=False):
        if not ok:
            raise SystemExit(f"Elasticsearch refused a document: {item}")
        indexed += 1
    return indexed


def follow(settings: Settings, index: str, expected: int, stop: threading.Event) -> int:
    """The latency peer of the stream job: a plain consumer that bulk-indexes what each poll
    returns (at most 100 ms of waiting), under the index's default 1 s refresh; runs until
    SIGTERM (or `expected` documents)."""
    es = elastic.client(settings)
    records = consumer(settings)
    indexed = 0
    while not stop.is_set() and indexed < expected:
        polled = records.poll(timeout_ms=100)
        batch = [d for part in polled.values() for r in part if (d := bar_document(r)) is not None]
        if batch:
            helpers.bulk(es, ({"_index": index, "_id": d["doc_id"], "_source": d} for d in batch))
            indexed += len(batch)
    return indexed


def ceiling(settings: Settings, index: str, expected: int, stop: threading.Event) -> int:
    """Reads the topic first (not timed by the harness's clock: the harness times from the
    first document searchable), then sends ready-made _bulk bodies."""
    bodies, batch = [], []
    for document in documents(consumer(settings, max_poll_records=CHUNK), expected, stop):
        batch.append(json.dumps({"index": {"_index": index, "_id": document["doc_id"]}}))
        batch.append(json.dumps(document, separators=(",", ":")))
        if len(batch) == 2 * CHUNK:
            bodies.append(("\n".join(batch) + "\n").encode())
            batch = []
    if batch:
        bodies.append(("\n".join(batch) + "\n").encode())
    print(json.dumps({"event": "serialised", "bodies": len(bodies), "at": time.time()}), flush=True)
    es = elastic.client(settings).options(request_timeout=120)

    def send(body: bytes) -> int:
        answer = es.bulk(body=body, filter_path="errors,items.*.status")
        if answer["errors"]:
            raise SystemExit("Elasticsearch refused documents: " + json.dumps(answer.body)[:500])
        return body.count(b"\n") // 2

    with ThreadPoolExecutor(max_workers=2) as pool:
        return sum(pool.map(send, bodies))


METHODS = {"one_by_one": one_by_one, "bulk": bulk, "parallel_bulk": parallel_bulk, "ceiling": ceiling,
           "follow": follow}


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("method", choices=sorted(METHODS), help="how to index the topic's messages")
    parser.add_argument("--index", required=True, help="the index to write (created from the bars template)")
    parser.add_argument("--expected", type=non_negative_int, required=True, help="messages in the topic")
    args = parser.parse_args()
    stop = threading.Event()  # SIGTERM: finish the current document and report (a time-boxed run)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.time()
    indexed = METHODS[args.method](Settings.load(), args.index, args.expected, stop)
    print(json.dumps({"event": "done", "method": args.method, "indexed": indexed,
                      "seconds": round(time.time() - started, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
