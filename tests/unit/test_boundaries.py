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


# The packages of finstream in order: each imports only those before it (and itself).
# features.spec is a leaf (names and window lengths) that core may read too.
LAYERS = ("core", "features", "stores", "ingest", "serving", "training", "ops")


def finstream_imports(path: Path) -> set[str]:
    """The finstream modules a file imports, as dotted names below finstream."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("finstream."):
            names.add(node.module.removeprefix("finstream."))
            if node.module.count(".") == 1:  # from finstream.core import schema
                names |= {f"{node.module.removeprefix('finstream.')}.{a.name}" for a in node.names}
    return names


def test_each_package_imports_only_the_packages_before_it():
    package_dir = ROOT / "src" / "finstream"
    for position, package in enumerate(LAYERS):
        allowed = set(LAYERS[:position + 1])
        for path in (package_dir / package).rglob("*.py"):
            for name in finstream_imports(path):
                top = name.split(".")[0]
                assert top in allowed or name == "features.spec", f"{path.relative_to(ROOT)} imports finstream.{name}"
    spec = ast.parse((package_dir / "features" / "spec.py").read_text())
    assert not [n for n in ast.walk(spec) if isinstance(n, ast.ImportFrom) and "finstream" in (n.module or "")]


def test_no_two_modules_share_a_name():
    names = [p.name for p in (ROOT / "src" / "finstream").rglob("*.py") if p.name != "__init__.py"]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
