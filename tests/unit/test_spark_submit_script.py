"""spark-submit.sh's own work before Spark starts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_jobs_starting_at_once_each_get_a_whole_package_zip_named_by_its_content(tmp_path):
    """The stream job and a training started together rebuilt one finstream.zip in place: one
    could read the other's half-written file. Each now renames a whole file to a name of its
    content, so identical code gives one file and no run ever sees another's partial one."""
    env = {**os.environ, "FINSTREAM_LOCAL": str(tmp_path)}
    runs = [subprocess.Popen(["./spark-submit.sh", "--version"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for run in runs:
        _, stderr = run.communicate(timeout=180)
        assert run.returncode == 0, stderr[-2000:]
    built = sorted((tmp_path / "build").iterdir())
    assert [p.name for p in built] == [f"finstream-{hashlib.sha256(built[0].read_bytes()).hexdigest()[:16]}.zip"]
    with zipfile.ZipFile(built[0]) as archive:
        assert archive.testzip() is None
        assert "finstream/core/schema.py" in archive.namelist() and "finstream/ops/kibana.py" not in archive.namelist()
