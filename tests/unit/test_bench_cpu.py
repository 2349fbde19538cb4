"""bench.cpu: a job's process tree CPU by role, children included, read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.cpu import TreeCpu, server_cpu_seconds, server_cpu_spent, spark_job_role

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"


def test_a_tree_is_summed_per_role_with_its_children():
    parent = BURN + f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {BURN!r}, 'child'], check=True)\n"
    process = subprocess.Popen([sys.executable, "-c", parent, "parent"])
    with TreeCpu(process.pid, lambda command: command.rsplit(" ", 2)[-2], interval=0.1) as tree:
        process.wait()
    totals = tree.totals()
    assert set(totals) == {"parent", "child"}
    assert 0.5 <= totals["parent"] < 1.5 and 0.5 <= totals["child"] < 1.5


def test_a_spark_jobs_processes_get_their_roles():
    assert spark_job_role("/usr/lib/jvm/java-17-openjdk-amd64/bin/java -cp conf/:jars/* -Xmx2g "
                          "org.apache.spark.deploy.SparkSubmit jobs/stream_index.py") == "jvm"
    assert spark_job_role("/work/.venv/bin/python -m pyspark.daemon") == "python_workers"
    assert spark_job_role("/work/.venv/bin/python /work/jobs/stream_index.py --available-now") == "python_driver"
    assert spark_job_role("/bin/bash ./spark-submit.sh jobs/stream_index.py") is None


def test_a_server_without_a_pid_file_has_no_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("FINSTREAM_LOCAL", str(tmp_path))
    assert server_cpu_seconds("elasticsearch") is None


def test_a_server_that_stopped_or_restarted_mid_run_has_no_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("FINSTREAM_LOCAL", str(tmp_path))
    (tmp_path / "run").mkdir()
    pid_file = tmp_path / "run" / "elasticsearch.pid"
    pid_file.write_text(str(os.getpid()))
    before = server_cpu_seconds("elasticsearch")
    assert server_cpu_spent("elasticsearch", before) == round(server_cpu_seconds("elasticsearch") - before, 1)
    assert server_cpu_spent("elasticsearch", None) is None
    assert server_cpu_spent("elasticsearch", before + 1_000_000) is None  # counter went back: restarted
    pid_file.unlink()  # stopped
    assert server_cpu_spent("elasticsearch", before) is None
