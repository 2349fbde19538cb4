"""Set-up of the Python workers that run the predictor's state step.

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


def keep_zip_directories() -> None:
    """In a PySpark worker on Python < 3.12 only: zip archives are not re-read per task."""
    from pyspark.files import SparkFiles

    if sys.version_info < (3, 12) and SparkFiles._is_running_on_worker:
        zipimport.zipimporter.invalidate_caches = lambda self: None
