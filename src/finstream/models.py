"""python -m finstream.models {list,promote,rollback,ui}: the registered models and their aliases.

    list      [--questions lags,range]                      per question, each series set: its
                                                            versions, champion, challenger, live skill
    promote   --question lags --set day1-stocks --version 3 version 3 becomes that set's champion
    rollback  --question lags --set day1-stocks             that set's champion before the current one
                                                            takes it back
    ui        [--port 5000]                                 MLflow's UI on the tracking store, on
                                                            127.0.0.1 (make mlflow-ui)

Each question has one registered model per series set (finstream-<question>-<set key>,
finstream.core.series_sets); promoting or rolling back one set never changes what another set
is served. A running stream job serves the new champion from its next micro-batch (no
restart). MLflow's own client and UI move the same alias (`champion`) and the stream follows
them just the same.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from pathlib import Path

from finstream.core.config import Settings
from finstream.core.errors import ArgumentParser, Refused, UserError, choice_list, exit_on_user_error, positive_int
from finstream.core.logs import setup_logging
from finstream.core.questions import SERVED
from finstream.core.retry import first_line
from finstream.core.series_sets import SeriesSet
from finstream.stores import registry

QUESTIONS = SERVED  # the questions the stream serves, each with a registered model per series set


def series_set(value: str) -> SeriesSet:
    """--set: a series set's key, checked."""
    try:
        return SeriesSet.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command and its flags; a bad flag exits with one line and code 2 (core.errors.ArgumentParser).

    Args:
        argv: the arguments (None: sys.argv[1:]).
    """
    parser = ArgumentParser(prog="python -m finstream.models", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="every registered version and its alias")
    listing.add_argument("--questions", type=choice_list(QUESTIONS), default=QUESTIONS)
    promote = commands.add_parser("promote", help="make a version the champion")
    promote.add_argument("--question", choices=QUESTIONS, required=True)
    promote.add_argument("--set", dest="series_set", type=series_set, required=True,
                         help="the series set's key, as `list` shows it (e.g. day1-stocks)")
    promote.add_argument("--version", type=positive_int, required=True, help="the version number, as `list` shows it")
    rollback = commands.add_parser("rollback", help="give the champion alias back to the previous champion")
    rollback.add_argument("--question", choices=QUESTIONS, required=True)
    rollback.add_argument("--set", dest="series_set", type=series_set, required=True)
    ui = commands.add_parser("ui", help="MLflow's UI on the tracking store (loopback only)")
    ui.add_argument("--port", type=port, default=5000)
    return parser.parse_args(argv)


def port(text: str) -> int:
    """An argparse type: a TCP port to listen on, 1-65535; Refused otherwise."""
    number = positive_int(text)
    if number > 65_535:
        raise Refused(f"{text} is not a port (1-65535)")
    return number


def require_free_port(number: int) -> None:
    """Checks that the UI can listen on 127.0.0.1:`number` (as gunicorn binds it, SO_REUSEADDR).

    Raises:
        UserError: the port is taken (say, by another UI), with the flag to pick another; taken
            after this check, gunicorn reports it itself.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", number))
        except OSError as exc:
            advice = ("is another MLflow UI running? Stop it, or pass --port with a free port"
                      if exc.errno == errno.EADDRINUSE else "pass --port with a port this user may open (1024 or more)")
            raise UserError(f"cannot listen on 127.0.0.1:{number} ({exc.strerror}): {advice}") from None


def ui_command(settings: Settings, port: int) -> tuple[list[str], dict[str, str]]:
    """MLflow's UI on the tracking store, on the loopback only: its command and environment.

    The store's URI and the artifact root go in the variables MLflow's CLI reads for
    --backend-store-uri and --default-artifact-root, not on the command line, where `ps` shows
    a password in them to every user of the machine.
    """
    environment = {**os.environ, "MLFLOW_BACKEND_STORE_URI": registry.tracking_uri(settings)}
    location = registry.artifact_location(settings)
    if location:
        environment["MLFLOW_DEFAULT_ARTIFACT_ROOT"] = location
    command = [str(Path(sys.executable).with_name("mlflow")), "ui", "--host", "127.0.0.1", "--port", str(port)]
    return command, environment


def main(argv: list[str] | None = None) -> None:
    """Runs one command (see the module's docstring); `ui` replaces this process with MLflow's UI.

    Args:
        argv: the arguments (None: sys.argv[1:]).

    Raises:
        UserError: the tracking store cannot be used, or promote or rollback was refused (no
            such version, no earlier champion); exit_on_user_error prints it as one line.
    """
    args = parse_args(argv)
    setup_logging()
    settings = Settings.load()
    if args.command == "ui":
        require_free_port(args.port)  # before the store's check, which takes seconds
    registry.require_store(settings)
    if args.command == "ui":
        command, environment = ui_command(settings, args.port)
        print(f"MLflow UI on http://127.0.0.1:{args.port} ({registry.shown_uri(settings)})", flush=True)
        os.execve(command[0], command, environment)
    client = registry.client(settings)
    if args.command == "list":
        for question in args.questions:
            print(describe(client, question))
        return
    try:
        name = registry.resolve(client, args.question, args.series_set)
    except LookupError as exc:
        raise UserError(f"{exc}: see `python -m finstream.models list --questions {args.question}`") from None
    if args.command == "promote":
        try:
            registry.set_champion(client, name, args.version)
        except Exception as exc:  # noqa: BLE001 - MLflow's RESOURCE_DOES_NOT_EXIST and kin: one line
            raise UserError(f"cannot promote {name} version {args.version} ({first_line(exc)[:200]}): "
                            f"see `python -m finstream.models list --questions {args.question}`") from None
        print(f"{name}: version {args.version} is the champion of {args.series_set.key}")
    else:
        try:
            version = registry.rollback(client, name)
        except LookupError as exc:
            raise UserError(str(exc)) from None
        print(f"{name}: rolled back, version {version} is the champion of {args.series_set.key}")


def describe(client, question: str) -> str:
    """A question's series sets, each with its registered versions, one line each: version,
    run, served model, aliases and, for a champion the stream has judged, its last live loss
    ratio against the reference baseline (the live skill watch's MLflow metric).

    Args:
        client: an MlflowClient (finstream.stores.registry.client).
        question: the question's name.

    Returns:
        Lines of text; a single line saying how to train the question when it has no version.
    """
    names = registry.registered_models(client, question)
    if not names:
        return (f"{question}: no version registered (train it: ./spark-submit.sh jobs/train.py --questions {question});"
                f" its reference baseline serves every series")
    lines = [f"{question}:"]
    for name in names:
        versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
        aliases_of: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases_of.setdefault(str(version), []).append(alias)
        current = registry.champion(client, name)
        served_set = registry.series_set_of(client, name, current or versions[-1]) if versions else None
        lines.append(f"  {served_set.key if served_set else '?'}: {name}")
        for version in versions:
            aliases = sorted(aliases_of.get(str(version.version), []))
            served = client.get_run(version.run_id).data.params.get("served", "?") if version.run_id else "?"
            live = ""
            if registry.CHAMPION in aliases and version.run_id:
                history = client.get_metric_history(version.run_id, f"live.{question}.loss_ratio")
                if history:
                    live = f"  live loss ratio {history[-1].value:.3f}"
            lines.append(f"    version {version.version}  run {version.run_id}  serves {served}"
                         f"{'  [' + ','.join(aliases) + ']' if aliases else ''}{live}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))
