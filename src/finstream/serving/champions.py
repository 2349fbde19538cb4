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
            self._client = self._client or registry.client(self.settings)
            for question in self.questions:
                self._follow(question)
        except Exception as exc:  # noqa: BLE001 - the registry down must not stop the stream
            if not self._unreachable:
                log.warning("cannot read the model registry at %s (%s): serving what is installed; retrying every "
                            "%g s", registry.tracking_uri(self.settings), first_line(exc)[:200], self.poll_seconds)
            self._unreachable = True
            return
        if self._unreachable:
            log.info("the model registry answers again")
        self._unreachable = False

    def _follow(self, question: str) -> None:
        current = registry.champion(self._client, question)
        version = str(current.version) if current else None
        if version is None or version in (self.installed.get(question), self.refused.get(question)):
            return
        model_dir = self.settings.model_path
        model_dir.mkdir(parents=True, exist_ok=True)
        name = f"{registry.model_name(question)} version {version}"
        with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
            try:
                files = Path(self._client.download_artifacts(current.run_id, registry.SERVING, tmp))
                served = installed.install(model_dir, question, version,
                                            json.loads((files / installed.SCORER).read_text()),
                                            json.loads((files / installed.METADATA).read_text()))
            except Exception as exc:  # noqa: BLE001 - a bad version must not stop the stream
                self.refused[question] = version
                before = self.installed.get(question) or installed.installed_version(model_dir, question)
                log.error("cannot serve %s (%s); %s", name, first_line(exc),
                          f"still serving version {before}" if before else "no predictions for it until one loads")
                return
        self.installed[question] = version
        log.info("champion %s (run %s) installed: %s serves %s from the next micro-batch", name, current.run_id,
                 question, served.kind)

    def start(self) -> "ChampionMirror":
        """One sync now, then one every poll_seconds in a daemon thread."""
        self.sync()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops the polling thread (waits up to 10 s)."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.sync()
