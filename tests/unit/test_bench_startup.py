"""bench.startup's report: the median and range of each job's first starts and restarts."""

from __future__ import annotations

from bench import startup


def test_the_table_gives_each_jobs_median_and_range():
    result = {"bars": 2000, "runs": 3, "commit": "abc1234", "date": "2026-12-04T18:30:00+00:00",
              "seconds": {"jobs/stream_index.py": {"first": [14.2, 14.7, 15.0], "restart": [8.8, 9.4, 8.7, 9.0]},
                          "/tmp/old.py": {"first": [15.1], "restart": [10.3, 10.2]}}}
    table = startup.markdown(result)
    assert "| `jobs/stream_index.py` | 14.7 (14.2-15.0) | 8.9 (8.7-9.4) | 3 + 4 |" in table
    assert "| `/tmp/old.py` | 15.1 | 10.2 (10.2-10.3) | 1 + 2 |" in table
    assert "2000 bars" in table and "3 rounds, commit abc1234" in table
