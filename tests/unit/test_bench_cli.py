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


@pytest.mark.parametrize(("module", "flags", "reason"), [
    ("compare", ["--bars", "0"], "0 is not a whole number above 0"),
    ("compare", ["--tickers", "-3"], "-3 is not a whole number above 0"),
    ("compare", ["--one-by-one-seconds", "nan"], "nan is not a number above 0"),
    ("compare", ["--warm-up", "-10"], "-10 is not a whole number, 0 or more"),
    ("stream_throughput", ["--tickers", "0"], "0 is not a whole number above 0"),
    ("soak", ["--report-minutes", "0"], "0 is not a number above 0"),
    ("live_latency", ["--poll-seconds", "60,-10"], "-10 is not a number above 0"),
    ("validation_cost", ["--repeats", "0"], "0 is not a whole number above 0"),
    ("startup", ["--runs", "abc"], "abc is not a whole number above 0"),
    ("latency", ["--seconds", "0"], "0 is not a number above 0"),
    ("compare", ["--refresh", "fast"], "'fast' is not an Elasticsearch time value"),
    ("compare", ["--refresh", "1.5s"], "'1.5s' is not an Elasticsearch time value"),
    ("soak", ["--minutes", "5", "--report-minutes", "10"], "--report-minutes 10 is longer than --minutes 5"),
    ("latency", ["--out", ""], "'' is not a file path"),
    ("market_minute", ["--out", "bench"], "bench is a folder: give a file path in it"),
    ("soak", ["--out", "README.md/soak"], "cannot write under"),
    ("latency", ["--out", "/proc/latency"], "cannot write under /proc (not writable)"),  # even as root
    ("latency", ["--trigger", "soon"], "'soon' is not a trigger interval"),
    ("soak", ["--trigger", "1.5 minutes"], "'1.5 minutes' is not a trigger interval"),
    ("live_latency", ["--server-lag", "nan"], "nan is not a number, 0 or more"),
    ("compare", ["--spark-conf", "noequals"], "'noequals' is not spark.KEY=VALUE"),
    ("compare", ["--spark-conf", "sql.shuffle.partitions=2"], "'sql.shuffle.partitions=2' is not spark.KEY=VALUE"),
    ("methods", ["bulk", "--index", "x", "--expected", "-1"], "-1 is not a whole number, 0 or more"),
])
def test_a_bad_number_is_refused_with_its_reason_before_any_work(module, flags, reason, monkeypatch):
    for name, value in NO_STACK.items():
        monkeypatch.setenv(name, value)
    result = subprocess.run([sys.executable, "-m", f"bench.{module}", *flags], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error: ") and reason in lines[0], lines[0]
    assert lines[0].endswith(f"(see python -m bench.{module} --help)"), lines[0]


@pytest.mark.parametrize(("text", "expected"), [("1s", "1s"), (" 30S ", "30S"), ("500ms", "500ms"), ("-1", "-1"),
                                                ("0", "0"), ("2 m", "2 m")])
def test_refresh_intervals_elasticsearch_accepts(text, expected):
    from bench.flags import refresh_interval

    assert refresh_interval(text) == expected


@pytest.mark.parametrize("text", ["1 second", "5 seconds", "0.5 seconds", ".5 seconds", "500 milliseconds", "1 minute",
                                  "0 seconds", "1 Second", "1 hour"])
def test_trigger_intervals_a_benchmark_passes_on(text):
    from bench.flags import trigger_interval

    assert trigger_interval(f" {text} ") == text


@pytest.mark.parametrize(("out", "expected"), [("bench/results/latency-0.5s", "bench/results/latency-0.5s"),
                                               ("r/latency.2026-12-05", "r/latency.2026-12-05"),
                                               ("r/x.json", "r/x"), ("r/x.md", "r/x")])
def test_results_keep_every_dotted_part_of_their_name(out, expected):
    from bench.report import result_paths

    assert result_paths(out) == (Path(f"{expected}.json"), Path(f"{expected}.md"))
