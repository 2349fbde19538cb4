"""The served models, installed where every Python worker of the stream reads them:
MODEL_DIR/<question>/<set key>/<version>/{scorer.json, metadata.json} (a registered version's
serving artifacts, finstream.stores.registry) and, per question and series set
(finstream.core.series_sets), a CHAMPION file naming the installed version. Every file is
written whole under a name of its own and then renamed into place, so a reader never sees half
of one, even when two stream jobs share MODEL_DIR and install the same version at once. The
stream driver's ChampionMirror installs a version when a champion alias moves; `scorer.json`
is the model as plain-Python parameters (finstream.serving.scorers), which is what the stream
serves."""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from finstream.core.questions import Question, registered_model_name
from finstream.core.series_sets import SeriesSet
from finstream.serving.forecasters import Forecaster, forecaster

log = logging.getLogger(__name__)

POINTER = "CHAMPION"
SCORER = "scorer.json"
METADATA = "metadata.json"


def version_dir(model_dir: Path, question: str, set_key: str, version: str) -> Path:
    """MODEL_DIR/<question>/<set key>/<version>: an installed version's serving files."""
    return model_dir / question / set_key / version


def series_set(metadata: dict) -> SeriesSet:
    """The series set an installed version serves, from its metadata."""
    return SeriesSet.from_dict(metadata["series"])


def install(model_dir: Path, question: str, version: str, scorer: dict, metadata: dict) -> ServedModel:
    """Writes a version's serving files below its series set's folder, checks that this code
    can serve it (raises if not: nothing then changes for the readers), and points that set's
    CHAMPION at it.

    Args:
        model_dir: MODEL_DIR.
        question: the question it answers.
        version: the registered version (a number).
        scorer: its scorer.json (finstream.serving.forecasters).
        metadata: its metadata.json: `series` (the set), `registered_model` (its name), ...

    Raises:
        ValueError and kin: the version cannot be served by this code.
    """
    set_key = series_set(metadata).key
    folder = version_dir(model_dir, question, set_key, version)
    folder.mkdir(parents=True, exist_ok=True)
    _write_whole(folder / SCORER, json.dumps(scorer))
    _write_whole(folder / METADATA, json.dumps(metadata, indent=2, sort_keys=True))
    served = load_served(model_dir, question, set_key, version)
    _write_whole(model_dir / question / set_key / POINTER, version + "\n")
    return served


def _write_whole(path: Path, text: str) -> None:
    """Writes `path` by renaming a whole file onto it, from a temporary name unique to this writer
    (another stream job on the same MODEL_DIR may be writing the same file). The file gets the
    usual mode (0644 under umask 022), so workers of another user can read it; a failed write
    leaves no temporary file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())  # whole on disk before it takes the name
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def installed_version(model_dir: Path, question: str, set_key: str) -> str | None:
    """The version CHAMPION names for a question's series set, or None when none is installed."""
    pointer = model_dir / question / set_key / POINTER
    return pointer.read_text().strip() if pointer.exists() else None


def installed_metadata(model_dir: Path, question: str, served_version: str) -> dict | None:
    """The metadata of an installed version named as documents name it (finstream-lags-day1/3),
    or None when it is not installed."""
    number = served_version.rsplit("/", 1)[-1]
    for path in sorted((model_dir / question).glob(f"*/{number}/{METADATA}")):
        try:
            metadata = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if f"{metadata.get('registered_model')}/{number}" == served_version:
            return metadata
    return None


@dataclass(frozen=True)
class ServedModel:
    """An installed version as the state step serves it: its forecaster and the series it covers."""

    version: str  # the registered model and its version: finstream-lags-day1-stocks/3; or `baseline`
    kind: str  # the model kind or naive baseline serving the question
    forecaster: Forecaster
    series_set: SeriesSet | None  # the series it serves; None: every series (the reference baseline)
    reason: str = ""  # why the training run serves this model or baseline
    run_id: str | None = None  # the MLflow run that trained it

    @property
    def question(self) -> Question:
        """The question it answers (finstream.core.questions)."""
        return self.forecaster.question

    def covers(self, ticker: str, timespan: str, multiplier: int) -> bool:
        """Whether this model was trained for the series."""
        return self.series_set is None or self.series_set.covers(ticker, timespan, multiplier)


def reference_baseline(question: Question) -> ServedModel:
    """A question's reference baseline, serving every series no champion covers: labelled
    `model: <baseline>`, version `baseline`, no MLflow run."""
    return ServedModel("baseline", question.reference, forecaster({"question": question.name,
                                                                   "served": question.reference}), None)


def load_served(model_dir: Path, question: str, set_key: str, version: str) -> ServedModel:
    """An installed version, ready to score; raises if it cannot serve this code's features."""
    folder = version_dir(model_dir, question, set_key, version)
    metadata = json.loads((folder / METADATA).read_text())
    path = folder / SCORER
    if not path.exists():
        raise ValueError(f"it has no {SCORER} (trained by an older version): retrain it")
    served = forecaster(json.loads(path.read_text()))
    if served.question.name != question:
        raise ValueError(f"its {SCORER} serves {served.question.name!r}, not {question!r}")
    served_set = series_set(metadata)
    name = metadata.get("registered_model") or registered_model_name(question, served_set)
    return ServedModel(f"{name}/{version}", served.served, served, served_set,
                       metadata.get("served_reason", ""), metadata.get("mlflow_run_id") or None)


class ServedModels:
    """Follows MODEL_DIR/<question>/<set key>/CHAMPION: a version the mirror installs serves
    from the next look on, without a restart. A version that cannot serve is refused once and
    the previous one keeps serving. Cheap enough to ask for every series of every
    micro-batch: CHAMPION is re-read only when its file changes."""

    def __init__(self, model_dir: Path, question: str, set_key: str, *, report: bool = True) -> None:
        self.pointer = model_dir / question / set_key / POINTER
        self.model_dir, self.question, self.set_key, self.report = model_dir, question, set_key, report
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
            self._served = load_served(self.model_dir, self.question, self.set_key, version)
        except Exception as exc:  # noqa: BLE001 - a bad model must not stop the stream
            if self.report:
                outcome = f"still serving {self._served.version}" if self._served else "no predictions until one loads"
                log.error("cannot serve %s model %s for %s (%s); %s", self.question, version, self.set_key,
                          str(exc).splitlines()[0][:300], outcome)
            return
        if self.report:
            served = self._served
            log.info("serving %s (%s) for the series set %s%s", served.version, served.kind, self.set_key,
                     f": {served.reason}" if served.reason else "")


class ServedForecasts:
    """Every installed champion of each served question, one per series set (found by listing
    MODEL_DIR/<question>/, again only when that folder changes); says once when no question
    has a champion yet (each question's reference baseline then serves every series)."""

    def __init__(self, model_dir: Path, questions: tuple[str, ...], *, report: bool = True) -> None:
        self.model_dir, self.questions, self.report = model_dir, tuple(questions), report
        self.models: dict[tuple[str, str], ServedModels] = {}
        self._listed: dict[str, tuple] = {}  # question -> its folder's identity when last listed
        self._warned = False

    def _discover(self, question: str) -> None:
        folder = self.model_dir / question
        try:
            stat = folder.stat()
        except FileNotFoundError:
            return
        seen = (stat.st_ino, stat.st_mtime_ns)
        if self._listed.get(question) == seen:
            return
        self._listed[question] = seen
        for child in sorted(folder.iterdir()):
            if (question, child.name) not in self.models and child.is_dir():
                self.models[(question, child.name)] = ServedModels(self.model_dir, question, child.name,
                                                                   report=self.report)

    def current(self) -> dict[str, tuple[ServedModel, ...]]:
        """Question -> the champions serving it now, one per series set, most specific first
        (finstream.core.series_sets.SeriesSet.specificity); questions without one are left out."""
        served: dict[str, list[ServedModel]] = {}
        for question in self.questions:
            self._discover(question)
        for (question, _), models in sorted(self.models.items()):
            model = models.current()
            if model is not None:
                served.setdefault(question, []).append(model)
        if self.report and not self._warned and not served:
            log.warning("no champion model for %s yet: each question's reference baseline forecasts every series "
                        "with enough history; run jobs/train.py and its champions serve from the next micro-batch",
                        ",".join(self.questions))
            self._warned = True
        return {q: tuple(sorted(models, key=lambda m: (-m.series_set.specificity, m.series_set.key)))
                for q, models in served.items()}
