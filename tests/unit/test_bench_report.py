"""bench.report: a result names the commit it measured, marked `+` when the code differs from it."""

from __future__ import annotations

import subprocess

from bench import report


def git(root, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def test_commit_marks_changed_code_but_not_changed_results(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "run.py").write_text("x = 1\n")
    (tmp_path / "bench" / "results" / "run.md").write_text("old\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = git(tmp_path, "rev-parse", "--short", "HEAD")
    assert report.commit(tmp_path) == head
    (tmp_path / "bench" / "results" / "run.md").write_text("new\n")  # a run's own result
    assert report.commit(tmp_path) == head
    (tmp_path / "bench" / "run.py").write_text("x = 2\n")
    assert report.commit(tmp_path) == head + "+"
