"""Start-up of the stream job: the wall time of `jobs/stream_index.py --available-now`, launch to
exit, first on a new topic holding --bars minute bars of 100 tickers (its indices, checkpoints
and MLflow store made on the way; with 21 or more bars a ticker, each forecast from its 21st),
then restarted --restarts times with nothing new: what a restart after a crash or a deploy
costs, its start, an empty batch per query and its stop. Both queries run; no model is trained,
so each question's reference baseline serves (the same per-bar work as a champion).

    .venv/bin/python -m bench.startup --runs 3
    .venv/bin/python -m bench.startup --job jobs/stream_index.py --job /tmp/other_stream_index.py

Each --job is a job file run by ./spark-submit.sh with this checkout's package, so two
versions of the entry point can be compared; the jobs alternate round after round, so they
share the machine's noise. Every run has its own topic, indices and folders, removed afterwards.
Writes bench/results/startup.{json,md}.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from bench import flags, report
from bench import latency as L  # the latency benchmark's generator, isolation and clean-up
from finstream.core.errors import ArgumentParser, HelpFormatter, UserError, exit_on_user_error, positive_int

DEFAULT_JOB = "jobs/stream_index.py"
JOB_TIMEOUT_S = 600


def timed_run(job: str) -> float:
    """Seconds from launching `./spark-submit.sh <job> --available-now` to its exit (0 required)."""
    started = time.perf_counter()
    # Its own session: on a time-out the whole group goes (spark-submit, its JVM, the Python driver).
    process = subprocess.Popen(["./spark-submit.sh", job, "--available-now"], cwd=L.ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{job} did not finish in {JOB_TIMEOUT_S} s") from None
    finally:  # a time-out, Ctrl-C or any error here: the job's group does not outlive the benchmark
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{job} failed (exit {process.returncode}):\n{stdout[-3000:]}{stderr[-2000:]}")
    return seconds


def one_round(job: str, bars: int, restarts: int) -> dict[str, list[float]]:
    """A first start on a new topic of `bars` bars (100 series), then `restarts` restarts; the
    run's topic, indices and folders removed afterwards, whatever happened."""
    run_id, settings, es = L.isolated_run()
    try:
        L.publish(settings, L.Series(100, start_ms=L.MINUTE_MS * (int(time.time() * 1000) // L.MINUTE_MS - 10_000))
                  .bars(bars), None)
        return {"first": [timed_run(job)], "restart": [timed_run(job) for _ in range(restarts)]}
    finally:
        L.cleanup(es, settings, run_id)


def markdown(result: dict) -> str:
    lines = [f"Stream job start-up, `--available-now` launch to exit, {result['bars']} bars on a new topic, "
             f"then restarts with nothing new; {result['runs']} rounds, commit {result['commit']}, "
             f"{result['date'][:16]} UTC. Seconds, median (min-max).", "",
             "| job | first start | restart | runs |", "|---|---|---|---:|"]
    for job, times in result["seconds"].items():
        lines.append(f"| `{job}` | {report.spread(times['first'], 1)} | {report.spread(times['restart'], 1)} | "
                     f"{len(times['first'])} + {len(times['restart'])} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--runs", type=positive_int, default=3, help="rounds (a first start and its restarts) per job")
    parser.add_argument("--restarts", type=positive_int, default=2, help="restarts with nothing new per round")
    parser.add_argument("--bars", type=positive_int, default=4_000, help="bars on the topic at the first start")
    parser.add_argument("--job", action="append", help=f"a job file to time (repeat to compare; default {DEFAULT_JOB})")
    flags.add_out(parser, "startup")
    args = parser.parse_args()
    jobs = list(dict.fromkeys(args.job or [DEFAULT_JOB]))
    for job in jobs:
        if not (L.ROOT / job).is_file():
            raise UserError(f"no job file {job} (relative to {L.ROOT}, or absolute)")

    seconds: dict[str, dict[str, list[float]]] = {job: {"first": [], "restart": []} for job in jobs}
    for round_number in range(args.runs):
        for job in jobs:
            times = one_round(job, args.bars, args.restarts)
            for kind, values in times.items():
                seconds[job][kind] += values
            print(f"round {round_number + 1}, {job}: first {times['first'][0]:.1f} s, restarts "
                  + ", ".join(f"{s:.1f}" for s in times["restart"]) + " s", flush=True)
    result = {**report.run_info("startup"), "bars": args.bars, "runs": args.runs, "restarts": args.restarts,
              "seconds": {job: {kind: [round(s, 2) for s in values] for kind, values in times.items()}
                          for job, times in seconds.items()}}
    report.write(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
