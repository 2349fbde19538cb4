"""A training run's outcome as typed values: the report (TrainingReport) that is written to
report.json, logged to MLflow and indexed as metric documents, and what the registry made of
the run (Registered).

A report holds no Spark object: it is built once from a TrainingRun (whose Selection,
CandidateResult and TrainOptions it reuses) and read by finstream.training.reporting and
finstream.training.tracking. `TrainingReport.as_dict()` is the one place the JSON report's
shape is written down.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from finstream.core.questions import Question
from finstream.training.selection import (
    VALIDATION_FRACTION,
    CandidateResult,
    DataSummary,
    Selection,
    TrainingRun,
    TrainOptions,
)


@dataclass(frozen=True)
class Registered:
    """What tracking a run left in MLflow (finstream.training.tracking.track).

    Attributes:
        mlflow_run_id: the MLflow run holding the run's parameters, metrics, plots, model and report.
        version: the new version of finstream-<question> ("1", "2", ...); None when the stream
            does not serve the question, which is then not registered.
        alias: finstream.stores.registry.CHAMPION or CHALLENGER; None when not registered.
    """

    mlflow_run_id: str
    version: str | None = None
    alias: str | None = None
    name: str | None = None  # the registered model: finstream-<question>-<series set>


@dataclass(frozen=True)
class TrainingReport:
    """What one question's training run reports: the question, the data, every candidate's
    figures, the choice and what the stream serves, and where it was tracked.

    Attributes:
        run_id: the training invocation (tracking.new_run_id: UTC time, e.g. 20240102T030405000000Z),
            shared by every question of the invocation.
        created_at: when the report was made, ISO 8601 in UTC.
        source: where the bars were read: "kafka" or "es".
        question: the question answered (finstream.core.questions).
        options: what the run was asked (series, split, folds, models, tuning).
        data: what the run read (finstream.training.selection.DataSummary).
        selection: the choice made on the validation slice, before the holdout was read.
        served: what the stream serves: the chosen model, or the question's reference baseline.
        served_reason: why (one sentence, finstream.core.skill.served_choice).
        models: every candidate (naive baselines first, then the models) by name, in table order.
        model_version: "finstream-<question>/<version>" once registered, else None.
        mlflow_run_id: the MLflow run, once tracked.
        registered_alias: "champion" or "challenger" once registered, else None.
    """

    run_id: str
    created_at: str
    source: str
    question: Question
    options: TrainOptions
    data: DataSummary
    selection: Selection
    served: str
    served_reason: str
    models: dict[str, CandidateResult]
    model_version: str | None = None
    mlflow_run_id: str | None = None
    registered_alias: str | None = None

    @classmethod
    def from_run(cls, run: TrainingRun, run_id: str, source: str, now: datetime | None = None) -> TrainingReport:
        """The report of a finished run, not yet tracked.

        Args:
            run: the run (finstream.training.selection.run); its results are shared, not copied.
            run_id: the training invocation's id (tracking.new_run_id).
            source: "kafka" or "es".
            now: the report's time (default: now, UTC).

        Returns:
            The report, with model_version, mlflow_run_id and registered_alias None.
        """
        return cls(run_id=run_id, created_at=(now or datetime.now(timezone.utc)).isoformat(), source=source,
                   question=run.question, options=run.options, data=run.data, selection=run.selection,
                   served=run.served, served_reason=run.served_reason, models=run.results)

    @property
    def chosen(self) -> str:
        """The model chosen on the validation slice (served only if it beat the reference)."""
        return self.selection.chosen

    def registered_as(self, registered: Registered) -> TrainingReport:
        """The same report naming its MLflow run and registered version.

        Args:
            registered: what tracking returned.

        Returns:
            A copy with mlflow_run_id, registered_alias and model_version set (model_version
            "finstream-<question>/<version>", None when nothing was registered).
        """
        model_version = registered.version and f"{registered.name}/{registered.version}"
        return dataclasses.replace(self, mlflow_run_id=registered.mlflow_run_id, registered_alias=registered.alias,
                                   model_version=model_version)

    def question_summary(self) -> dict[str, Any]:
        """The question as the report and the serving metadata show it.

        Returns:
            {"name", "kind", "features" (list), "label", "target" (the column judged, e.g.
            next_close), "next_bar", "reference" (the reference baseline)}.
        """
        q = self.question
        return {"name": q.name, "kind": q.kind, "features": list(q.features), "label": q.label,
                "target": q.actual, "next_bar": q.next_bar, "reference": q.reference}

    def selection_summary(self) -> dict[str, Any]:
        """How the chosen model was chosen, as the report and the serving metadata show it.

        Returns:
            {"on" (a sentence), "period" ([first, last] ISO times of the validation slice),
            "loss" (model -> validation loss), "params" (model -> hyper-parameters)}.
        """
        s = self.selection
        return {"on": f"validation slice: the last {VALIDATION_FRACTION:.0%} of the training "
                      f"period, models fit on what precedes it; the holdout is not read",
                "period": s.validation_period, "loss": s.validation_loss, "params": s.params}

    def as_dict(self) -> dict[str, Any]:
        """The JSON report (report.json, MLflow's report.json artifact), keys in this order.

        Returns:
            {"run_id", "created_at", "source", "model_version", "question", "options", "data",
            "chosen", "selection", "served", "served_reason", "models", "mlflow_run_id",
            "registered_alias"}; "models" maps each candidate to {"baseline", "params",
            "holdout", "per_series", "validation_loss", "walk_forward", "walk_forward_mean"}.
            Holds the run's own dicts (not copies): serialise it, do not edit it.
        """
        return {
            "run_id": self.run_id,
            "created_at": self.created_at,
            "source": self.source,
            "model_version": self.model_version,
            "question": self.question_summary(),
            # Tuples as lists: what JSON gives back, so a report read again compares equal.
            "options": {f.name: _listed(getattr(self.options, f.name)) for f in dataclasses.fields(self.options)},
            "data": self.data,
            "chosen": self.chosen,
            "selection": self.selection_summary(),
            "served": self.served,
            "served_reason": self.served_reason,
            "models": {name: self._candidate(name, result) for name, result in self.models.items()},
            "mlflow_run_id": self.mlflow_run_id,
            "registered_alias": self.registered_alias,
        }

    def _candidate(self, name: str, result: CandidateResult) -> dict[str, Any]:
        return {"baseline": name in self.question.baselines, "params": result.params, "holdout": result.holdout,
                "per_series": result.per_series, "validation_loss": result.validation_loss,
                "walk_forward": result.walk_forward, "walk_forward_mean": result.walk_forward_mean()}


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
