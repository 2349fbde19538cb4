"""The one retry policy (finstream.core.retry): its pauses, Retry-After, its bound, what it retries."""

from __future__ import annotations

import logging
import threading

import pytest

from finstream.core.retry import Transient, reconnecting, retrying

log = logging.getLogger("test")


def failing(failures: list[BaseException], result="done"):
    calls = []

    def action():
        calls.append(1)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return result
    return action, calls


def test_exponential_back_off_capped_then_success():
    sleeps: list[float] = []
    action, calls = failing([Transient("x")] * 5)
    assert retrying(action, what="w", retries=6, base=2.0, cap=10.0, log=log, sleep=sleeps.append) == "done"
    assert sleeps == [2.0, 4.0, 8.0, 10.0, 10.0] and len(calls) == 6


def test_the_servers_retry_after_wins_over_the_back_off():
    sleeps: list[float] = []
    action, _ = failing([Transient("429", retry_after=7.0), Transient("503")])
    retrying(action, what="w", retries=3, base=1.0, cap=60.0, log=log, sleep=sleeps.append)
    assert sleeps == [7.0, 2.0]


def test_the_last_failure_is_raised_after_the_retries(caplog):
    sleeps: list[float] = []
    action, calls = failing([Transient(f"attempt {i}") for i in range(10)])
    with caplog.at_level(logging.WARNING, logger="test"), pytest.raises(Transient, match="attempt 3"):
        retrying(action, what="fetching", retries=3, base=1.0, cap=60.0, log=log, sleep=sleeps.append)
    assert len(calls) == 4 and sleeps == [1.0, 2.0, 4.0]
    assert "fetching failed (attempt 0); retry 1/3 in 1.0 s" in caplog.text


def test_other_failures_are_not_retried():
    action, calls = failing([ValueError("a bug")])
    with pytest.raises(ValueError):
        retrying(action, what="w", retries=3, base=1.0, cap=60.0, log=log, sleep=lambda s: None)
    assert len(calls) == 1


def test_reconnecting_backs_off_with_jitter_and_starts_over_after_a_session_that_lasted():
    stop, pauses = threading.Event(), []
    outcomes = [Transient("refused")] * 4 + ["streamed, then lost"] + [Transient("refused")] * 2 + ["stop"]

    def session():
        outcome = outcomes.pop(0)
        if outcome == "stop":
            stop.set()
        elif isinstance(outcome, Exception):
            raise outcome

    reconnecting(session, what="the socket", base=1.0, cap=5.0, log=log, stop=stop, sleep=pauses.append)
    assert not outcomes and len(pauses) == 6
    # Full jitter: each pause anywhere in [0, min(cap, base x 2^n)]; the run restarts at base.
    for pause, bound in zip(pauses, [1, 2, 4, 5, 1, 2], strict=True):
        assert 0 <= pause <= bound
    assert len(set(pauses)) > 1  # drawn, not fixed


def test_reconnecting_raises_what_it_does_not_retry_and_ends_on_stop():
    stop = threading.Event()

    def refused():
        raise PermissionError("bad key")

    with pytest.raises(PermissionError):
        reconnecting(refused, what="w", base=1.0, cap=5.0, log=log, stop=stop, sleep=lambda _: None)

    def lost():
        stop.set()  # stopped while the connection was failing: no more attempts
        raise Transient("lost")

    reconnecting(lost, what="w", base=1.0, cap=5.0, log=log, stop=stop, sleep=lambda _: None)


def test_the_back_off_stays_at_its_cap_however_many_retries():
    from types import SimpleNamespace

    from finstream.core.retry import backoff

    pause = backoff(1.0, 60.0)
    # A retry count of the int's maximum: 2.0 ** 1024 would overflow past the 1 025th attempt.
    for attempt, expected in ((1, 1.0), (2, 2.0), (7, 60.0), (1_025, 60.0), (2_147_483_647, 60.0)):
        assert pause(SimpleNamespace(attempt_number=attempt, outcome=None)) == expected
