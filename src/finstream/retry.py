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
    def pause(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        asked = getattr(failure, "retry_after", None)
        return asked if asked is not None else min(cap, base * 2 ** (state.attempt_number - 1))
    return pause


def first_line(exc: BaseException) -> str:
    """What went wrong, in one line (py4j wraps a JVM error in a long text: its cause line)."""
    text = str(exc).strip().splitlines()
    cause = next((line for line in text if "Exception:" in line and "py4j" not in line), text[0] if text else repr(exc))
    return cause[:300]


def retrying(action: Callable[[], T], *, what: str, retries: int, base: float, cap: float, log: logging.Logger,
             on: type[BaseException] | tuple[type[BaseException], ...] = Transient,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """Runs action; on a failure of type `on`, retries it up to `retries` times with back-off.
    The last failure is raised."""
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
    """Runs `session` until `stop` is set: a failure of type `on` is followed by a pause drawn
    from [0, min(cap, base x 2^n)] (n: failures in a row) and a new session. A session that
    returns normally ends the failure run: the next one starts at once, with back-off from base.
    Any other exception is raised."""

    def announce(state: RetryCallState) -> None:
        log.warning("%s lost (%s); reconnecting in %.1f s (attempt %d)", what, first_line(state.outcome.exception()),
                    state.next_action.sleep, state.attempt_number)

    while not stop.is_set():
        failures = Retrying(stop=stop_when_event_set(stop), wait=wait_random_exponential(multiplier=base, max=cap),
                            retry=retry_if_exception_type(on), before_sleep=announce, sleep=sleep or stop.wait,
                            retry_error_callback=lambda _: None)
        failures(session)
