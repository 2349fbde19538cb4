"""index-bars writes a small micro-batch in fewer tasks than its Kafka partitions: the batch's
records counted from the query's offset log (no Spark)."""

from __future__ import annotations

import json

import pytest

from finstream.ingest.indexing import write_tasks
from finstream.ingest.source import catch_up_splits, read_splits, stream_options
from finstream.stores import checkpoints
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


@pytest.mark.parametrize(("behind", "environ", "master", "splits"), [
    ({0: 180_000}, {}, "local[*]", 8),  # a restart after downtime: the backlog in a task per core
    ({0: 50_000}, {}, "local[2]", 2),  # STREAM_CATCH_UP_RECORDS itself
    ({0: 49_999}, {}, "local[*]", 0),  # less: read as the running query reads it
    ({0: 180_000}, {"STREAM_CATCH_UP_RECORDS": "0"}, "local[*]", 0),  # never
    ({0: 12}, {"STREAM_CATCH_UP_RECORDS": "10", "STREAM_WRITE_RECORDS_PER_TASK": "1"}, "local[*]", 8),
    ({0: 12}, {"STREAM_CATCH_UP_RECORDS": "10"}, "local[*]", 0),  # 12 records are written in one task
    ({0: 180_000}, {}, "local", 0),  # one thread: nothing to split across
    ({p: 30_000 for p in range(8)}, {}, "local[*]", 0),  # already a task per core
    ({0: 90_000, 1: 90_000, 2: 0}, {}, "local[*]", 8),  # two partitions with records, eight cores
    ({0: 180_000}, {"STREAM_MIN_PARTITIONS": "4"}, "local[*]", 0),  # set: every batch is split already
    ({0: 180_000}, {}, "spark://host:7077", 0),  # a cluster reads a task per partition
    # A per-trigger cap whose batches index-bars writes in fewer tasks than the split: merged again.
    ({0: 180_000}, {"STREAM_MAX_OFFSETS_PER_TRIGGER": "1000"}, "local[2]", 0),
    ({0: 180_000}, {"STREAM_MAX_OFFSETS_PER_TRIGGER": "10000"}, "local[2]", 2),
    ({0: 180_000}, {"STREAM_MAX_OFFSETS_PER_TRIGGER": "1000", "STREAM_WRITE_RECORDS_PER_TASK": "500"}, "local[2]", 2),
    ({0: 180_000}, {"STREAM_MAX_OFFSETS_PER_TRIGGER": "1000", "STREAM_WRITE_RECORDS_PER_TASK": "0"}, "local[2]", 2),
    # Merged into fewer write tasks than the split, but still more than one: worth it.
    ({0: 180_000}, {"STREAM_MAX_OFFSETS_PER_TRIGGER": "1000", "STREAM_WRITE_RECORDS_PER_TASK": "500"}, "local[4]", 4),
    ({0: 50_000}, {}, "local[*]", 8),  # 10 write tasks of 5 000 records: the split kept
    ({0: 50_000}, {"STREAM_WRITE_RECORDS_PER_TASK": "50000"}, "local[*]", 0),  # written in one task anyway
])
def test_a_running_job_far_behind_catches_up_in_a_task_per_core(behind, environ, master, splits):
    """A running job that restarts far behind reads its backlog split, as --available-now
    does; a small backlog, a cluster or a set STREAM_MIN_PARTITIONS keeps the running read."""
    from finstream.core.config import Settings

    assert catch_up_splits(behind, Settings.load(environ=environ), master, 8) == splits


def test_what_a_query_has_still_to_read_counts_from_its_last_commit(tmp_path, monkeypatch):
    from finstream.core.config import Settings

    settings = Settings.load(environ={"KAFKA_TOPIC": "bars", "CHECKPOINT_DIR": str(tmp_path)})
    monkeypatch.setattr(checkpoints.topics, "end_offsets", lambda _settings: {0: 1_000, 1: 700, 2: 500})
    monkeypatch.setattr(checkpoints.topics, "beginning_offsets", lambda _settings: {0: 100, 1: 0, 2: 400})
    # A new checkpoint: from the first offset the log holds.
    assert checkpoints.behind(settings, "index-bars") == {0: 900, 1: 700, 2: 100}
    folder = settings.query_checkpoint("index-bars")
    for batch, ends in ((0, {"0": 400, "1": 300}), (1, {"0": 600, "1": 650})):
        (folder / "offsets").mkdir(parents=True, exist_ok=True)
        (folder / "offsets" / str(batch)).write_text("v1\n{}\n" + json.dumps({"bars": ends}))
    (folder / "commits").mkdir()
    (folder / "commits" / "0").write_text("v1\n{}")
    # Batch 1 planned, not committed; partition 2 added since, from its first offset.
    assert checkpoints.behind(settings, "index-bars") == {0: 600, 1: 400, 2: 100}
