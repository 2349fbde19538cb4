"""index-bars writes a small micro-batch in fewer tasks than its Kafka partitions: the batch's
records counted from the query's offset log (no Spark)."""

from __future__ import annotations

import json

import pytest

from finstream.ingest.indexing import write_tasks
from finstream.ingest.source import read_splits, stream_options
from finstream.stores.checkpoints import batch_records

METADATA = '{"batchWatermarkMs":0,"batchTimestampMs":1764930000000,"conf":{}}'


def offset_log(checkpoint, batch_id: int, offsets: dict[str, dict[str, int]]) -> None:
    """An offset log entry as Spark writes it: version, metadata, one line per source."""
    folder = checkpoint / "offsets"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(batch_id)).write_text(f"v1\n{METADATA}\n{json.dumps(offsets)}")


def test_a_batchs_records_are_its_end_offsets_less_the_batch_befores(tmp_path):
    offset_log(tmp_path, 6, {"finance-data": {"0": 100, "1": 250, "2": 40}})
    offset_log(tmp_path, 7, {"finance-data": {"2": 43, "0": 104, "1": 250, "3": 5}})  # partition 3 is new
    assert batch_records(tmp_path, "finance-data", 7) == 4 + 0 + 3 + 5
    assert batch_records(tmp_path, "finance-data", 6) is None  # the query's first batch here: not known
    assert batch_records(tmp_path, "finance-data", 8) is None
    assert batch_records(tmp_path, "other-topic", 7) == 0
    for torn in ("v1\n", '{"finance-data": {"0": null}}', '["finance-data"]', '{"finance-data": 3}'):
        (tmp_path / "offsets" / "6").write_text(torn)  # torn or foreign: not counted, never an error
        assert batch_records(tmp_path, "finance-data", 7) is None


@pytest.mark.parametrize(("records", "per_task", "at_least", "tasks"), [
    (12, 5000, 0, 1), (5000, 5000, 0, 1), (5001, 5000, 0, 2), (200_000, 5000, 0, 40), (0, 5000, 0, 1),
    (12, 5000, 24, 24),  # STREAM_MIN_PARTITIONS is kept
    (None, 5000, 0, None), (12, 0, 0, None),
])
def test_write_tasks(records, per_task, at_least, tasks):
    assert write_tasks(records, per_task, at_least) == tasks


@pytest.mark.parametrize(("configured", "master", "catching_up", "splits"), [
    (3, "local[*]", False, 3), (3, "local[*]", True, 3),  # set: taken as it is
    (0, "local[*]", True, 8), (0, "local[2]", True, 2), (0, "local", True, 1),
    (0, "local[*]", False, 0),  # running on: a small batch stays in one read task
    (0, "spark://host:7077", True, 0), (0, "k8s://https://api:6443", True, 0),  # a cluster: a task per partition
])
def test_a_backlog_is_read_in_a_task_per_local_core_unless_set(configured, master, catching_up, splits):
    """--available-now on a local master splits a topic of one partition across the cores;
    a running job keeps a small batch in one task."""
    from finstream.core.config import Settings

    assert read_splits(configured, master, 8, catching_up=catching_up) == splits
    settings = Settings.load()
    assert stream_options(settings, splits).get("minPartitions") == (str(splits) if splits else None)


def test_a_batch_that_cannot_be_counted_is_written_as_spark_partitions_it_and_said_once(tmp_path, caplog):
    from finstream.core.config import Settings
    from finstream.ingest.indexing import BatchWriter

    writer = BatchWriter(Settings.load(environ={"KAFKA_TOPIC": "finance-data"}), {}, tmp_path)
    offset_log(tmp_path, 0, {"finance-data": {"0": 10}})
    offset_log(tmp_path, 1, {"finance-data": {"0": 22}})
    assert writer._tasks(1) == 1
    with caplog.at_level("WARNING"):
        assert writer._tasks(0) is None  # the query's first batch: not counted, not a problem
        assert writer._tasks(5) is None and writer._tasks(6) is None
    assert [r.getMessage()[:47] for r in caplog.records] == ["index-bars: batch 5's records cannot be counted"]
