"""MLflow: where training runs are tracked and models registered, and how the stream learns
which version to serve.

- Tracking: `MLFLOW_TRACKING_URI`, or (empty, the default) an embedded store with no server
  to run: a SQLite file and an artifact folder under `.local/mlflow/`.
- Registry: one registered model per question, `finstream-<question>`. A version carries the
  MLlib model (`model/`, the `mlflow.spark` flavour) and what the stream serves
  (`serving/scorer.json`, `serving/metadata.json`). The alias `champion` is the version the
  stream serves; `challenger` the newest version that did not take its place.
- Serving: the stream job's driver follows each champion alias (ChampionMirror) and installs
  the version it names into MODEL_DIR (finstream.modelstore), where every Python worker reads
  it: only the driver has to reach the tracking server and the artifact store.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from pathlib import Path

from finstream import modelstore
from finstream.config import Settings, local_dir
from finstream.errors import UserError
from finstream.retry import first_line

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
SERVING = "serving"  # the run's artifact folder the stream serves from
HISTORY_TAG = "finstream.champion_history"  # the versions that were champion, oldest first
EXPERIMENT = "finstream"


def model_name(question: str) -> str:
    return f"finstream-{question}"


def tracking_uri(settings: Settings) -> str:
    return settings.mlflow_tracking_uri or f"sqlite:///{local_dir() / 'mlflow' / 'mlflow.db'}"


def client(settings: Settings):
    """An MlflowClient on the configured store (created on first use when embedded)."""
    from mlflow import MlflowClient  # a second to import: only the commands that use it pay

    uri = tracking_uri(settings)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # Creating a store runs MLflow's schema migrations, whose alembic logging setup replaces the
    # root logger's handlers and level (our INFO lines would vanish): put them back.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        mlflow_client = MlflowClient(uri, uri)
        mlflow_client.search_registered_models(max_results=1)  # the registry's store, now
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return mlflow_client


def require_store(settings: Settings) -> None:
    """Raises a UserError (one line) when the tracking store cannot be reached or written."""
    try:
        experiment_id(client(settings), settings)
    except Exception as exc:  # noqa: BLE001 - whatever the store says, the user's line is the same
        raise UserError(f"cannot use the MLflow tracking store at {tracking_uri(settings)} "
                        f"({first_line(exc)[:200]}): set MLFLOW_TRACKING_URI to a reachable server, or "
                        "leave it empty for the embedded store under .local/mlflow") from None


def experiment_id(mlflow_client, settings: Settings) -> str:
    found = mlflow_client.get_experiment_by_name(EXPERIMENT)
    if found:
        return found.experiment_id
    return mlflow_client.create_experiment(EXPERIMENT, artifact_location=artifact_location(settings))


def artifact_location(settings: Settings) -> str | None:
    """A SQLite store keeps its artifacts in a folder beside it; a server decides its own."""
    uri = tracking_uri(settings)
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return None


def champion(mlflow_client, question: str):
    """The champion ModelVersion of the question, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(model_name(question), CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def register(mlflow_client, question: str, run_id: str, source: str, passed: bool) -> tuple[str, str]:
    """Registers the run's model as a new version of finstream-<question>: the champion when it
    passed the selection rules or the question has none yet, else the challenger. Returns
    (version, alias)."""
    from mlflow.exceptions import MlflowException

    name = model_name(question)
    try:
        mlflow_client.create_registered_model(name, description=f"finstream forecasts: {question}")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = str(mlflow_client.create_model_version(name, source, run_id=run_id).version)
    if passed or champion(mlflow_client, question) is None:
        set_champion(mlflow_client, question, version)
        return version, CHAMPION
    mlflow_client.set_registered_model_alias(name, CHALLENGER, version)
    return version, CHALLENGER


def _history(mlflow_client, question: str) -> list[str]:
    tags = mlflow_client.get_registered_model(model_name(question)).tags
    return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]


def set_champion(mlflow_client, question: str, version: str) -> None:
    """Points the champion alias at `version`, remembering it for a rollback."""
    name, version = model_name(question), str(version)
    mlflow_client.get_model_version(name, version)  # raises if there is no such version
    history = [v for v in _history(mlflow_client, question) if v != version] + [version]
    mlflow_client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history[-50:]))
    mlflow_client.set_registered_model_alias(name, CHAMPION, version)


def rollback(mlflow_client, question: str) -> str:
    """Moves the champion back to the version that held it before; returns that version."""
    history = _history(mlflow_client, question)
    if len(history) < 2:
        raise LookupError(f"{model_name(question)} has no earlier champion to roll back to")
    name = model_name(question)
    mlflow_client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history[:-1]))
    mlflow_client.set_registered_model_alias(name, CHAMPION, history[-2])
    return history[-2]


def metric_logger(settings: Settings):
    """log_metric(run_id, key, value, step) on the configured store, connecting on first use."""
    clients: list = []

    def log_metric(run_id: str, key: str, value: float, step: int) -> None:
        if not clients:
            clients.append(client(settings))
        clients[0].log_metric(run_id, key, value, step=step)
    return log_metric


class ChampionMirror:
    """Runs in the stream job's driver: installs each question's champion into MODEL_DIR when
    the alias moves (checked every `poll_seconds`), so the next micro-batch serves it without a
    restart. A version that cannot serve (unreadable, other features than this code computes)
    is refused once, with an error naming it, and the one installed before keeps serving. A
    registry that cannot be reached is said once and retried; serving goes on meanwhile."""

    def __init__(self, settings: Settings, questions: tuple[str, ...], poll_seconds: float | None = None) -> None:
        self.settings, self.questions = settings, questions
        self.poll_seconds = settings.model_poll_seconds if poll_seconds is None else poll_seconds
        self.installed: dict[str, str] = {}
        self.refused: dict[str, str] = {}
        self._client = None
        self._unreachable = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="champion-mirror", daemon=True)

    def sync(self) -> None:
        """One look at every champion alias."""
        try:
            self._client = self._client or client(self.settings)
            for question in self.questions:
                self._follow(question)
        except Exception as exc:  # noqa: BLE001 - the registry down must not stop the stream
            if not self._unreachable:
                log.warning("cannot read the model registry at %s (%s): serving what is installed; retrying every "
                            "%g s", tracking_uri(self.settings), first_line(exc)[:200], self.poll_seconds)
            self._unreachable = True
            return
        if self._unreachable:
            log.info("the model registry answers again")
        self._unreachable = False

    def _follow(self, question: str) -> None:
        current = champion(self._client, question)
        version = str(current.version) if current else None
        if version is None or version in (self.installed.get(question), self.refused.get(question)):
            return
        model_dir = self.settings.model_path
        model_dir.mkdir(parents=True, exist_ok=True)
        name = f"{model_name(question)} version {version}"
        with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
            try:
                files = Path(self._client.download_artifacts(current.run_id, SERVING, tmp))
                served = modelstore.install(model_dir, question, version,
                                            json.loads((files / modelstore.SCORER).read_text()),
                                            json.loads((files / modelstore.METADATA).read_text()))
            except Exception as exc:  # noqa: BLE001 - a bad version must not stop the stream
                self.refused[question] = version
                before = self.installed.get(question) or modelstore.installed_version(model_dir, question)
                log.error("cannot serve %s (%s); %s", name, first_line(exc),
                          f"still serving version {before}" if before else "no predictions for it until one loads")
                return
        self.installed[question] = version
        log.info("champion %s (run %s) installed: %s serves %s from the next micro-batch", name, current.run_id,
                 question, served.kind)

    def start(self) -> "ChampionMirror":
        self.sync()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.sync()
