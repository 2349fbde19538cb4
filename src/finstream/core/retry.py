"""The one retry policy, for every call that may fail for a while (the market-data API, the
stream job's Elasticsearch writes): exponential back-off (base, 2 x base, 4 x base ... capped),
or the pause the server asked for (Retry-After), a bounded number of retries, each logged
with its pause; after the last, the failure is raised. And its unbounded sibling for a
connection that must stay up (the live feed's WebSocket): reconnect until stopped, with
exponential back-off and full jitter (so clients dropped together do not return together).
Built on tenacity."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_when_event_set,
    wait_random_exponential,
)

T = TypeVar("T")


class Transient(Exception):
    """A failure worth another try; `retry_after`: the seconds the server asked to wait."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem, self.retry_after = problem, retry_after


def backoff(base: float, cap: float) -> Callable[[RetryCallState], float]:
    """A tenacity wait: the pause the failure asked for (its `retry_after`), else exponential back-off.

    Args:
        base: the first pause, seconds; each further retry doubles it.
        cap: the longest back-off pause, seconds (a server's Retry-After is honoured even above it).

    Returns:
        A function of tenacity's retry state giving the pause in seconds: the failure's
        `retry_after` when set, else min(cap, base x 2^(attempt - 1)).
    """
    def pause(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        asked = getattr(failure, "retry_after", None)
        # The exponent stops growing once the cap is reached: 2.0 ** 1024 overflows, and a
        # retry count may be that large (a "retry forever" setting).
        doublings = min(state.attempt_number - 1, 64)
        return asked if asked is not None else min(cap, base * 2.0 ** doublings)
    return pause


def first_line(exc: BaseException) -> str:
    """What went wrong, in one line of at most 300 characters.

    py4j wraps a JVM error in a long text: the line naming the Java exception (not py4j's own)
    is taken, else the first line, else the exception's repr.
    """
    text = str(exc).strip().splitlines()
    cause = next((line for line in text if "Exception:" in line and "py4j" not in line), text[0] if text else repr(exc))
    return cause[:300]


def retrying(action: Callable[[], T], *, what: str, retries: int, base: float, cap: float, log: logging.Logger,
             on: type[BaseException] | tuple[type[BaseException], ...] = Transient,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """Runs `action`; on a failure of type `on`, retries it up to `retries` times with back-off.

    Each retry is logged as a warning with its pause; the pauses are backoff(base, cap)'s.

    Args:
        action: the call to make, without arguments.
        what: what the action does, for the log lines (e.g. "writing to bars").
        retries: retries after the first attempt (a negative number: none).
        base: the first pause, seconds.
        cap: the longest back-off pause, seconds (a Transient's `retry_after` may exceed it).
        log: the logger the retries are reported to.
        on: the exception type(s) worth a retry; any other is raised at once.
        sleep: how to pause (tests pass a fake).

    Returns:
        What `action` returns, from the first attempt that succeeds.

    Raises:
        BaseException: the last failure of type `on` once the retries are spent, or the first
            failure of another type; unchanged in both cases.
    """
    retries = max(0, retries)

    def announce(state: RetryCallState) -> None:
        log.warning("%s failed (%s); retry %d/%d in %.1f s", what, first_line(state.outcome.exception()),
                    state.attempt_number, retries, state.next_action.sleep)

    for attempt in Retrying(stop=stop_after_attempt(retries + 1), wait=backoff(base, cap),
                            retry=retry_if_exception_type(on), before_sleep=announce, sleep=sleep, reraise=True):
        with attempt:
            return action()
    raise AssertionError("unreachable")  # Retrying either returns or raises


def reconnecting(session: Callable[[], None], *, what: str, base: float, cap: float, log: logging.Logger,
                 stop: threading.Event, on: type[BaseException] | tuple[type[BaseException], ...] = Transient,
                 sleep: Callable[[float], object] | None = None) -> None:
    """Runs `session` again and again until `stop` is set, pausing after each failure of type `on`.

    A failure is followed by a pause drawn from [0, min(cap, base x 2^(n-1))] seconds (n:
    failures in a row; full jitter) and a new session. A session that returns normally ends the
    failure run: the next one starts at once, with back-off from base.

    Args:
        session: one connection's lifetime; returns when it ends normally, raises when it is lost.
        what: what is connected, for the log lines (e.g. "the stocks WebSocket").
        base: the back-off's first ceiling, seconds.
        cap: the longest pause, seconds.
        log: the logger each reconnection is reported to.
        stop: set to end the loop; with the default `sleep`, it also cuts a pause short.
        on: the exception type(s) that mean the connection was lost.
        sleep: how to pause (default: stop.wait).

    Raises:
        BaseException: a failure not of type `on`, unchanged.
    """

    def announce(state: RetryCallState) -> None:
        log.warning("%s lost (%s); reconnecting in %.1f s (attempt %d)", what, first_line(state.outcome.exception()),
                    state.next_action.sleep, state.attempt_number)

    while not stop.is_set():
        failures = Retrying(stop=stop_when_event_set(stop), wait=wait_random_exponential(multiplier=base, max=cap),
                            retry=retry_if_exception_type(on), before_sleep=announce, sleep=sleep or stop.wait,
                            retry_error_callback=lambda _: None)
        failures(session)
