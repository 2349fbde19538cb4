from __future__ import annotations

import json

from finstream.ops.monitoring import progress_document

PROGRESS = {
    "id": "q1", "runId": "r1", "name": "index-bars", "timestamp": "2026-11-25T07:00:00.000Z", "batchId": 4,
    "numInputRows": 2500, "inputRowsPerSecond": 1200.5, "processedRowsPerSecond": 1800.0,
    "durationMs": {"triggerExecution": 1389, "addBatch": 1200},
    "sources": [{"description": "KafkaV2[Subscribe[finance-data]]",
                 "endOffset": json.dumps({"finance-data": {"0": 1000, "1": 1500}}),
                 "latestOffset": json.dumps({"finance-data": {"0": 1600, "1": 1500}})}],
}


def test_progress_document_keeps_rates_duration_and_lag():
    doc = progress_document(PROGRESS)
    assert doc == {"query": "index-bars", "query_id": "q1", "run_id": "r1", "batch_id": 4,
                   "timestamp": "2026-11-25T07:00:00.000Z", "input_rows": 2500, "input_rows_per_second": 1200.5,
                   "processed_rows_per_second": 1800.0, "batch_duration_ms": 1389, "offsets_behind_latest": 600}


def test_offsets_as_objects_are_read_too():
    source = {"endOffset": {"t": {"0": 5}}, "latestOffset": {"t": {"0": 9}}}
    assert progress_document({**PROGRESS, "sources": [source]})["offsets_behind_latest"] == 4


def test_progress_without_offsets_has_no_lag():
    doc = progress_document({**PROGRESS, "sources": [{"endOffset": None, "latestOffset": None}]})
    assert doc["offsets_behind_latest"] is None
