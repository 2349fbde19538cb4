"""Versioned models: MODEL_DIR/<question>/<version>/{model/, metadata.json}, and a LATEST
file naming the newest version (replaced atomically, so a reader never sees half of it)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

LATEST = "LATEST"


def new_version(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")


def version_dir(model_dir: Path, question: str, version: str) -> Path:
    return model_dir / question / version


def publish(model_dir: Path, question: str, version: str, metadata: dict) -> Path:
    """Writes the metadata beside an already saved model, then points LATEST at it."""
    folder = version_dir(model_dir, question, version)
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True))
    pointer = model_dir / question / LATEST
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(version + "\n")
    os.replace(tmp, pointer)
    return folder


def latest_version(model_dir: Path, question: str) -> str | None:
    pointer = model_dir / question / LATEST
    return pointer.read_text().strip() if pointer.exists() else None


def load_metadata(model_dir: Path, question: str, version: str) -> dict:
    return json.loads((version_dir(model_dir, question, version) / "metadata.json").read_text())
