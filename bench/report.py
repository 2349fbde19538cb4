"""What a benchmark writes: `<out>.json` (its figures, with when and on what machine they were
measured) and `<out>.md` (the table the README quotes), under bench/results/ by default.
(bench/train_scaling.py runs through spark-submit as a file, outside the package, and writes
its own.)"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path


def run_info(benchmark: str) -> dict:
    return {"benchmark": benchmark, "date": datetime.now(timezone.utc).isoformat(),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}


def write(out: str | Path, result: dict, markdown: str | None = None) -> None:
    """Writes the JSON (and the table, printed too)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    if markdown is not None:
        out.with_suffix(".md").write_text(markdown)
        print(markdown, end="")
