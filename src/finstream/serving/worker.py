"""What a Python worker of the stream sets up once and keeps between tasks: its Python
patches and the served models it has read (per MODEL_DIR). The Spark adapter
(finstream.serving.predictor) calls `served_models` at the start of every group; the first
call does the set-up.

PySpark's worker calls importlib.invalidate_caches() before every task. On Python 3.11 a
zipimporter answers that by re-reading the whole directory of its archive, and a worker has
three on its path that never change while it lives (pyspark.zip, py4j's zip and the
finstream zip of --py-files). py-spy on the predictor's workers in a 10 bars/s stream: 41 %
of their samples were in that re-reading, every task, whatever its rows. Later CPython
versions made it lazy; here the archives are simply kept as read once.
"""

from __future__ import annotations

import sys
import zipimport
from pathlib import Path

from finstream.core.questions import SERVED
from finstream.serving.installed import ServedForecasts

_MODELS: dict[str, ServedForecasts] = {}  # MODEL_DIR -> its served models (workers are reused across batches)
_SET_UP: list[bool] = []


def keep_zip_directories() -> None:
    """In a PySpark worker on Python < 3.12 only: zip archives are not re-read per task."""
    from pyspark.files import SparkFiles

    if sys.version_info < (3, 12) and SparkFiles._is_running_on_worker:
        zipimport.zipimporter.invalidate_caches = lambda self: None


def setup() -> None:
    """The worker's one-time set-up (idempotent)."""
    if not _SET_UP:
        keep_zip_directories()
        _SET_UP.append(True)


def served_models(model_dir: str) -> ServedForecasts:
    """The served questions' models installed in `model_dir`, read once per worker and
    re-read when a CHAMPION pointer changes (finstream.serving.installed)."""
    setup()
    if model_dir not in _MODELS:
        _MODELS[model_dir] = ServedForecasts(Path(model_dir), SERVED, report=False)
    return _MODELS[model_dir]
