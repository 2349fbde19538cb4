"""bench.batch_breakdown reads a Spark event log: the trigger's parts of each small batch, and
its stages' times, per query; the backlog's batch and empty batches are left out."""

from __future__ import annotations

import argparse
import json

import pytest

from bench.batch_breakdown import breakdown, parse_variant, table

QUERY = "5b1c"


def progress(batch_id: int, rows: int, add_batch: int) -> dict:
    return {"Event": "org.apache.spark.sql.streaming.StreamingQueryListener$QueryProgressEvent",
            "progress": {"id": QUERY, "name": "predict-bars", "batchId": batch_id,
                         "durationMs": {"triggerExecution": add_batch + 300, "addBatch": add_batch, "walCommit": 100,
                                        "commitOffsets": 120, "queryPlanning": 80},
                         "sources": [{"numInputRows": rows}]}}


def job(job_id: int, batch_id: int, stages: list[int]) -> dict:
    return {"Event": "SparkListenerJobStart", "Job ID": job_id, "Stage IDs": stages,
            "Properties": {"sql.streaming.queryId": QUERY, "streaming.sql.batchId": str(batch_id)}}


def stage(stage_id: int, tasks: int, wall: int, run: int, update: int | None = None) -> dict:
    accumulables = [{"Name": "internal.metrics.executorRunTime", "Value": run},
                    {"Name": "internal.metrics.executorCpuTime", "Value": run * 100_000},
                    {"Name": "some text metric", "Value": "n/a"}]
    if update is not None:
        accumulables.append({"Name": "time to update", "Value": str(update)})
    return {"Event": "SparkListenerStageCompleted",
            "Stage Info": {"Stage ID": stage_id, "Number of Tasks": tasks, "Submission Time": 1000,
                           "Completion Time": 1000 + wall, "Accumulables": accumulables}}


def test_the_small_batches_are_summed_up_per_query_and_stage(tmp_path):
    events = [
        {"Event": "org.apache.spark.sql.streaming.StreamingQueryListener$QueryStartedEvent", "id": QUERY,
         "name": "predict-bars"},
        progress(0, 4000, 9000), job(0, 0, [0, 1]), stage(0, 3, 5000, 6000), stage(1, 4, 4000, 8000, 7000),
        progress(1, 0, 50),  # empty: left out of the medians, counted apart
        *[event for n in (2, 3, 4) for event in (
            progress(n, 30, 1000 * n), job(n, n, [10 * n, 10 * n + 1]),
            stage(10 * n, 3, 200, 250), stage(10 * n + 1, 4, 1500 + n, 2800, 2000 + n))],
    ]
    log = tmp_path / "events"
    log.write_text("\n".join(json.dumps(e) for e in events) + "\n" + json.dumps(progress(5, 30, 99))[:40])

    result = breakdown(log, max_rows=100)["queries"]["predict-bars"]

    assert result["batches"] == 3 and result["median_rows"] == 30  # the cut-off last line is left out
    assert result["trigger_ms"]["addBatch"] == 3000 and result["trigger_ms"]["walCommit"] == 100
    assert result["trigger_ms"]["latestOffset"] == 0  # a part Spark did not report counts as 0
    read, state = result["stages"]
    assert (read["tasks"], read["wall_ms"], read["run_ms"], read["cpu_ms"]) == (3, 200, 250, 25)
    assert (state["tasks"], state["wall_ms"], state["time to update"]) == (4, 1503, 2003)
    assert "time to update" not in read
    assert (result["empty_batches"], result["empty_trigger_ms"]) == (1, 350)
    assert "| predict-bars | 3 (30) |" in table([{"variant": "default", "queries": {"predict-bars": result}}])


def test_variants_are_the_defaults_or_environment_settings():
    assert parse_variant("default") == ("default", {})
    assert parse_variant("STREAM_STATE_PARTITIONS=2,KAFKA_FETCH_MAX_WAIT_MS=5") == (
        "STREAM_STATE_PARTITIONS=2,KAFKA_FETCH_MAX_WAIT_MS=5",
        {"STREAM_STATE_PARTITIONS": "2", "KAFKA_FETCH_MAX_WAIT_MS": "5"})
    assert parse_variant("spark.sql.streaming.noDataMicroBatches.enabled=true,STREAM_STATE_PARTITIONS=4")[1] == {
        "spark.sql.streaming.noDataMicroBatches.enabled": "true", "STREAM_STATE_PARTITIONS": "4"}


@pytest.mark.parametrize("text, said", [
    ("FOO", "is not KEY=VALUE"), ("=1", "is not KEY=VALUE"), ("STREAM_STATE_PARTITIONS=2, KAFKA_TOPIC=x", "is not KEY"),
    ("KAFKA_TOPIC=finance-data", "set by the benchmark itself"), ("ES_INDEX_BARS=finance-bars", "set by the benchmark"),
    ("STREAM_TRIGGER_INTERVAL=0 seconds", "set by the benchmark"),
    ("STREAM_STATE_PARTITIONS=abc", "STREAM_STATE_PARTITIONS"),
    ("spark.eventLog.enabled=false", "set by the benchmark"), ("spark.sql.shuffle.partitions=", "is not KEY=VALUE"),
])
def test_a_variant_that_could_touch_real_data_or_means_nothing_is_refused(text, said):
    with pytest.raises(argparse.ArgumentTypeError, match=said):
        parse_variant(text)
