"""CPU seconds of what a benchmark runs beside it, read from /proc (Linux): the local servers
(their stack/ pid files) and a job's whole process tree, by role (the Spark JVM, its Python
workers, ...)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from finstream.core.config import local_dir

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> tuple[int, float]:
    """(parent pid, user + system CPU seconds) of one process, its children not included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def server_cpu_seconds(name: str) -> float | None:
    """User + system CPU seconds of a local server (stack/ pid file), None if not local."""
    try:
        return _stat((local_dir() / "run" / f"{name}.pid").read_text().strip())[1]
    except (OSError, ValueError, IndexError):
        return None


def server_cpu_spent(name: str, before: float | None) -> float | None:
    """CPU seconds (0.1 s) a local server used since `before` (a server_cpu_seconds reading);
    None when either reading is missing or the counter went back: the server is not local, or it
    stopped or was restarted during the run, so no honest figure exists."""
    after = server_cpu_seconds(name)
    if before is None or after is None or after < before:
        return None
    return round(after - before, 1)


def spark_job_role(command: str) -> str | None:
    """A spark-submit job's processes: its JVM, its Python driver, the Python workers."""
    if "pyspark.daemon" in command or "pyspark.worker" in command:
        return "python_workers"
    if Path(command.split(" ", 1)[0]).name == "java":
        return "jvm"
    if "python" in command:
        return "python_driver"
    return None


class TreeCpu:
    """Samples the CPU seconds of every process under `root` (twice a second, in a thread),
    summed per role(command line); a process that ends between two samples loses at most its
    last half second. Use as a context manager around the job's run."""

    def __init__(self, root: int, role: Callable[[str], str | None] = spark_job_role, interval: float = 0.5) -> None:
        self.root, self.role, self.interval = root, role, interval
        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Reads the tree's processes once."""
        parents, cpu = {}, {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    parents[int(entry)], cpu[int(entry)] = _stat(entry)
                except (OSError, ValueError, IndexError):
                    continue
        for pid in cpu:
            ancestor, hops = pid, 0
            while ancestor not in (self.root, 0, 1) and hops < 32:
                ancestor, hops = parents.get(ancestor, 0), hops + 1
            if ancestor != self.root:
                continue
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            role = self.role(command)
            if role is not None:
                self._last[pid] = (role, cpu[pid])

    def totals(self) -> dict[str, float]:
        """Role -> CPU seconds of its processes (rounded to 0.1 s)."""
        totals: dict[str, float] = {}
        for role, seconds in self._last.values():
            totals[role] = totals.get(role, 0.0) + seconds
        return {role: round(seconds, 1) for role, seconds in sorted(totals.items())}
