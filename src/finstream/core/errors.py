"""Mistakes a user can fix (a server not running, a topic or ticker that does not exist, a bad
flag): raised as UserError with one line that says what to do, and turned by each entry
point into that line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote

from finstream.core.schema import JAVA_INT_MAX, TICKER_PATTERN

USER_ERROR_EXIT = 2
T = TypeVar("T")


# Credentials a URL may carry: its user information (scheme://user:password@host, or a token as
# the user; up to the authority's last @, as a password may hold one, and RFC 3986's
# sub-delimiters such as , ' ( )) and query parameters named like secrets. Whitespace, " and < >
# end it: a URL in prose or brackets next to an address is not user information.
_USERINFO = re.compile(r"(?<=://)[^/?#\s\"<>]+@")
# A database URL's password is whatever lies between `user:` and the next @: SQLAlchemy reads it
# so, and takes a space, / # ? or " in it unencoded. Not a port (`db:5432/mlflow ... ops@corp`),
# and not across the prose around a URL (`: `, ` (`, `; `, another `://`).
_DATABASE_PASSWORD = re.compile(r"(?i)(\b(?:postgres(?:ql)?|mysql|mariadb|mssql|oracle|cockroachdb)(?:\+\w+)?://)"
                                r"[^:/@\s]*:(?!\d+(?:[/?#\s]|$))(?:(?!://|\s\(|:\s|;\s)[^@\n])*@")
# Query or fragment parameters (also percent-encoded inside another, as ODBC's odbc_connect) whose
# name ends a word in password, passphrase, pwd, secret, token, signature or assertion
# (sslpassword, client_secret, refresh_token, SecretAccessKey, X-Amz-Security-Token; not tokenizer
# or token_type), or names a key of a secret kind (key, apiKey, x-api-key, application_key,
# SharedAccessKey, Ocp-Apim-Subscription-Key; not sort_key, ssl_key, public_key, key_id); a SAS's
# `sig`, `auth` as some drivers take it, an OAuth or Azure Functions `code`. A value runs to the
# next parameter or whitespace: quotes and parentheses may be part of a password.
_SECRET_WORDS = "password|passwd|passphrase|pwd|secret|token|signature|assertion"
_SECRET_KEY_KINDS = ("api|access|private|account|secret|client|subscription|master|signing|shared|storage|encryption"
                     "|application|app|user|auth|hmac|session|license|write|functions|customer|sas")
_SECRET_PARAMETERS = re.compile(
    rf"(?i)((?:[?&;#]|%3B|%26)(?:[\w.-]*(?:{_SECRET_WORDS})s?(?-i:(?![a-z]))(?![_-](?:type|endpoint|filter|count))"
    rf"[\w.-]*|(?:(?:[\w-]*[_-])?(?:(?:{_SECRET_KEY_KINDS})[_-]?)+)?key|auth|sig|code)(?:=|%3D))"
    r"(?:(?!%3B|%26)[^&#;\s<>])*")


# Credentials the loaded settings hold, hidden verbatim wherever they appear: a password holding
# what no pattern above can bound (a space, a quote, an @) is hidden all the same. A URL's
# `user:password@` as it was given, longest first; passwords and secrets alone as whole words.
_REMEMBERED_USERINFO: list[str] = []
_REMEMBERED_WORDS: set[str] = set()
_WORDS: re.Pattern | None = None
_DATABASE_SCHEME = re.compile(r"(?i)(?:postgres(?:ql)?|mysql|mariadb|mssql|oracle|cockroachdb)(?:\+\w+)?")


def remember_credentials(value: str, *, secret: bool = False) -> None:
    """Makes hide_credentials hide a configured credential verbatim from now on, in this process.

    Args:
        value: a setting's value. A URL with user information gives its `user:password@` (up to
            the authority's last @; a database URL's password may also hold / # ?), and its
            password alone, as given and percent-decoded. A user without a password, or a
            value with no scheme (a path holding an @), gives nothing; a token as the user (16
            characters or more) counts as a password.
        secret: the value is itself a secret (a password, an API key).

    A password or secret is hidden only as a whole word (no letter, digit or _ against it), and
    only from 6 characters: a shorter one, or one inside a longer name, would hide common text.
    """
    global _WORDS
    words = {value} if secret else set()
    scheme = value.find("://")
    if not secret and scheme > 0:
        rest = value[scheme + 3:]
        authority = rest if _DATABASE_SCHEME.fullmatch(value[:scheme]) else re.split(r"[/?#]", rest, maxsplit=1)[0]
        userinfo = authority[:max(0, authority.rfind("@"))]
        _user, colon, password = userinfo.partition(":")
        if (colon and password) or len(userinfo) >= 16:
            if userinfo + "@" not in _REMEMBERED_USERINFO:
                _REMEMBERED_USERINFO.append(userinfo + "@")
                _REMEMBERED_USERINFO.sort(key=len, reverse=True)
            words |= {password, unquote(password)} if colon else {userinfo}
    words = {word for word in words if len(word) >= 6} - _REMEMBERED_WORDS
    if words:
        _REMEMBERED_WORDS.update(words)
        alternatives = "|".join(re.escape(word) for word in sorted(_REMEMBERED_WORDS, key=len, reverse=True))
        _WORDS = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def hide_credentials(text: str) -> str:
    """`text` with every URL's credentials as ***: the credentials the settings hold
    (remember_credentials), any URL's user information (`https://user:pw@host` ->
    `https://***@host`, a database URL's `user:pass word@` too) and secret-named query parameters
    (`?password=x` -> `?password=***`). For lines that repeat a URI a user configured: MLflow's
    errors and links do, with the password in them."""
    for userinfo in _REMEMBERED_USERINFO:
        text = text.replace(userinfo, "***@")
    if _WORDS is not None:
        text = _WORDS.sub("***", text)
    text = _DATABASE_PASSWORD.sub(r"\1***@", text)
    return _SECRET_PARAMETERS.sub(r"\1***", _USERINFO.sub("***@", text))


def print_error(message: object) -> None:
    """Prints `error: <message>` on stderr, any credentials in it hidden (hide_credentials): a
    failure's message may repeat a URL the user configured, password and all."""
    print(f"error: {hide_credentials(str(message))}", file=sys.stderr, flush=True)


class UserError(Exception):
    """Its message is the whole report: what went wrong and what to do."""


def os_reason(exc: OSError, path: Path) -> str:
    """Why an OS call on `path` failed, for a one-line error: what stands in the way where the
    system names no culprit ("File exists", "Not a directory", "Too many levels of symbolic
    links": a file, a dangling or looping symbolic link, at `path` or at a parent, which is then
    named), else the system's reason ("Permission denied"). Never raises."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)) or exc.errno == errno.ELOOP:
        try:
            for where in (*reversed(path.parents), path):
                if os.path.lexists(where) and not where.is_dir():
                    return ("" if where == path else f"{where} is ") + _what_stands(where)
        except OSError:  # a parent this user cannot search, or one changing meanwhile
            pass
    return exc.strerror or str(exc)


def _what_stands(where: Path) -> str:
    """What `where` is, a path that exists but is no folder (OSError: it changed meanwhile)."""
    try:
        os.stat(where)
    except OSError as problem:
        if problem.errno == errno.ELOOP:
            return "a symbolic link that loops"
        target = os.readlink(where)
        if problem.errno == errno.ENOENT:
            return f"a symbolic link to {target}, which does not exist"
        return f"a symbolic link to {target} ({problem.strerror or problem})"
    return "a file, not a folder"


def require_folder(folder: Path, what: str, advice: str) -> None:
    """Makes `folder` and its parents if missing, and checks that this user can write a file
    there: before a job's work, not after it.

    Raises:
        UserError: `cannot write <what> to <folder> (<os_reason>): <advice>`.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # A new file of its own (O_EXCL): never written through a symbolic link left there.
        descriptor, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"cannot write {what} to {folder} ({os_reason(exc, folder)}): {advice}") from None


def exit_on_user_error(main: Callable[[], object]) -> int:
    """Runs an entry point, turning a UserError into one line on stderr and exit code 2.

    Args:
        main: the entry point, called without arguments; it may return an exit code (an int).

    Returns:
        The process's exit code: main's int (0 when it returns anything else), or
        USER_ERROR_EXIT (2) after printing `error: <message>`. Any other exception propagates
        (a bug: its traceback is wanted).
    """
    try:
        code = main()
    except UserError as exc:
        print_error(exc)
        return USER_ERROR_EXIT
    return code if isinstance(code, int) else 0


def comma_list(item: Callable[[str], T] = str, *, what: str = "value",
               example: str = "") -> Callable[[str], tuple[T, ...]]:
    """An argparse type: comma-separated values, at least one, each converted by `item`.

    Args:
        item: converts one value; raises ValueError with the reason for a value it refuses.
        what: what one value is, for the message when none is given (e.g. "ticker").
        example: appended to that message, e.g. " (e.g. AAPL,X:BTCUSD)".

    Returns:
        A function of the flag's text returning the converted values as a tuple. It raises
        argparse.ArgumentTypeError (which argparse reports as one line) for an empty list, or
        with `item`'s reason for a refused value.
    """
    def parse(text: str) -> tuple[T, ...]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"give at least one {what}, comma-separated{example}")
        try:
            return tuple(item(part) for part in parts)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _ticker(text: str) -> str:
    if not re.match(TICKER_PATTERN, text):
        raise ValueError(f"not a ticker: {text} (upper-case, e.g. AAPL, C:EURUSD)")
    return text


# An argparse type: comma-separated tickers, each matching TICKER_PATTERN.
ticker_list = comma_list(_ticker, what="ticker", example=" (e.g. AAPL,X:BTCUSD)")


class Refused(argparse.ArgumentTypeError, ValueError):
    """A flag's value refused, with the reason: argparse prints the message itself (an
    ArgumentTypeError), and comma_list reports it for one item of a list (a ValueError)."""


def _number(kind: type, accept: Callable[[float], bool], wanted: str, name: str) -> Callable[[str], float]:
    """An argparse type (or comma_list item): `kind(text)` when `accept` holds for it, else
    Refused saying "<text> is not <wanted>"."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise Refused(f"{text} is not {wanted}")
        return value
    parse.__name__ = parse.__qualname__ = name
    parse.__doc__ = f"An argparse type (or comma_list item): {wanted}; Refused otherwise."
    return parse


positive = _number(float, lambda v: math.isfinite(v) and v > 0, "a number above 0", "positive")
positive_int = _number(int, lambda v: v >= 1, "a whole number above 0", "positive_int")
# A value stored as a 32-bit int (a bar's multiplier: Spark's and Elasticsearch's `integer`).
positive_int32 = _number(int, lambda v: 1 <= v <= JAVA_INT_MAX, f"a whole number from 1 to {JAVA_INT_MAX}",
                         "positive_int32")
non_negative = _number(float, lambda v: math.isfinite(v) and v >= 0, "a number, 0 or more", "non_negative")
non_negative_int = _number(int, lambda v: v >= 0, "a whole number, 0 or more", "non_negative_int")
fraction = _number(float, lambda v: 0 < v < 1, "a number between 0 and 1", "fraction")


def choice_list(choices) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: comma-separated names, at least one, each one of `choices`."""
    def choice(name: str) -> str:
        if name not in choices:
            raise ValueError(f"unknown: {name}; choose from {','.join(choices)}")
        return name
    return comma_list(choice, what="name", example=f" (from {','.join(choices)})")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """argparse's help with the description as written and each option's default after its help
    ("(default: 30)"); an option without a default (None, False, "" or []) says nothing more."""

    def _get_help_string(self, action: argparse.Action) -> str | None:  # argparse's hook
        if action.default is None or action.default is False or action.default in ("", []):
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a bad flag reported as one line (the message and where to look) and exit 2.

    Without a `prog`, a module run with `python -m` is named as that command (argparse's
    default, the file's name, is not one the user can run).
    """

    def __init__(self, *args, **kwargs):
        if "prog" not in kwargs:
            spec = getattr(sys.modules.get("__main__"), "__spec__", None)
            if spec is not None and spec.name:
                kwargs["prog"] = f"python -m {spec.name.removesuffix('.__main__')}"
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse's hook
        """Prints `error: <message> (see <prog> --help)` on stderr and exits with code 2 (SystemExit)."""
        print_error(f"{message} (see {self.prog} --help)")
        raise SystemExit(USER_ERROR_EXIT)
