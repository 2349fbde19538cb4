"""One logging format for every entry point (producer, jobs)."""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback

from finstream.core.errors import hide_credentials


def setup_logging(level: str | None = None) -> None:
    """Configures the root logger with the project's line format, and quiets third-party loggers.

    Args:
        level: a logging level name, e.g. "DEBUG" (default: LOG_LEVEL, else INFO).
    """
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Chatty third-party loggers; their warnings still show.
    for name in ("kafka", "py4j", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # kafka-python logs every refused connection attempt at ERROR while it retries, and the
    # Elasticsearch client each retry with a stack trace at WARNING; what the user needs (a
    # server unreachable, a send or write that failed) is reported by our own code, once.
    for name in ("kafka.conn", "kafka.client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)
    # Our readers of the topic commit nothing on purpose (the replay and the checks); kafka-python
    # says "group_id is None: disabling auto-commit" at WARNING for each.
    logging.getLogger("kafka.coordinator.consumer").setLevel(logging.ERROR)
    # A URI's credentials never reach a log line or a traceback (MLflow's errors repeat the
    # tracking URI, password and all).
    # MLflow gives its loggers a handler of its own, which the filter below would not see, unless
    # told not to when it is first imported: its records then reach the root's handlers.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    # Importing mlflow.pyfunc warns three times about MLflow's own type hints, nothing of ours.
    logging.getLogger("mlflow.types.type_hints").setLevel(logging.ERROR)
    for logger in (logging.getLogger(), logging.getLogger("mlflow")):  # mlflow's, if imported before
        for handler in logger.handlers:
            if HIDE_CREDENTIALS not in handler.filters:
                handler.addFilter(HIDE_CREDENTIALS)
    sys.excepthook = _hiding_excepthook
    threading.excepthook = _hiding_thread_excepthook


class _HideCredentials(logging.Filter):
    """Rewrites a record's message and traceback with every URL's credentials as ***
    (finstream.core.errors.hide_credentials)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format call: logging reports it itself, as without the filter
            return True
        hidden = hide_credentials(message)
        if hidden != message:
            record.msg, record.args = hidden, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = hide_credentials(record.exc_text)
        return True


HIDE_CREDENTIALS = _HideCredentials()


def _hiding_excepthook(kind, value, tb) -> None:
    """An uncaught exception's traceback, as Python prints it, with URLs' credentials hidden."""
    sys.stderr.write(hide_credentials("".join(traceback.format_exception(kind, value, tb))))


def _hiding_thread_excepthook(args: threading.ExceptHookArgs) -> None:
    """A thread's uncaught exception, as threading prints it, with URLs' credentials hidden (the
    registry's follower and MLflow's own threads may fail with the tracking URI in the error)."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else threading.get_ident()
    sys.stderr.write(hide_credentials(f"Exception in thread {name}:\n" + "".join(
        traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))))
