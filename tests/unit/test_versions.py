"""The version matrix: pyproject.toml (Python) and stack/versions.env (JVM) must agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def jvm_versions() -> dict[str, str]:
    text = (ROOT / "stack" / "versions.env").read_text()
    return dict(re.findall(r"^([A-Z0-9_]+)=(\S+)", text, re.M))


def python_pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(d.split("==") for d in deps)


def test_pyspark_matches_the_spark_connectors():
    assert python_pins()["pyspark"] == jvm_versions()["SPARK_VERSION"]


def test_es_client_major_matches_the_server():
    assert python_pins()["elasticsearch"].split(".")[0] == jvm_versions()["ES_VERSION"].split(".")[0]


def test_connector_and_server_are_the_same_release():
    v = jvm_versions()
    assert v["ES_HADOOP_VERSION"] == v["ES_VERSION"]


def test_installed_pyspark_is_the_pinned_one():
    import pyspark

    assert pyspark.__version__ == jvm_versions()["SPARK_VERSION"]
