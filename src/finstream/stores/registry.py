"""MLflow: where training runs are tracked and models registered, and how the stream learns
which version to serve.

- Tracking: `MLFLOW_TRACKING_URI`, or (empty, the default) an embedded store with no server
  to run: a SQLite file and an artifact folder under `.local/mlflow/`.
- Registry: one registered model per question and series set, `finstream-<question>-<set key>`
  (finstream.core.series_sets): MLflow's aliases are per registered model, so each set has its
  own `champion` and `challenger`, and promoting one set's version cannot change what another
  set is served. A registry made before sets has one model per question, `finstream-<question>`;
  its champion is read as the set its run trained on. A version carries the
  MLlib model (`model/`, the `mlflow.spark` flavour) and what the stream serves
  (`serving/scorer.json`, `serving/metadata.json`). The alias `champion` is the version the
  stream serves; `challenger` the newest version that did not take its place.
- Serving: the stream job's driver follows each champion alias (finstream.serving.champions) and installs
  the version it names into MODEL_DIR (finstream.serving.installed), where every Python worker reads
  it: only the driver has to reach the tracking server and the artifact store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from finstream.core import locks
from finstream.core.config import Settings, local_dir
from finstream.core.errors import UserError, hide_credentials
from finstream.core.questions import registered_model_name as model_name  # the registry's name for it
from finstream.core.retry import first_line
from finstream.core.series_sets import SeriesSet

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
SERVING = "serving"  # the run's artifact folder the stream serves from
HISTORY_TAG = "finstream.champion_history"  # the versions that were champion, oldest first
EXPERIMENT = "finstream"


def tracking_uri(settings: Settings) -> str:
    """MLFLOW_TRACKING_URI, or (empty) the embedded SQLite store's URI under .local/mlflow/."""
    return settings.mlflow_tracking_uri or f"sqlite:///{local_dir() / 'mlflow' / 'mlflow.db'}"


def may_migrate(settings: Settings) -> bool:
    """Whether opening the store may run MLflow's schema migrations: the embedded SQLite file not
    made yet, or any other database URI. (A tracking server, an existing SQLite file or a file
    store: no.) The migrations' alembic set-up takes over the process's logging while it runs."""
    uri = tracking_uri(settings)
    path = sqlite_path(uri)
    if path is not None:  # an empty file (made by hand, or by a store that failed) gets the schema too
        return not path.exists() or (path.is_file() and path.stat().st_size == 0)
    return not uri.startswith(("http://", "https://", "file:", "databricks")) and "://" in uri


def client(settings: Settings):
    """An MlflowClient on the configured store (created on first use when embedded).

    It has already queried the registry, so an unreachable store fails here, with MLflow's error.
    """
    from mlflow import MlflowClient  # a second to import: only the commands that use it pay

    uri = tracking_uri(settings)
    with _one_opener(uri):
        # Creating a store runs MLflow's schema migrations, whose alembic logging setup replaces
        # the root logger's handlers and level (our INFO lines would vanish) and prints some 40
        # lines of migration steps: silence those while it runs, and put the handlers back.
        migrating = may_migrate(settings)
        if migrating:
            if uri.startswith("sqlite:///"):  # made here, now (another database: made, or refused, by its server)
                log.info("creating the MLflow store at %s", uri)
            logging.disable(logging.INFO)
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        # MLflow makes its default artifact root, ./mlruns, in the working folder for a database
        # store, though this project's experiment keeps its artifacts elsewhere (artifact_location).
        stray = Path("mlruns")
        stray_before = stray.exists()
        # An existing store's schema check logs alembic's set-up at INFO (nine lines a command).
        logging.getLogger("alembic").setLevel(logging.WARNING)
        try:
            mlflow_client = MlflowClient(uri, uri)
            mlflow_client.search_registered_models(max_results=1)  # the registry's store, now
        finally:
            if not stray_before:
                with contextlib.suppress(OSError):  # not empty, or gone: not ours to remove
                    stray.rmdir()
            root.handlers[:] = handlers
            root.setLevel(level)
            logging.getLogger("alembic").setLevel(logging.WARNING)
            if migrating:
                logging.disable(logging.NOTSET)
    return mlflow_client


@contextlib.contextmanager
def _one_opener(uri: str) -> Iterator[None]:
    """For a SQLite store (the embedded one): one process at a time opens it, holding an
    exclusive lock on `<file>.lock` beside it. Two commands started at once on a new store (the
    stream job and a training, two trainings) would otherwise both run MLflow's migrations, and
    could leave the file half-made for good ("table params already exists"). Other stores'
    servers and databases order their own creation."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    try:
        # Read-write where it can (flock over NFS needs a file open for writing), else read-only
        # (a store folder of another user: flock needs no write access on a local disk).
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        try:
            descriptor = os.open(lock_path, os.O_RDONLY)
        except OSError:
            if lock_path.exists() or not path.exists():
                raise
            yield  # a store this user may read but not change: nothing to create, nothing to lock
            return
    try:
        if not locks.acquire(descriptor, LOCK_SECONDS):
            raise TimeoutError(f"another process has held {lock_path} for {LOCK_SECONDS} s while "
                               "opening the store: stop it")
        yield
    finally:
        os.close(descriptor)  # releases the lock


LOCK_SECONDS = 120  # creating a store takes seconds; a holder this long has hung


def sqlite_path(uri: str) -> Path | None:
    """The file of a sqlite:/// tracking URI (its query, ?mode=ro, left out), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def require_store(settings: Settings, timeout: int = 10) -> None:
    """Checks that the tracking store can be reached and written, before a command uses it.
    MLflow's HTTP client is asked once, waiting at most `timeout` seconds for an answer: its
    own retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES, 7 with back-off) made a wrong address, a
    certificate it does not trust or a server answering 503 take about four minutes to report.
    The commands' later requests keep MLflow's retries.

    Raises:
        UserError: one line naming the store (its password hidden) and the reason, saying to
            set MLFLOW_TRACKING_URI to a reachable server or leave it empty for the embedded store.
    """
    require_file_store(settings)
    _require_database(settings)
    try:
        with _environment(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(timeout)):
            experiment_id(client(settings), settings)
    except Exception as exc:  # noqa: BLE001 - whatever the store says, the user's line is the same
        raise UserError(f"cannot use the MLflow tracking store at {shown_uri(settings)} ({_reason(exc)}): "
                        "set MLFLOW_TRACKING_URI to a reachable server, or leave it empty for the embedded store "
                        "under .local/mlflow") from None


def file_store_path(uri: str) -> Path | None:
    """The folder of a `file:` tracking URI (MLflow's own reading of it), else None."""
    if not uri.startswith("file:"):
        return None
    from mlflow.utils.file_utils import local_file_uri_to_path

    return Path(local_file_uri_to_path(uri))


# What a folder may hold besides a file store's own: a file system's and a desktop's.
_NOT_THE_USERS = {"lost+found", ".DS_Store"}


def require_file_store(settings: Settings) -> None:
    """For a `file:` store: a file, or a folder holding other files and nothing of MLflow's, is
    refused. MLflow would log a traceback for each folder it takes for a broken experiment and
    make its own folders (.trash, models, an experiment) among the user's files. So is a `~`,
    which MLflow does not expand: it would make a folder named `~`.

    Raises:
        UserError: the store's URI, what is there and what to do.
    """
    uri = tracking_uri(settings)
    root = file_store_path(uri)
    if root is None:
        return
    if str(root).startswith("~") or uri.removeprefix("file:").lstrip("/").startswith("~"):
        raise UserError(f"MLFLOW_TRACKING_URI {shown_uri(settings)} starts with ~, which MLflow does not expand: "
                        "write the home folder out, e.g. file:///home/me/mlruns")
    try:
        if not os.path.lexists(root):
            return
        if not root.is_dir():
            raise UserError(f"MLFLOW_TRACKING_URI {shown_uri(settings)} names {root}, which is not a folder: name "
                            "a folder for MLflow's file store, or leave it empty for the embedded store")
        entries = sorted(entry.name for entry in root.iterdir() if entry.name not in _NOT_THE_USERS)
        if entries and not _holds_a_file_store(root, entries):
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise UserError(f"MLFLOW_TRACKING_URI {shown_uri(settings)} names a folder holding other files ({shown}) "
                            "and no MLflow store: name a new or empty folder, or an MLflow file store")
    except OSError:
        return  # a folder this user cannot read: MLflow's own error then says so


def _holds_a_file_store(root: Path, entries: list[str]) -> bool:
    """Whether `root` holds what MLflow's file stores make: .trash, an experiment (<id>/meta.yaml),
    or a registry (models/, empty or of <name>/meta.yaml). Not another `models` folder, such as
    MODEL_DIR's (OSError: a folder this user cannot read)."""
    if ".trash" in entries or any((root / name / "meta.yaml").is_file() for name in entries):
        return True
    models = root / "models"
    if "models" not in entries or not models.is_dir():
        return False
    names = list(models.iterdir())
    return not names or any((entry / "meta.yaml").is_file() for entry in names)


# The PyPI package of each module SQLAlchemy's usual dialects import.
_DRIVER_PACKAGES = {"psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient", "pymysql": "PyMySQL",
                    "pymssql": "pymssql", "pyodbc": "pyodbc", "oracledb": "oracledb", "cx_Oracle": "oracledb"}


def _require_database(settings: Settings) -> None:
    """For a database store: one connection, before MLflow's, whose engine retries a refused one
    nine times with back-off (about 100 s) whatever the reason. A SQLite URI naming a folder, a
    database that refuses or a driver not installed is then reported at once.

    Raises:
        UserError: the store's URI (password hidden), the reason and what to do.
    """
    uri = tracking_uri(settings)
    path = sqlite_path(uri)
    if path is not None:
        existing = next((parent for parent in path.parents if parent.exists()), None)  # None: path is /
        if existing is not None and not existing.is_dir():
            raise UserError(f"MLFLOW_TRACKING_URI {shown_uri(settings)} names a path through {existing}, a file: name "
                            "a database file in a folder")
        if path.is_dir():
            raise UserError(f"MLFLOW_TRACKING_URI {shown_uri(settings)} names a folder: name the database file in "
                            f"it, e.g. sqlite:///{path / 'mlflow.db'}")
        if not path.exists():
            return  # made by client(), under its lock
    elif not may_migrate(settings):
        return  # a tracking server, a file store, databricks: no database of ours to connect to
    import sqlalchemy  # MLflow's own dependency

    try:
        engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    except ImportError as exc:  # the dialect's driver (psycopg2, MySQLdb ...)
        package = _DRIVER_PACKAGES.get(exc.name or "", exc.name)
        raise UserError(f"cannot use the MLflow tracking store at {shown_uri(settings)}: its database driver is not "
                        f"installed ({exc}): pip install {package} into this environment, or leave "
                        "MLFLOW_TRACKING_URI empty for the embedded store") from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's ArgumentError and the like: a URI it cannot read
        raise UserError(f"MLFLOW_TRACKING_URI {shown_uri(settings)} is not a database URI SQLAlchemy reads "
                        f"({hide_credentials(first_line(exc))[:200]}): see docs/configuration.md") from None
    try:
        sqlalchemy.inspect(engine).get_table_names()  # reads the schema: a file that is no database fails
    except Exception as exc:  # noqa: BLE001 - every driver has its own errors
        raise UserError(f"cannot use the MLflow tracking store at {shown_uri(settings)} ({_reason(exc)}): set "
                        "MLFLOW_TRACKING_URI to a reachable database, or leave it empty for the embedded store "
                        "under .local/mlflow") from None
    finally:
        engine.dispose()


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Environment variables set while the block runs (MLflow reads its HTTP settings from the
    environment on each request), then put back as they were. One block at a time in a process;
    meant for a command's checks before it starts its work (other threads' requests meanwhile
    would see the values too)."""
    with _ENVIRONMENT_LOCK:
        saved = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


_ENVIRONMENT_LOCK = threading.Lock()


# The part of an error from MLflow's HTTP client (requests, urllib3) that says what went wrong.
_REASONS = (r"\[Errno -?\d+\][^'\")\]]*", r"\[SSL: [A-Z_]+\][^'\")\]]*", r"too many \d{3} error responses",
            r"Remote end closed connection without response", r"Read timed out", r"Connection reset by peer")


def _reason(exc: BaseException) -> str:
    """What went wrong, from MLflow's error: the system's or TLS's reason, or the HTTP status,
    else its first line; credentials hidden."""
    if isinstance(exc, OSError) and exc.filename:  # the store's own file or folder
        return f"[Errno {exc.errno}] {exc.strerror}: {exc.filename}"
    text = hide_credentials(str(exc))
    for pattern in _REASONS:
        found = re.search(pattern, text)
        if found:
            return found.group(0).strip()
    return hide_credentials(first_line(exc))[:200]


def shown_uri(settings: Settings) -> str:
    """The tracking URI as messages and logs show it: credentials in it
    (postgresql://user:password@db/mlflow, https://user:password@host, ?token=...) as ***."""
    return hide_credentials(tracking_uri(settings))


def experiment_id(mlflow_client, settings: Settings) -> str:
    """The id of the project's experiment (EXPERIMENT), created on first use.

    Args:
        mlflow_client: an MlflowClient (client()).
        settings: where a new experiment keeps its artifacts (artifact_location).
    """
    from mlflow.exceptions import MlflowException

    found = mlflow_client.get_experiment_by_name(EXPERIMENT)
    if found:
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(EXPERIMENT, artifact_location=artifact_location(settings))
    except MlflowException:
        # Another command made it since the lookup? (A SQLite store reports that as a
        # BAD_REQUEST, not RESOURCE_ALREADY_EXISTS, when an artifact location is given.)
        found = mlflow_client.get_experiment_by_name(EXPERIMENT)
        if found is None:
            raise
        return found.experiment_id


def artifact_location(settings: Settings) -> str | None:
    """A SQLite store keeps its artifacts in a folder beside it; a server decides its own."""
    uri = tracking_uri(settings)
    if uri.startswith("sqlite:///"):
        return (sqlite_path(uri).parent.resolve() / "artifacts").as_uri()  # a relative path: from here
    return None


def registered_models(mlflow_client, question: str) -> list[str]:
    """The names of every registered model of a question, sorted: one per series set
    (finstream-<question>-<set key>), and finstream-<question> if the registry was made
    before series sets."""
    legacy = model_name(question)
    found = mlflow_client.search_registered_models(filter_string=f"name LIKE '{legacy}%'")
    return sorted(m.name for m in found if m.name == legacy or m.name.startswith(f"{legacy}-"))


def series_set_of(mlflow_client, name: str, version) -> SeriesSet:
    """The series set a registered version was trained for, from its run's parameters (a
    version registered before series sets: its timespan, multiplier and listed tickers)."""
    params = mlflow_client.get_run(version.run_id).data.params if version.run_id else {}
    if params.get("series_set"):
        return SeriesSet.parse(params["series_set"])
    tickers = params.get("tickers", "all")
    return SeriesSet(params.get("timespan", "day"), int(params.get("multiplier", 1)),
                     tickers=frozenset() if tickers == "all" else frozenset(tickers.split(",")))


def champion(mlflow_client, name: str):
    """The champion ModelVersion of a registered model, or None (no such model, or no champion).

    Raises:
        mlflow.exceptions.MlflowException: any other error of the store, unchanged.
    """
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def resolve(mlflow_client, question: str, series_set: SeriesSet) -> str:
    """The registered model serving a question for a set: finstream-<question>-<set key>, or
    the question's one model of a registry made before sets, if its champion is for that set.

    Raises:
        LookupError: neither exists (the message names the sets there are).
    """
    names = registered_models(mlflow_client, question)
    wanted = model_name(question, series_set)
    if wanted in names:
        return wanted
    legacy = model_name(question)
    if legacy in names:
        current = champion(mlflow_client, legacy)
        if current is not None and series_set_of(mlflow_client, legacy, current) == series_set:
            return legacy
    there = ", ".join(names) or "none"
    raise LookupError(f"no registered model of {question} for the series set {series_set.key} (there are: {there})")


def register(mlflow_client, name: str, run_id: str, source: str, passed: bool) -> tuple[str, str]:
    """Registers the run's model as a new version of the registered model `name`
    (finstream-<question>-<set key>).

    The version becomes the champion when it passed the selection rules or the model has
    none yet, else the challenger. Another set's model is never touched.

    Args:
        mlflow_client: an MlflowClient.
        name: the registered model (finstream.core.questions.registered_model_name).
        run_id: the MLflow run that trained the model.
        source: the model's artifact URI.
        passed: whether it passed the selection rules.

    Returns:
        (the new version, the alias it was given: CHAMPION or CHALLENGER).
    """
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.create_registered_model(name, description=f"finstream forecasts: {name}")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = str(mlflow_client.create_model_version(name, source, run_id=run_id).version)
    if passed or champion(mlflow_client, name) is None:
        set_champion(mlflow_client, name, version)
        return version, CHAMPION
    mlflow_client.set_registered_model_alias(name, CHALLENGER, version)
    return version, CHALLENGER


def _history(mlflow_client, name: str) -> list[str]:
    tags = mlflow_client.get_registered_model(name).tags
    return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]


def set_champion(mlflow_client, name: str, version: str) -> None:
    """Points the registered model's champion alias at `version`, remembering it for a rollback.

    Raises:
        mlflow.exceptions.MlflowException: the model has no such version.
    """
    version = str(version)
    mlflow_client.get_model_version(name, version)  # raises if there is no such version
    history = [v for v in _history(mlflow_client, name) if v != version] + [version]
    mlflow_client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history[-50:]))
    mlflow_client.set_registered_model_alias(name, CHAMPION, version)


def rollback(mlflow_client, name: str) -> str:
    """Moves the registered model's champion alias back to the version that held it before;
    returns that version.

    Raises:
        LookupError: the model has had no earlier champion (the message says so).
    """
    history = _history(mlflow_client, name)
    if len(history) < 2:
        raise LookupError(f"{name} has no earlier champion to roll back to")
    mlflow_client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history[:-1]))
    mlflow_client.set_registered_model_alias(name, CHAMPION, history[-2])
    return history[-2]


def metric_logger(settings: Settings):
    """A function log_metric(run_id, key, value, step) on the configured store, connecting on first use."""
    clients: list = []

    def log_metric(run_id: str, key: str, value: float, step: int) -> None:
        if not clients:
            clients.append(client(settings))
        clients[0].log_metric(run_id, key, value, step=step)
    return log_metric
