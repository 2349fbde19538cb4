"""Parts meet only through Kafka, Elasticsearch and the shared package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_producer_never_loads_pyspark():
    code = "import sys, producer.cli; assert not any(m.startswith('pyspark') for m in sys.modules), 'pyspark'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_jobs_never_import_the_producer():
    assert "producer" not in imported_modules(ROOT / "jobs")


def test_shared_package_imports_neither_producer_nor_jobs():
    assert not {"producer", "jobs"} & imported_modules(ROOT / "src" / "finstream")
