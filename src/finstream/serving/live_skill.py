"""The live skill watch, in the stream job's driver: for each served version of the watched
questions (finstream.core.questions: those with a `live` loss), the loss ratio of its last `window`
judged predictions against the baseline's, from the sums the predict-bars query observes per
micro-batch (no extra job). When a full window's ratio leaves the band the holdout promised
(finstream.core.skill.live_band, stored with the version at training), one WARNING line names the
version; when it comes back, one INFO line. Each ratio goes with the pipeline metrics to
Elasticsearch (Kibana charts it) and to MLflow, against the run that trained the version."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from finstream.core import skill
from finstream.core.questions import Question, watched
from finstream.core.schema import live_field
from finstream.serving import installed

log = logging.getLogger(__name__)


class LiveSkillWatch:
    """Per served version, a rolling window of judged predictions' summed losses (see above).

    Args:
        model_dir: MODEL_DIR, where each installed version's holdout band is read from.
        log_metric: log_metric(run_id, key, value, step), to MLflow; None logs nothing there.
        questions: the questions to watch (default: every declared one with a `live` loss).
    """

    def __init__(self, model_dir: Path, log_metric: Callable[[str, str, float, int], None] | None = None,
                 questions: Iterable[Question] | None = None) -> None:
        self.model_dir, self.log_metric = model_dir, log_metric
        self.questions = tuple(q.name for q in watched(questions))
        self._windows: dict[str, deque] = {}  # version -> (loss, baseline loss, judged) per batch
        self._bands: dict[str, tuple[dict | None, str, str]] = {}  # version -> (band, MLflow run id, set)
        self._outside: set[str] = set()

    def update(self, observed: dict[str, Any], batch_id: int) -> list[dict[str, Any]]:
        """Takes one batch's observed sums per version (finstream.serving.predictor.live_skill_sums).

        Returns:
            One entry per version judged in the batch (each series set's champion on its own),
            for a pipeline-metrics document: live_question, live_version, live_set,
            live_loss_ratio (over the version's last window of judged predictions),
            live_judged, and live_band_low / live_band_high when its training gave a band.
        """
        entries: list[dict[str, Any]] = []
        for question in self.questions:
            for sums in sorted(observed.get(live_field(question, "judged")) or (), key=lambda row: row["version"]):
                entry = self._window_ratio(question, sums["version"], float(sums["loss"] or 0.0),
                                           float(sums["baseline"] or 0.0), int(sums["judged"]), batch_id)
                if entry:
                    entries.append(entry)
        return entries

    def _window_ratio(self, question: str, version: str, batch_loss: float, batch_baseline: float, judged: int,
                      batch_id: int) -> dict[str, Any] | None:
        window = self._windows.setdefault(version, deque())
        window.append((batch_loss, batch_baseline, judged))
        band, run_id, set_key = self._band(question, version)
        size = band["window"] if band else skill.LIVE_WINDOW
        while len(window) > 1 and sum(n for *_, n in window) - window[0][2] >= size:
            window.popleft()  # keep the last `size` judged predictions (to a batch)
        loss, baseline, count = (sum(part) for part in zip(*window, strict=True))
        if baseline <= 0:
            return None
        ratio = loss / baseline
        entry = {"live_question": question, "live_version": version, "live_set": set_key, "live_loss_ratio": ratio,
                 "live_judged": count}
        if band:
            entry.update(live_band_low=band["low"], live_band_high=band["high"])
            if count >= size:
                self._compare(question, version, ratio, count, band, set_key)
        if self.log_metric and run_id:
            try:
                self.log_metric(run_id, f"live.{question}.loss_ratio", ratio, batch_id)
            except Exception as exc:  # noqa: BLE001 - the tracking store down must not stop the stream
                log.debug("could not log the live ratio to MLflow: %s", exc)
        return entry

    def _compare(self, question: str, version: str, ratio: float, count: int, band: dict, set_key: str) -> None:
        outside = not band["low"] <= ratio <= band["high"]
        if outside and version not in self._outside:
            self._outside.add(version)
            log.warning("live skill of %s has left its holdout band: loss ratio %.3f against the naive baseline "
                        "over its last %d judged predictions, outside %.3f-%.3f (holdout %.3f): the market may have "
                        "changed; retrain, or roll back (python -m finstream.models rollback --question %s --set %s)",
                        version, ratio, count, band["low"], band["high"], band["holdout"], question, set_key)
        elif not outside and version in self._outside:
            self._outside.discard(version)
            log.info("live skill of %s is back in its holdout band: loss ratio %.3f", version, ratio)

    def _band(self, question: str, version: str) -> tuple[dict | None, str, str]:
        """The version's holdout band, MLflow run id and series set key, from its installed metadata."""
        if version not in self._bands:
            metadata = installed.installed_metadata(self.model_dir, question, version) or {}
            set_key = installed.series_set(metadata).key if "series" in metadata else ""
            self._bands[version] = (metadata.get("live_band"), metadata.get("mlflow_run_id", ""), set_key)
        return self._bands[version]
