"""The predictor's state layout in its checkpoint: an older per-series state, or another
number of buckets, is refused with one line before Spark starts (no Spark here)."""

from __future__ import annotations

import dataclasses

import pytest

from finstream.core.config import Settings
from finstream.core.errors import UserError
from finstream.stores import checkpoints

KEY = "state_bucket"


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


def test_a_first_start_records_the_bucket_count_and_a_restart_accepts_it(settings):
    checkpoints.require_state_layout(settings, "predict-bars", KEY)
    spark_schema(settings, '{"name":"state_bucket","type":"long","nullable":true,"metadata":{}}')
    checkpoints.require_state_layout(settings, "predict-bars", KEY)
    recorded = settings.query_checkpoint("predict-bars") / checkpoints.STATE_LAYOUT_FILE
    assert recorded.read_text() == '{"state_buckets": 256}\n'


def test_per_series_state_of_an_older_version_is_refused(settings):
    spark_schema(settings, '{"name":"ticker","type":"string","nullable":true,"metadata":{}},'
                           '{"name":"timespan","type":"string","nullable":true,"metadata":{}}')
    with pytest.raises(UserError, match="keeps one state per series.*Move that folder aside"):
        checkpoints.require_state_layout(settings, "predict-bars", KEY)


def test_another_bucket_count_is_refused(settings):
    checkpoints.require_state_layout(settings, "predict-bars", KEY)
    with pytest.raises(UserError, match="STREAM_STATE_BUCKETS is 64, but .* in 256 buckets: set it back to 256"):
        checkpoints.require_state_layout(dataclasses.replace(settings, stream_state_buckets=64), "predict-bars", KEY)
    with pytest.raises(UserError, match="set it to 1 or more"):
        checkpoints.require_state_layout(dataclasses.replace(settings, stream_state_buckets=0), "predict-bars", KEY)
