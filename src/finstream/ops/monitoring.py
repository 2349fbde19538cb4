"""Streaming progress, as one structured log line per micro-batch and a document in the
pipeline-metrics index (ES_INDEX_PIPELINE_METRICS), for Kibana and for alerting on lag."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from pyspark.sql.streaming import StreamingQueryListener

from finstream.core import schema as S
from finstream.serving.live_skill import LiveSkillWatch

log = logging.getLogger(__name__)


def _offsets_behind(source: dict[str, Any]) -> int | None:
    """Records between what the batch read up to and the log's end, over all partitions."""
    latest, end = _offsets(source.get("latestOffset")), _offsets(source.get("endOffset"))
    if latest is None or end is None:
        return None
    return sum(max(0, int(offset) - int(end.get(topic, {}).get(part, 0)))
               for topic, parts in latest.items() for part, offset in parts.items())


def _offsets(value: Any) -> dict | None:
    """{topic: {partition: offset}}: an object in the progress JSON, a string elsewhere."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


# Counts the stream job's queries observe per micro-batch, indexed with the progress.
OBSERVED_COUNTS = (*S.MESSAGE_COUNTS, *S.PREDICTION_STATUSES)


def progress_document(progress: dict[str, Any]) -> dict[str, Any]:
    """The numbers that matter from a StreamingQueryProgress: one pipeline-metrics document.

    Args:
        progress: the progress's JSON form, parsed.

    Returns:
        The fields of core.schema.PIPELINE_METRICS_MAPPING that the progress holds: the query's
        ids, throughput, batch duration (ms), Kafka lag (offsets, summed over partitions; None
        if unknown), state rows, and the counts the query observed.
    """
    behind = [_offsets_behind(source) for source in progress.get("sources", [])]
    behind = [b for b in behind if b is not None]
    return {
        "query": progress.get("name"),
        "query_id": progress.get("id"),
        "run_id": progress.get("runId"),
        "batch_id": progress.get("batchId"),
        "timestamp": progress.get("timestamp"),
        "input_rows": progress.get("numInputRows", 0),
        "input_rows_per_second": progress.get("inputRowsPerSecond") or 0.0,
        "processed_rows_per_second": progress.get("processedRowsPerSecond") or 0.0,
        "batch_duration_ms": progress.get("durationMs", {}).get("triggerExecution"),
        "offsets_behind_latest": sum(behind) if behind else None,
        **_state(progress.get("stateOperators", [])),
        **_observed(progress.get("observedMetrics") or {}),
    }


def _observed(metrics: dict[str, Any]) -> dict[str, Any]:
    """The counts the query observes (bars and dead letters; predictions by status)."""
    return {name: int(value or 0) for observation in metrics.values() for name, value in observation.items()
            if name in OBSERVED_COUNTS}


def _state(operators: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows held by the query's stateful operators, and input rows they ignored as late."""
    if not operators:
        return {}
    return {"state_rows": sum(op.get("numRowsTotal", 0) for op in operators),
            "rows_dropped_by_watermark": sum(op.get("numRowsDroppedByWatermark", 0) for op in operators)}


class ProgressListener(StreamingQueryListener):
    """Logs each streaming query's progress and indexes it as a pipeline-metrics document.

    Never lets a monitoring failure disturb the stream: errors are logged, not raised.

    Args:
        index_document: writes one document, given its id (run_id|batch_id) and its fields.
        watch: the live skill watch, fed each progress's `predictions` observations (None: none).
    """

    def __init__(self, index_document: Callable[[str, dict], None], watch: LiveSkillWatch | None = None) -> None:
        self._index_document = index_document
        self._watch = watch
        self._terminated = threading.Condition()
        self._terminations = 0

    def wait_for_termination_events(self, queries: int, timeout: float = 15.0) -> bool:
        """Waits until `queries` termination events have arrived, so that no progress is lost.

        Events reach Python asynchronously, in order: once a query's termination event has
        arrived, every progress event before it has been recorded. A job calls this before
        exiting, or its last batches' progress is lost with the Python gateway.

        Args:
            queries: the termination events to wait for (the job's queries).
            timeout: the longest wait, seconds.

        Returns:
            True if they all arrived, False if the wait timed out.
        """
        with self._terminated:
            return self._terminated.wait_for(lambda: self._terminations >= queries, timeout)

    def onQueryStarted(self, event) -> None:  # noqa: N802 (Spark's name)
        """Logs the query's start as one JSON line."""
        log.info(json.dumps({"event": "started", "query": event.name, "query_id": str(event.id)}))

    def onQueryProgress(self, event) -> None:  # noqa: N802
        """Logs a micro-batch's progress as one JSON line and indexes it, and one document per
        version the live skill watch followed in it."""
        try:
            progress = json.loads(event.progress.json)
            doc = progress_document(progress)
            observed = (progress.get("observedMetrics") or {}).get("predictions")
            live = self._watch.update(observed, doc["batch_id"]) if self._watch and observed else []
            log.info(json.dumps({"event": "progress", **doc}))
            log.debug("durations %s %s", doc["query"], progress.get("durationMs"))
            self._index_document(f"{doc['run_id']}|{doc['batch_id']}", doc)
            for entry in live:  # one document per watched version, beside the batch's
                self._index_document(f"{doc['run_id']}|{doc['batch_id']}|{entry['live_version']}",
                                     {key: doc[key] for key in ("query", "query_id", "run_id", "batch_id", "timestamp")}
                                     | entry)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not record streaming progress: %s", exc)

    def onQueryTerminated(self, event) -> None:  # noqa: N802
        """Logs the query's end (and its error) and counts it for wait_for_termination_events."""
        log.info(json.dumps({"event": "terminated", "query_id": str(event.id), "error": event.exception}))
        with self._terminated:
            self._terminations += 1
            self._terminated.notify_all()
