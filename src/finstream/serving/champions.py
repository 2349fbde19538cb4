"""The champion mirror, in the stream job's driver: the registry's champion of each served
question, installed into MODEL_DIR (finstream.serving.installed) for the Python workers."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from pathlib import Path

from finstream.core.config import Settings
from finstream.core.retry import first_line
from finstream.serving import installed
from finstream.stores import registry

log = logging.getLogger(__name__)


class ChampionMirror:
    """Runs in the stream job's driver: installs the champion of every registered model of each
    question (one per series set, finstream.stores.registry) into MODEL_DIR when its alias
    moves (checked every `poll_seconds`), so the next micro-batch serves it without a restart.
    A version that cannot serve (unreadable, other features than this code computes) is
    refused once, with an error naming it, and the one installed before keeps serving. A
    registry that cannot be reached is said once and retried; serving goes on meanwhile. A
    registry made before series sets (finstream-<question>) is served as the set its champion
    was trained for, unless a model registered for that set exists."""

    def __init__(self, settings: Settings, questions: tuple[str, ...], poll_seconds: float | None = None) -> None:
        self.settings, self.questions = settings, questions
        self.poll_seconds = settings.model_poll_seconds if poll_seconds is None else poll_seconds
        self.installed: dict[str, str] = {}  # registered model -> the version installed
        self.refused: dict[str, str] = {}  # registered model -> the version refused
        self.superseded: dict[str, str] = {}  # a registry made before sets -> the version a set's model replaces
        self._client = None
        self._unreachable = False
        self._stop = threading.Event()
        self._synced = threading.Event()  # the first sync is done
        self._thread = threading.Thread(target=self._run, name="champion-mirror", daemon=True)

    def sync(self) -> None:
        """One look at every champion alias."""
        try:
            self._client = self._client or registry.client(self.settings)
            for question in self.questions:
                names = registry.registered_models(self._client, question)
                legacy = registry.model_name(question)
                for name in sorted(names, key=lambda n: n == legacy, reverse=True):  # legacy first: sets win
                    self._follow(question, name)
        except Exception as exc:  # noqa: BLE001 - the registry down must not stop the stream
            if not self._unreachable:
                log.warning("cannot read the model registry at %s (%s): serving what is installed; retrying every "
                            "%g s", registry.tracking_uri(self.settings), first_line(exc)[:200], self.poll_seconds)
            self._unreachable = True
            return
        if self._unreachable:
            log.info("the model registry answers again")
        self._unreachable = False

    def _follow(self, question: str, name: str) -> None:
        current = registry.champion(self._client, name)
        version = str(current.version) if current else None
        if version is None or version in (self.installed.get(name), self.refused.get(name),
                                          self.superseded.get(name)):
            return
        model_dir = self.settings.model_path
        model_dir.mkdir(parents=True, exist_ok=True)
        label = f"{name} version {version}"
        with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
            try:
                files = Path(self._client.download_artifacts(current.run_id, registry.SERVING, tmp))
                metadata = {**json.loads((files / installed.METADATA).read_text()), "registered_model": name}
                served_set = installed.series_set(metadata)
                if name == registry.model_name(question) and registry.model_name(question, served_set) in \
                        registry.registered_models(self._client, question):
                    self.superseded[name] = version  # a registry made before sets: its set has its own model
                    return
                served = installed.install(model_dir, question, version,
                                           json.loads((files / installed.SCORER).read_text()), metadata)
            except Exception as exc:  # noqa: BLE001 - a bad version must not stop the stream
                self.refused[name] = version
                log.error("cannot serve %s (%s); %s", label, first_line(exc),
                          f"still serving version {self.installed[name]}" if name in self.installed
                          else "its series set is served as before until one loads")
                return
        self.installed[name] = version
        log.info("champion %s (run %s) installed: %s for the series set %s serves %s from the next micro-batch",
                 label, current.run_id, question, served_set.key, served.kind)

    def start(self, *, wait: bool = True) -> "ChampionMirror":
        """Follows the registry: a first sync, then one every poll_seconds in a daemon thread.

        Args:
            wait: do the first sync before returning (True), or as the thread's first step, so
                that the caller does other work meanwhile (MLflow's import and the first look
                take about 2 s); `ready()` then waits for it. Keep True when opening the store
                may run MLflow's schema migrations (registry.may_migrate): they set up logging
                for the whole process while they run.
        """
        if wait:
            self._first_sync()
        self._thread.start()
        return self

    def ready(self, timeout: float | None = None) -> bool:
        """Waits until the first sync is done: the champions of that moment installed, or a
        version refused, or the registry found unreachable (each said in the log).

        Args:
            timeout: seconds to wait at most (None: until it is done).

        Returns:
            Whether the first sync is done.
        """
        return self._synced.wait(timeout)

    def stop(self) -> None:
        """Stops the polling thread (waits up to 10 s); a first sync not yet begun never runs."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _first_sync(self) -> None:
        try:
            self.sync()
        finally:  # ready() must never wait forever
            self._synced.set()

    def _run(self) -> None:
        if not self._synced.is_set():
            if self._stop.is_set():  # stopped before it began: the job is ending
                self._synced.set()
                return
            self._first_sync()
        while not self._stop.wait(self.poll_seconds):
            self.sync()
