"""A small run of the benchmark harness (make bench runs it with a million bars): every
method indexes the generated bars into its own index, the figures are measured, and the
run leaves no topic or index behind (nor the warm-up's index)."""

from __future__ import annotations

import json
import subprocess
import sys

from finstream.core.config import Settings
from finstream.stores import elastic
from tests.integration.conftest import ROOT

BARS = 3_000


def test_compare_harness_measures_every_method_and_cleans_up(stack, tmp_path):
    out = tmp_path / "compare"
    run = subprocess.run([sys.executable, "-m", "bench.compare", "--bars", str(BARS), "--tickers", "30",
                          "--one-by-one-seconds", "3", "--warm-up", "3000", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    rows = {r["method"]: r for r in result["methods"]}
    assert result["warm_up_documents"] == 3000
    assert list(rows) == ["stream_index", "one_by_one", "bulk", "parallel_bulk", "ceiling"]
    for method, row in rows.items():
        expected = range(1, BARS) if method == "one_by_one" else range(BARS, BARS + 1)  # time-boxed
        assert row["documents"] in expected, row
        assert row["records_per_s"] > 0 and row["cpu_s"] > 0 and row["peak_rss_mb"] > 0, row
    assert rows["stream_index"]["peak_rss_mb"] > rows["bulk"]["peak_rss_mb"]  # a JVM against a Python process
    table = out.with_suffix(".md").read_text()
    assert all(f"| {method} |" in table for method in rows)

    settings = Settings.load()
    leftovers = elastic.client(settings).indices.get(index="bench-*", allow_no_indices=True)
    assert not leftovers
