"""What a benchmark writes: `<out>.json` (its figures, with when and on what machine they were
measured) and `<out>.md` (the table the README quotes), under bench/results/ by default."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from datetime import datetime, timezone
from pathlib import Path


def run_info(benchmark: str) -> dict:
    """When, on what machine and on which code (the checkout's commit, `+` if it has changes)."""
    return {"benchmark": benchmark, "date": datetime.now(timezone.utc).isoformat(), "commit": commit(),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}


def commit(root: Path | None = None) -> str:
    """The checkout's commit, with `+` when tracked files other than bench/results/ differ from it
    (a run's own results, or an earlier run's in the same sitting, do not make the code differ);
    "" outside git."""
    root = Path(__file__).resolve().parents[1] if root is None else root
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)bench/results"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+" if dirty else "")


def summary(values: list[float], digits: int = 2) -> dict[str, float]:
    """Runs of one figure as {"median", "min", "max"}, each rounded to `digits` decimals."""
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def local_spark(app: str, master: str = "local[*]", **conf: str):
    """A Spark session in this process, for a benchmark that runs Spark's code outside the
    stream job: no UI, and only Spark's errors logged. `conf`: further Spark properties."""
    from pyspark.sql import SparkSession  # only the benchmarks that run Spark pay its import

    builder = SparkSession.builder.master(master).appName(app).config("spark.ui.enabled", "false")
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spread(values: list[float], digits: int = 2) -> str:
    """Runs of one figure as `median (min-max)`, or the one value, with `digits` decimals."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def result_paths(out: str | Path) -> tuple[Path, Path]:
    """`out`.json and `out`.md: the suffixes appended, not swapped for the name's last dotted part
    (`latency-0.5s` is not `latency-0`); a .json or .md given anyway is dropped first."""
    text = str(out)
    for suffix in (".json", ".md"):
        text = text.removesuffix(suffix)
    return Path(f"{text}.json"), Path(f"{text}.md")


def write(out: str | Path, result: dict, markdown: str | None = None) -> None:
    """Writes the JSON (and the table, printed too)."""
    json_path, markdown_path = result_paths(out)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    if markdown is not None:
        markdown_path.write_text(markdown)
        print(markdown, end="")
