"""The live skill watch, in the stream job's driver: for each served version of the questions
that have a naive baseline (finstream.skill.LIVE_LOSSES), the loss ratio of its last `window`
judged predictions against the baseline's, from the sums the predict-bars query observes per
micro-batch (no extra job). When a full window's ratio leaves the band the holdout promised
(finstream.skill.live_band, stored with the version at training), one WARNING line names the
version; when it comes back, one INFO line. Each ratio goes with the pipeline metrics to
Elasticsearch (Kibana charts it) and to MLflow, against the run that trained the version."""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finstream import modelstore, skill

log = logging.getLogger(__name__)


class LiveSkillWatch:
    def __init__(self, model_dir: Path, log_metric: Callable[[str, str, float, int], None] | None = None) -> None:
        self.model_dir, self.log_metric = model_dir, log_metric
        self._windows: dict[str, deque] = {}  # version -> (loss, baseline loss, judged) per batch
        self._bands: dict[str, tuple[dict | None, str]] = {}  # version -> (band, MLflow run id)
        self._outside: set[str] = set()

    def update(self, observed: dict[str, Any], batch_id: int) -> dict[str, Any]:
        """Takes one batch's observed sums; returns the fields for its pipeline-metrics document."""
        fields: dict[str, Any] = {}
        for question in skill.LIVE_LOSSES:
            judged = int(observed.get(f"live_{question}_judged") or 0)
            version = observed.get(f"live_{question}_version")
            if not judged or not version:
                continue
            if observed.get(f"live_{question}_first_version") != version:
                continue  # the batch judged two versions' predictions (a switch): not attributable
            window = self._windows.setdefault(version, deque())
            window.append((float(observed[f"live_{question}_loss"] or 0.0),
                           float(observed[f"live_{question}_baseline"] or 0.0), judged))
            band, run_id = self._band(question, version)
            size = band["window"] if band else skill.LIVE_WINDOW
            while len(window) > 1 and sum(n for *_, n in window) - window[0][2] >= size:
                window.popleft()  # keep the last `size` judged predictions (to a batch)
            loss, baseline, count = (sum(part) for part in zip(*window, strict=True))
            if baseline <= 0:
                continue
            ratio = loss / baseline
            fields.update({f"live_{question}_loss_ratio": ratio, f"live_{question}_version": version,
                           f"live_{question}_judged": count})
            if band:
                fields.update({f"live_{question}_band_low": band["low"], f"live_{question}_band_high": band["high"]})
                if count >= size:
                    self._compare(question, version, ratio, count, band)
            if self.log_metric and run_id:
                try:
                    self.log_metric(run_id, f"live.{question}.loss_ratio", ratio, batch_id)
                except Exception as exc:  # noqa: BLE001 - the tracking store down must not stop the stream
                    log.debug("could not log the live ratio to MLflow: %s", exc)
        return fields

    def _compare(self, question: str, version: str, ratio: float, count: int, band: dict) -> None:
        outside = not band["low"] <= ratio <= band["high"]
        if outside and version not in self._outside:
            self._outside.add(version)
            log.warning("live skill of %s has left its holdout band: loss ratio %.3f against the naive baseline "
                        "over its last %d judged predictions, outside %.3f-%.3f (holdout %.3f): the market may have "
                        "changed; retrain, or roll back (python -m finstream.models rollback --question %s)",
                        version, ratio, count, band["low"], band["high"], band["holdout"], question)
        elif not outside and version in self._outside:
            self._outside.discard(version)
            log.info("live skill of %s is back in its holdout band: loss ratio %.3f", version, ratio)

    def _band(self, question: str, version: str) -> tuple[dict | None, str]:
        if version not in self._bands:
            number = version.rsplit("/", 1)[-1]
            try:
                metadata = json.loads((modelstore.version_dir(self.model_dir, question, number)
                                       / modelstore.METADATA).read_text())
                self._bands[version] = (metadata.get("live_band"), metadata.get("mlflow_run_id", ""))
            except (OSError, ValueError):
                self._bands[version] = (None, "")
        return self._bands[version]
