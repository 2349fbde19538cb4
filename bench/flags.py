"""argparse types the benchmarks share: each refuses a bad value in one line before any work
starts (a benchmark's mistake found after its minutes of publishing costs those minutes)."""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from finstream.core.errors import Refused

RESULTS = Path(__file__).resolve().parent / "results"


def results_path(text: str) -> str:
    """An argparse type: where a benchmark writes its results, without .json/.md: a file path
    whose folder exists or can be made; Refused otherwise (empty, a folder, not writable)."""
    path = Path(text.strip())
    if not text.strip() or path.name in ("", ".", ".."):
        raise Refused(f"{text!r} is not a file path (e.g. bench/results/latency-2, without .json/.md)")
    if path.is_dir():
        raise Refused(f"{text} is a folder: give a file path in it, without .json/.md")
    folder = path.parent.resolve()
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not _writable(folder):
        raise Refused(f"cannot write under {folder} ({'a file' if folder.is_file() else 'not writable'}): "
                      "give a path in a folder you can write")
    return text.strip()


def add_out(parser: argparse.ArgumentParser, name: str) -> None:
    """A benchmark's --out: its results path (results_path), by default bench/results/`name`."""
    parser.add_argument("--out", type=results_path, default=str(RESULTS / name),
                        help="results path, without .json/.md")


def _writable(folder: Path) -> bool:
    """A file can be made in `folder`: tried, not guessed from the mode bits (os.access says yes
    to root everywhere, /proc included)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def trigger_interval(text: str) -> str:
    """An argparse type: the stream job's trigger interval in a form Spark reads, whole
    milliseconds, minutes or hours or (fractional) seconds, e.g. "1 second", "500 milliseconds",
    "0.5 seconds"; Refused otherwise. (The stream job checks its own with Spark's parser; a
    benchmark checks this simpler form before it publishes, without a JVM.)"""
    form = r"[0-9]{1,9} (milliseconds?|minutes?|hours?)|([0-9]{1,9}(\.[0-9]+)?|\.[0-9]+) seconds?"
    if not re.fullmatch(form, text.strip(), flags=re.IGNORECASE):
        raise Refused(f"{text!r} is not a trigger interval (e.g. 1 second, 500 milliseconds, 0.5 seconds, 1 minute)")
    return text.strip()


def spark_conf(text: str) -> str:
    """An argparse type: one Spark property, spark.KEY=VALUE; Refused otherwise (Spark ignores a
    key without the spark. prefix, so the run would measure the defaults under another name)."""
    key, equals, _ = text.partition("=")
    if not equals or not key.strip().startswith("spark.") or " " in key.strip():
        raise Refused(f"{text!r} is not spark.KEY=VALUE (e.g. spark.sql.shuffle.partitions=2)")
    return text


def refresh_interval(text: str) -> str:
    """An argparse type: an Elasticsearch time value for refresh_interval ("30s", "500ms", "-1"
    for none), checked before anything is published; Refused otherwise (Elasticsearch would
    refuse it only when the first method's index is set up)."""
    if not re.fullmatch(r"-1|0|[0-9]+ *(nanos|micros|ms|s|m|h|d)", text.strip().lower()):
        raise Refused(f"{text!r} is not an Elasticsearch time value (e.g. 1s, 30s, 500ms, or -1 for no refresh)")
    return text.strip()
