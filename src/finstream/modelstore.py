"""Versioned models: MODEL_DIR/<question>/<version>/{model/, scorer.json, metadata.json}, and
a LATEST file naming the newest version (replaced atomically, so a reader never sees half of
it). `model/` is the MLlib PipelineModel; `scorer.json` the same model as plain-Python
parameters (finstream.scoring), which is what the stream serves."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from finstream.errors import UserError
from finstream.forecasts import Forecaster, forecaster

log = logging.getLogger(__name__)

LATEST = "LATEST"
SCORER = "scorer.json"
METADATA = "metadata.json"


def new_version(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")


class ModelDirUnwritable(UserError):
    pass


def require_writable(model_dir: Path) -> None:
    """Raises ModelDirUnwritable before any training if a model could not be saved there."""
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        probe = model_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ModelDirUnwritable(f"cannot write models to {model_dir} ({exc.strerror}): set MODEL_DIR to a "
                                 "writable folder") from None


def version_dir(model_dir: Path, question: str, version: str) -> Path:
    return model_dir / question / version


def publish(model_dir: Path, question: str, version: str, metadata: dict, scorer: dict | None = None) -> Path:
    """Writes the metadata (and the scorer) beside an already saved model, then points LATEST at it."""
    folder = version_dir(model_dir, question, version)
    if scorer is not None:
        (folder / SCORER).write_text(json.dumps(scorer))
    (folder / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True))
    pointer = model_dir / question / LATEST
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(version + "\n")
    os.replace(tmp, pointer)
    return folder


def latest_version(model_dir: Path, question: str) -> str | None:
    pointer = model_dir / question / LATEST
    return pointer.read_text().strip() if pointer.exists() else None


def earlier_versions(model_dir: Path, question: str, than: str) -> list[str]:
    """The question's other published versions, newest first (by when they were published)."""
    published = [p for p in (model_dir / question).glob(f"*/{METADATA}") if p.parent.name != than]
    return [p.parent.name for p in sorted(published, key=lambda p: p.stat().st_mtime_ns, reverse=True)]


def load_metadata(model_dir: Path, question: str, version: str) -> dict:
    return json.loads((version_dir(model_dir, question, version) / METADATA).read_text())


@dataclass(frozen=True)
class ServedModel:
    version: str
    kind: str  # the model kind or naive baseline serving the question
    forecaster: Forecaster
    timespan: str
    multiplier: int
    tickers: frozenset[str]  # empty: every ticker of the timespan
    reason: str = ""  # why the training run serves this model or baseline

    def covers(self, ticker: str, timespan: str, multiplier: int) -> bool:
        """Whether this model was trained for the series."""
        return (timespan == self.timespan and multiplier == self.multiplier
                and (not self.tickers or ticker in self.tickers))


def load_served(model_dir: Path, question: str, version: str) -> ServedModel:
    """A published version, ready to score; raises if it cannot serve this code's features."""
    metadata = load_metadata(model_dir, question, version)
    path = version_dir(model_dir, question, version) / SCORER
    if not path.exists():
        raise ValueError(f"it has no {SCORER} (trained by an older version): retrain it")
    served = forecaster(json.loads(path.read_text()))
    if served.question != question:
        raise ValueError(f"its {SCORER} serves {served.question!r}, not {question!r}")
    series = metadata["series"]
    return ServedModel(version, served.served, served, series["timespan"], int(series["multiplier"]),
                       frozenset(series.get("tickers") or ()), metadata.get("served_reason", ""))


class ServedModels:
    """Follows MODEL_DIR/<question>/LATEST: a version published by train.py serves from the
    next look on, without a restart. A version that cannot serve (unreadable, other features)
    is refused once, and the previous one keeps serving. Cheap enough to ask for every
    series of every micro-batch: LATEST is re-read only when its file changes."""

    def __init__(self, model_dir: Path, question: str, *, report: bool = True, warn_missing: bool = True) -> None:
        self.pointer = model_dir / question / LATEST
        self.model_dir, self.question, self.report = model_dir, question, report
        self.warn_missing = warn_missing
        self._served: ServedModel | None = None
        self._seen: tuple | None = None  # the pointer file's identity when last read
        self._tried: str | None = None
        self._warned = False

    def current(self) -> ServedModel | None:
        try:
            stat = self.pointer.stat()
        except FileNotFoundError:
            if self.report and self.warn_missing and not self._warned:
                log.warning("no model at %s yet: bars are indexed but not predicted; run jobs/train.py and "
                            "predictions start with the next micro-batch", self.pointer)
                self._warned = True
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
            if self._served:
                outcome = f"still serving {self._served.version}"
            else:  # a process that never loaded one (a restart, a new Python worker): the previous version
                self._served = self._first_loadable(earlier_versions(self.model_dir, self.question, version))
                outcome = (f"serving the previous version {self._served.version}" if self._served
                           else "no predictions until one loads")
            if self.report:
                log.error("cannot serve %s model %s (%s); %s", self.question, version, str(exc).splitlines()[0][:300],
                          outcome)
            return
        if self.report:
            served = self._served
            log.info("serving model %s for %s (%s) for %s bars x%d%s%s", version, self.question, served.kind,
                     served.timespan, served.multiplier,
                     f" of {', '.join(sorted(served.tickers))}" if served.tickers else "",
                     f": {served.reason}" if served.reason else "")


    def _first_loadable(self, versions: list[str]) -> ServedModel | None:
        for version in versions:
            try:
                return load_served(self.model_dir, self.question, version)
            except Exception:  # noqa: BLE001 - as broken as the newest: try the one before
                continue
        return None


class ServedForecasts:
    """ServedModels for each forecasting question the stream serves; says once when none of
    them has a model yet."""

    def __init__(self, model_dir: Path, questions: tuple[str, ...], *, report: bool = True) -> None:
        self.model_dir, self.report = model_dir, report
        self.models = {q: ServedModels(model_dir, q, report=report, warn_missing=False) for q in questions}
        self._warned = False

    def current(self) -> dict[str, ServedModel]:
        served = {q: m.current() for q, m in self.models.items()}
        if self.report and not self._warned and not any(served.values()):
            log.warning("no model at %s/{%s}/LATEST yet: bars are indexed but not predicted; run "
                        "jobs/train.py and predictions start with the next micro-batch",
                        self.model_dir, ",".join(self.models))
            self._warned = True
        return {q: m for q, m in served.items() if m is not None}
