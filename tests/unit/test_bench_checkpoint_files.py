"""bench.checkpoint_files: each manager writes its files, and conf/ names the one the stream job uses."""

from __future__ import annotations

from bench import checkpoint_files as C


def test_each_manager_is_measured_and_the_setting_put_back(spark):
    managers = C.measure(spark, files=3, repeats=1)
    assert set(managers) == set(C.MANAGERS)
    assert all(0 < m["min"] <= m["median"] <= m["max"] for m in managers.values())
    assert spark._jsc.hadoopConfiguration().get(C.MANAGER_SETTING) is None
    table = C.table({"files": 3, "repeats": 1, "date": "2026-12-05", "managers": managers})
    assert all(f"| {name} |" in table for name in C.MANAGERS)


def test_the_stream_job_writes_its_checkpoints_through_the_file_system_api():
    assert C.configured_manager() == C.MANAGERS["FileSystem (conf/spark-defaults.conf)"]
