"""A benchmark started without its servers says so in one line and exits 2, like the jobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Closed ports: nothing answers, whatever else runs on this machine.
NO_STACK = {"ES_NODES": "127.0.0.1:1", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}


@pytest.mark.parametrize("module", ["latency", "market_minute", "compare", "stream_throughput", "batch_breakdown",
                                    "startup"])
def test_a_benchmark_without_its_servers_prints_one_line_and_exits_2(module, monkeypatch):
    for name, value in NO_STACK.items():
        monkeypatch.setenv(name, value)
    result = subprocess.run([sys.executable, "-m", f"bench.{module}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach "), result.stderr[-2000:]
    assert "start it" in lines[0]
