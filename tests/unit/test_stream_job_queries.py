"""The stream job's query lifecycle without Spark: a catch-up query's running successor starts
once it has ended, and only then; a failure is raised and starts nothing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

JOB = Path(__file__).resolve().parents[2] / "jobs" / "stream_index.py"
spec = importlib.util.spec_from_file_location("stream_index_job", JOB)
job = importlib.util.module_from_spec(spec)
spec.loader.exec_module(job)


class Query:
    def __init__(self, name: str, batches: int, error: Exception | None = None) -> None:
        self.name, self.batches, self.error = name, batches, error

    @property
    def isActive(self) -> bool:  # noqa: N802 (Spark's name)
        return self.batches > 0

    def exception(self) -> Exception | None:
        return None if self.isActive else self.error


class Streams:
    """awaitAnyTermination returns when a query ends: here, one batch of each active query.
    With `late`, a failure is not raised by it, as when a query fails after it returned and
    resetTerminated clears the error."""

    def __init__(self, queries: list[Query], late: bool = False) -> None:
        self.queries, self.late = queries, late

    def awaitAnyTermination(self) -> None:  # noqa: N802
        for query in self.queries:
            if query.isActive:
                query.batches -= 1
                if query.batches == 0 and query.error and not self.late:
                    raise query.error

    def resetTerminated(self) -> None:  # noqa: N802
        pass


class Spark:
    def __init__(self, queries: list[Query], late: bool = False) -> None:
        self.streams = Streams(queries, late)


def test_a_catch_up_query_is_followed_by_its_running_query_once_it_ends():
    started = []

    def running() -> Query:
        started.append("index-bars")
        return Query("index-bars", 2)

    queries = [Query("index-bars", 3), Query("predict-bars", 6)]
    job.await_all(Spark(queries), queries, {"index-bars": running})
    assert started == ["index-bars"]  # once, though the successor has the same name
    assert [query.name for query in queries] == ["index-bars", "predict-bars", "index-bars"]
    assert not any(query.isActive for query in queries)


def test_a_failed_catch_up_starts_nothing():
    queries = [Query("index-bars", 1, error=RuntimeError("batch failed"))]
    with pytest.raises(RuntimeError, match="batch failed"):
        job.await_all(Spark(queries), queries, {"index-bars": lambda: pytest.fail("started after a failure")})


@pytest.mark.parametrize("late", [False, True])
def test_a_query_that_fails_while_another_ends_is_raised_not_lost(late):
    """predict-bars failing just after the catch-up ended: resetTerminated clears Spark's record
    of it, but its own exception() still says; no successor starts."""
    queries = [Query("index-bars", 2), Query("predict-bars", 2, error=RuntimeError("state step failed"))]
    with pytest.raises(RuntimeError, match="state step failed"):
        job.await_all(Spark(queries, late), queries, {"index-bars": lambda: pytest.fail("started after a failure")})


def test_an_ended_catch_up_starts_its_running_query_while_predict_bars_waits():
    """start_successors is what start_predicting calls every second while the model registry
    is awaited: index-bars does not idle meanwhile."""
    then = {"index-bars": lambda: Query("index-bars", 5)}
    queries = [Query("index-bars", 1)]
    job.start_successors(queries, then)
    assert [query.isActive for query in queries] == [True] and then  # still catching up
    queries[0].batches = 0
    job.start_successors(queries, then)
    assert [query.isActive for query in queries] == [False, True] and not then
    job.start_successors(queries, then)  # once only
    assert len(queries) == 2
