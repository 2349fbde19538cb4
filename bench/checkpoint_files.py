"""What writing one checkpoint file costs Spark's driver, outside the stream job: Spark's
CheckpointFileManager.createAtomic (a temporary file, written, closed and renamed into place:
how each micro-batch writes its offset and commit logs, and each state task its state file)
of a 300-byte file on the local disk, with each manager Spark has for it:

- FileContext: Spark's default. Without Hadoop's native library (pyspark ships none), Hadoop's
  local file system runs `chmod` to set each new file's permissions and `readlink` for each
  path FileContext's rename looks at: a process started from the JVM each time.
- FileSystem: conf/spark-defaults.conf's choice (spark.sql.streaming.checkpointFileManagerClass);
  a rename is rename(2), and only `chmod` runs.

    .venv/bin/python -m bench.checkpoint_files
    .venv/bin/python -m bench.checkpoint_files --files 100 --repeats 5 --out /tmp/checkpoint_files

The managers take turns, --repeats rounds of --files files each, in a fresh local[1] session
(a small JVM: starting a process from the stream job's larger one costs more). Writes
bench/results/checkpoint_files.{json,md}: ms per file, median (min-max) over the rounds' medians.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pyspark.sql import SparkSession

from bench import flags, report
from bench import latency as L
from finstream.core.errors import ArgumentParser, HelpFormatter, exit_on_user_error, positive_int

MANAGER_SETTING = "spark.sql.streaming.checkpointFileManagerClass"
MANAGERS = {
    "FileContext (Spark's default)": "org.apache.spark.sql.execution.streaming.FileContextBasedCheckpointFileManager",
    "FileSystem (conf/spark-defaults.conf)":
        "org.apache.spark.sql.execution.streaming.FileSystemBasedCheckpointFileManager",
}
FILE_BYTES = 300  # an offset log entry's size


def configured_manager(conf_file: Path = L.ROOT / "conf" / "spark-defaults.conf") -> str | None:
    """The manager class conf/spark-defaults.conf sets, or None (Spark's default)."""
    for line in conf_file.read_text().splitlines():
        key, _, value = line.strip().partition(" ")
        if key == MANAGER_SETTING:
            return value.strip()
    return None


def file_ms(spark: SparkSession, manager: str, folder: Path, files: int) -> float:
    """Median ms to write one file through `manager` (its class name) into `folder`."""
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    conf.set(MANAGER_SETTING, manager)
    path = jvm.org.apache.hadoop.fs.Path
    files_manager = jvm.org.apache.spark.sql.execution.streaming.CheckpointFileManager.create(
        path(folder.as_uri()), conf)
    assert files_manager.getClass().getName() == manager, files_manager.getClass().getName()
    files_manager.mkdirs(path(folder.as_uri()))
    content = bytearray(b"x" * FILE_BYTES)
    times = []
    for i in range(files):
        started = time.perf_counter()
        # overwriteIfPossible false: as the offset and commit logs write (state files pass true).
        stream = files_manager.createAtomic(path((folder / str(i)).as_uri()), False)
        stream.write(content)
        stream.close()
        times.append(time.perf_counter() - started)
    conf.unset(MANAGER_SETTING)
    return 1000 * statistics.median(times)


def measure(spark: SparkSession, files: int, repeats: int) -> dict[str, dict[str, float]]:
    """Per manager: ms per file, median, min and max over `repeats` rounds taking turns."""
    rounds: dict[str, list[float]] = {name: [] for name in MANAGERS}
    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-files-") as scratch:
        for round_number in range(repeats):
            for name, manager in MANAGERS.items():
                folder = Path(scratch) / f"{round_number}-{len(rounds[name])}-{manager.rsplit('.', 1)[-1]}"
                rounds[name].append(file_ms(spark, manager, folder, files))
                shutil.rmtree(folder)
    return {name: report.summary(v) for name, v in rounds.items()}


def table(result: dict) -> str:
    lines = [f"CheckpointFileManager.createAtomic of a {FILE_BYTES}-byte file, local disk, local[1]; "
             f"{result['repeats']} rounds of {result['files']} files, managers taking turns; {result['date'][:10]}",
             "",
             "| manager | ms per file, median (min-max) of the rounds |",
             "|---|---:|"]
    for name, v in result["managers"].items():
        lines.append(f"| {name} | {v['median']} ({v['min']}-{v['max']}) |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--files", type=positive_int, default=40, help="files written per round and manager")
    parser.add_argument("--repeats", type=positive_int, default=3, help="rounds")
    flags.add_out(parser, "checkpoint_files")
    args = parser.parse_args()
    spark = report.local_spark("bench-checkpoint-files", "local[1]")
    managers = measure(spark, args.files, args.repeats)
    result = {**report.run_info("checkpoint_files"), "files": args.files, "repeats": args.repeats,
              "configured": configured_manager(), "managers": managers}
    report.write(args.out, result, table(result))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
