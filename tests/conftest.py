from __future__ import annotations

import os

import pytest

# Tests never read a developer's real key or credentials.
for name in ("POLYGON_API_KEY", "POLYGON_API_KEY_FILE", "ES_PASSWORD", "ES_API_KEY"):
    os.environ.pop(name, None)


@pytest.fixture(scope="session")
def spark():
    """A small local Spark session for the DataFrame unit tests (no connectors needed)."""
    import sys

    from pyspark.sql import SparkSession

    # Python workers (pandas functions) must run this interpreter, as spark-submit.sh arranges.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("finstream-unit-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
