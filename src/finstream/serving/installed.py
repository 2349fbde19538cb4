"""The served models, installed where every Python worker of the stream reads them:
MODEL_DIR/<question>/<version>/{scorer.json, metadata.json} (a registered version's serving
artifacts, finstream.stores.registry) and a CHAMPION file naming the installed version, replaced
atomically so a reader never sees half of it. The stream driver's ChampionMirror installs a
version when the registry's champion alias moves; `scorer.json` is the model as plain-Python
parameters (finstream.serving.scorers), which is what the stream serves."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from finstream.core.errors import UserError
from finstream.core.questions import Question, registered_model_name
from finstream.serving.forecasters import Forecaster, forecaster

log = logging.getLogger(__name__)

POINTER = "CHAMPION"
SCORER = "scorer.json"
METADATA = "metadata.json"


class ModelDirUnwritable(UserError):
    """MODEL_DIR cannot be written: the stream could not install a champion there."""


def require_writable(model_dir: Path) -> None:
    """Raises ModelDirUnwritable before anything else if a model could not be installed there."""
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        probe = model_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ModelDirUnwritable(f"cannot write models to {model_dir} ({exc.strerror}): set MODEL_DIR to a "
                                 "writable folder") from None


def version_dir(model_dir: Path, question: str, version: str) -> Path:
    """MODEL_DIR/<question>/<version>: an installed version's serving files."""
    return model_dir / question / version


def install(model_dir: Path, question: str, version: str, scorer: dict, metadata: dict) -> ServedModel:
    """Writes a version's serving files, checks that this code can serve it (raises if not:
    nothing then changes for the readers), and points CHAMPION at it."""
    folder = version_dir(model_dir, question, version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SCORER).write_text(json.dumps(scorer))
    (folder / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True))
    served = load_served(model_dir, question, version)
    pointer = model_dir / question / POINTER
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(version + "\n")
    os.replace(tmp, pointer)
    return served


def installed_version(model_dir: Path, question: str) -> str | None:
    """The version CHAMPION names for a question, or None when none is installed."""
    pointer = model_dir / question / POINTER
    return pointer.read_text().strip() if pointer.exists() else None


@dataclass(frozen=True)
class ServedModel:
    """An installed version as the state step serves it: its forecaster and the series it covers."""

    version: str  # the registered model and its version: finstream-lags/3
    kind: str  # the model kind or naive baseline serving the question
    forecaster: Forecaster
    timespan: str
    multiplier: int
    tickers: frozenset[str]  # empty: every ticker of the timespan
    reason: str = ""  # why the training run serves this model or baseline
    run_id: str = ""  # the MLflow run that trained it

    @property
    def question(self) -> Question:
        """The question it answers (finstream.core.questions)."""
        return self.forecaster.question

    def covers(self, ticker: str, timespan: str, multiplier: int) -> bool:
        """Whether this model was trained for the series."""
        return (timespan == self.timespan and multiplier == self.multiplier
                and (not self.tickers or ticker in self.tickers))


def load_served(model_dir: Path, question: str, version: str) -> ServedModel:
    """An installed version, ready to score; raises if it cannot serve this code's features."""
    folder = version_dir(model_dir, question, version)
    metadata = json.loads((folder / METADATA).read_text())
    path = folder / SCORER
    if not path.exists():
        raise ValueError(f"it has no {SCORER} (trained by an older version): retrain it")
    served = forecaster(json.loads(path.read_text()))
    if served.question.name != question:
        raise ValueError(f"its {SCORER} serves {served.question.name!r}, not {question!r}")
    series = metadata["series"]
    return ServedModel(f"{registered_model_name(question)}/{version}", served.served, served, series["timespan"],
                       int(series["multiplier"]), frozenset(series.get("tickers") or ()),
                       metadata.get("served_reason", ""), metadata.get("mlflow_run_id", ""))


class ServedModels:
    """Follows MODEL_DIR/<question>/CHAMPION: a version the mirror installs serves from the
    next look on, without a restart. A version that cannot serve is refused once and the
    previous one keeps serving. Cheap enough to ask for every series of every micro-batch:
    CHAMPION is re-read only when its file changes."""

    def __init__(self, model_dir: Path, question: str, *, report: bool = True) -> None:
        self.pointer = model_dir / question / POINTER
        self.model_dir, self.question, self.report = model_dir, question, report
        self._served: ServedModel | None = None
        self._seen: tuple | None = None  # the pointer file's identity when last read
        self._tried: str | None = None

    def current(self) -> ServedModel | None:
        """The version serving now (re-read when CHAMPION changed), or None before any loads."""
        try:
            stat = self.pointer.stat()
        except FileNotFoundError:
            return self._served
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            self._seen = seen
            version = self.pointer.read_text().strip()
            if version != self._tried:
                self._tried = version
                self._load(version)
        return self._served

    def _load(self, version: str) -> None:
        try:
            self._served = load_served(self.model_dir, self.question, version)
        except Exception as exc:  # noqa: BLE001 - a bad model must not stop the stream
            if self.report:
                outcome = f"still serving {self._served.version}" if self._served else "no predictions until one loads"
                log.error("cannot serve %s model %s (%s); %s", self.question, version, str(exc).splitlines()[0][:300],
                          outcome)
            return
        if self.report:
            served = self._served
            log.info("serving %s (%s) for %s bars x%d%s%s", served.version, served.kind, served.timespan,
                     served.multiplier, f" of {', '.join(sorted(served.tickers))}" if served.tickers else "",
                     f": {served.reason}" if served.reason else "")


class ServedForecasts:
    """ServedModels for each forecasting question the stream serves; says once when none of
    them has a model yet."""

    def __init__(self, model_dir: Path, questions: tuple[str, ...], *, report: bool = True) -> None:
        self.model_dir, self.report = model_dir, report
        self.models = {q: ServedModels(model_dir, q, report=report) for q in questions}
        self._warned = False

    def current(self) -> dict[str, ServedModel]:
        """Question -> the version serving it now; questions without one are left out."""
        served = {q: m.current() for q, m in self.models.items()}
        if self.report and not self._warned and not any(served.values()):
            log.warning("no champion model for %s yet: bars are indexed but not predicted; run jobs/train.py and "
                        "predictions start with the next micro-batch", ",".join(self.models))
            self._warned = True
        return {q: m for q, m in served.items() if m is not None}
