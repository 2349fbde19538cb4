"""The predictor's state layout in its checkpoint: an older per-series state, or another
number of buckets, is refused with one line before Spark starts (no Spark here)."""

from __future__ import annotations

import dataclasses

import pytest

from finstream.core.config import Settings
from finstream.core.errors import UserError
from finstream.serving.predictor import state_partitions
from finstream.stores import checkpoints

KEY = "state_bucket"
HASH = "xxhash64(ticker string, timespan string, multiplier int)"
BUCKET_KEY = '{"name":"state_bucket","type":"long","nullable":true,"metadata":{}}'


@pytest.fixture
def settings(tmp_path):
    return dataclasses.replace(Settings.load(), checkpoint_dir=str(tmp_path), stream_state_buckets=256)


def spark_schema(settings, key_fields: str) -> None:
    """What Spark 3.4 writes at a stateful operator's first batch: "v2", then the key and value
    schemas as length-prefixed JSON."""
    folder = settings.query_checkpoint("predict-bars") / "state" / "0" / "0" / "_metadata"
    folder.mkdir(parents=True)
    key = '{"type":"struct","fields":[' + key_fields + "]}"
    (folder / "schema").write_bytes(b"\x00\x02v2\x00\x00" + len(key).to_bytes(2, "big") + key.encode())


def require(settings, buckets=256, bucket_hash=HASH):
    checkpoints.require_state_layout(dataclasses.replace(settings, stream_state_buckets=buckets), "predict-bars",
                                     KEY, bucket_hash)


def recorded(settings) -> str:
    return (settings.query_checkpoint("predict-bars") / checkpoints.STATE_LAYOUT_FILE).read_text()


def test_a_first_start_records_the_layout_and_a_restart_accepts_it(settings):
    require(settings, buckets=64)
    require(settings)  # no batch ran yet (no state): the layout is recorded again
    assert recorded(settings) == '{"state_buckets": 256, "bucket_hash": "' + HASH + '"}\n'
    spark_schema(settings, BUCKET_KEY)
    require(settings)
    assert recorded(settings) == '{"state_buckets": 256, "bucket_hash": "' + HASH + '"}\n'


def test_per_series_state_of_an_older_version_is_refused(settings):
    spark_schema(settings, '{"name":"ticker","type":"string","nullable":true,"metadata":{}},'
                           '{"name":"timespan","type":"string","nullable":true,"metadata":{}}')
    with pytest.raises(UserError, match=r"cannot read \(one state per series.*move that folder aside"):
        require(settings)


def test_other_buckets_are_refused_once_state_exists(settings):
    require(settings)
    spark_schema(settings, BUCKET_KEY)
    with pytest.raises(UserError, match="STREAM_STATE_BUCKETS is 64, but .* in 256 buckets: set it back to 256"):
        require(settings, buckets=64)
    with pytest.raises(UserError, match="hashed its series to buckets by xxhash64.*multiplier int.*multiplier bigint"):
        require(settings, bucket_hash=HASH.replace("int)", "bigint)"))
    with pytest.raises(UserError, match="set it to 1 or more"):
        require(settings, buckets=0)


def test_state_without_its_record_or_an_unwritable_folder_is_one_line(settings, tmp_path):
    spark_schema(settings, BUCKET_KEY)
    with pytest.raises(UserError, match="holds state but no readable finstream-state.json"):
        require(settings)
    for not_a_record in ("null", "[1, 2]", "256"):
        (settings.query_checkpoint("predict-bars") / checkpoints.STATE_LAYOUT_FILE).write_text(not_a_record)
        with pytest.raises(UserError, match="holds state but no readable finstream-state.json"):
            require(settings)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write the checkpoint folder .*: set CHECKPOINT_DIR"):
        require(dataclasses.replace(settings, checkpoint_dir=str(blocker / "checkpoints")))


@pytest.mark.parametrize(("configured", "master", "expected"), [
    (3, "local[*]", 3),                # set: taken as it is
    (0, "local[*]", 8),                # the machine's cores
    (0, "local[2]", 2),
    (0, "local[4, 3]", 4),             # with task retries
    (0, "local", 1),
    (0, "spark://host:7077", 16),      # a cluster: spark.sql.shuffle.partitions
    (0, "yarn", 16),
])
def test_the_state_step_gets_a_task_per_local_core_unless_set(configured, master, expected):
    assert state_partitions(configured, master, 16, 8) == expected
