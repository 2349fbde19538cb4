"""Prints what Elasticsearch holds after the demo, against the distinct sample bars."""

from __future__ import annotations

import sys

from finstream.core.config import Settings
from finstream.stores import elastic
from producer import samples


def main() -> int:
    settings = Settings.load()
    es = elastic.client(settings)
    expected = {name: len({b.doc_id for b in samples.load_bars(name)}) for name in samples.DATASETS}
    total_expected = sum(expected.values())
    bars = elastic.count(es, settings.es_index_bars)
    dead = elastic.count(es, settings.es_index_dead_letters)
    by_ticker = es.search(index=settings.es_index_bars, size=0,
                          aggs={"t": {"terms": {"field": "ticker", "size": 50}}})["aggregations"]["t"]["buckets"]
    print(f"bars in {settings.es_index_bars}: {bars}  (distinct sample bars: {total_expected})")
    for bucket in by_ticker:
        print(f"  {bucket['key']:<10} {bucket['doc_count']}")
    print(f"dead letters in {settings.es_index_dead_letters}: {dead}")
    if dead:
        reasons = es.search(index=settings.es_index_dead_letters, size=0,
                            aggs={"r": {"terms": {"field": "reasons", "size": 20}}})["aggregations"]["r"]["buckets"]
        for bucket in reasons:
            print(f"  {bucket['doc_count']:>6}  {bucket['key']}")
    if bars < total_expected:
        print("fewer bars than expected: is the stream job finished?", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
