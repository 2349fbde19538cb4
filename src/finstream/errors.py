"""Mistakes a user can fix (a server not running, a topic or ticker that does not exist, a bad
flag): raised as UserError with one line that says what to do, and turned by each entry
point into that line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

from finstream.schema import TICKER_PATTERN

USER_ERROR_EXIT = 2


class UserError(Exception):
    """Its message is the whole report: what went wrong and what to do."""


def exit_on_user_error(main: Callable[[], object]) -> int:
    """Runs an entry point; a UserError becomes `error: <message>` on stderr and exit code 2."""
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return USER_ERROR_EXIT
    return 0


def ticker_list(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated tickers, at least one, each a valid ticker."""
    tickers = tuple(t.strip() for t in text.split(",") if t.strip())
    if not tickers:
        raise argparse.ArgumentTypeError("give at least one ticker, comma-separated (e.g. AAPL,X:BTCUSD)")
    invalid = [t for t in tickers if not re.match(TICKER_PATTERN, t)]
    if invalid:
        raise argparse.ArgumentTypeError(f"not a ticker: {', '.join(invalid)} (upper-case, e.g. AAPL, C:EURUSD)")
    return tickers


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad flag reported as one line (the message and where to look) and exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr, flush=True)
        raise SystemExit(USER_ERROR_EXIT)


def choice_list(choices) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: comma-separated names, at least one, each one of `choices`."""
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        unknown = [n for n in names if n not in choices]
        if not names or unknown:
            raise argparse.ArgumentTypeError(f"{'unknown: ' + ', '.join(unknown) if unknown else 'empty'}; "
                                             f"choose from {','.join(choices)}")
        return names
    return parse
