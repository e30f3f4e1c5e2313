"""The summary of an evaluation of several runs: every result, cross-framework agreement and batch-size sweeps.

``mlmodelscope evaluate -f a,b,c -b 1,2,4`` runs one agent per framework x batch size; this document gathers what
they produced and what can only be said about them together: how closely each framework reproduces the reference
framework's answers (at the same batch size and device), and each framework's throughput curve and optimal batch
size.

Agreement is measured in the runs' task (``agreement_tasks.compare_runs``): per-sample probabilities for
classification (``agreement``), boxes for object detection (``detection_agreement``: matched-box IoU, score
difference, boxes only one run found), masks for semantic segmentation (``segmentation_agreement``: pixel
agreement). A run whose agreement cannot be measured (performance mode, no reference run, a file gone, runs of
different tasks) is listed in ``agreement_unavailable`` with the reason, so a missing figure is never silent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.errors import MLModelScopeError
from mlmodelscope.core.evaluation.agreement import Agreement
from mlmodelscope.core.evaluation.agreement_tasks import (
    DetectionAgreement,
    SegmentationAgreement,
    compare_runs,
    incomparable_reason,
)
from mlmodelscope.core.evaluation.batch_sweep import DEFAULT_GAIN_THRESHOLD, BatchSweep, batch_sweeps
from mlmodelscope.core.evaluation.results import RunResult

SUMMARY_SCHEMA_VERSION = 2  # 2: detection_agreement, segmentation_agreement, agreement_unavailable

TaskAgreement = Agreement | DetectionAgreement | SegmentationAgreement


class AgreementUnavailable(BaseModel):
    """A run whose agreement with the reference framework could not be measured, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    framework: str = Field(description="'name version' of the run's framework.")
    batch_size: int = Field(ge=1)
    device: str
    reason: str = Field(description="What is missing and how to get it.")


class EvaluationSummary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SUMMARY_SCHEMA_VERSION
    evaluation_id: str
    reference_framework: str = Field(description="The framework every other one is compared with.")
    results: list[RunResult]
    agreement: list[Agreement] = Field(
        default_factory=list, description="Classification: per-sample probabilities against the reference's."
    )
    detection_agreement: list[DetectionAgreement] = Field(
        default_factory=list, description="Object detection: boxes against the reference's, image by image."
    )
    segmentation_agreement: list[SegmentationAgreement] = Field(
        default_factory=list, description="Semantic segmentation: masks against the reference's, pixel by pixel."
    )
    agreement_unavailable: list[AgreementUnavailable] = Field(
        default_factory=list, description="Non-reference runs whose agreement could not be measured, and why."
    )
    batch_sweeps: list[BatchSweep] = Field(default_factory=list)
    failures: dict[str, str] = Field(default_factory=dict, description="run id -> why it failed.")

    def measured_agreements(self) -> list[TaskAgreement]:
        """Every agreement measured, whatever its task."""
        measured: list[TaskAgreement] = [*self.agreement, *self.detection_agreement, *self.segmentation_agreement]
        return measured

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)


def summarize(
    evaluation_id: str,
    reference_framework: str,
    results: Sequence[RunResult],
    failures: Mapping[str, str] | None = None,
    gain_threshold: float = DEFAULT_GAIN_THRESHOLD,
) -> EvaluationSummary:
    measured = agreements(results, reference_framework)
    return EvaluationSummary(
        evaluation_id=evaluation_id,
        reference_framework=reference_framework,
        results=list(results),
        agreement=[a for a in measured if isinstance(a, Agreement)],
        detection_agreement=[a for a in measured if isinstance(a, DetectionAgreement)],
        segmentation_agreement=[a for a in measured if isinstance(a, SegmentationAgreement)],
        agreement_unavailable=[a for a in measured if isinstance(a, AgreementUnavailable)],
        batch_sweeps=batch_sweeps(results, gain_threshold),
        failures=dict(failures or {}),
    )


def framework_label(result: RunResult) -> str:
    """'name version': how agreements name a run's framework."""
    return f"{result.framework.name} {result.framework.version}"


def agreements(results: Sequence[RunResult], reference_framework: str) -> list[TaskAgreement | AgreementUnavailable]:
    """Each non-reference run against the reference framework's run of the same model, dataset, batch and device,
    in the runs' task; the reason for each one that cannot be compared."""

    def key(result: RunResult) -> tuple[str, str, int, str]:
        return (result.model.name, result.dataset.name, result.requested_settings.batch_size, result.device)

    references = {key(r): r for r in results if r.framework.name == reference_framework}
    out: list[TaskAgreement | AgreementUnavailable] = []
    for result in results:
        if result.framework.name == reference_framework:
            continue
        try:
            out.append(_agreement(result, references.get(key(result)), reference_framework))
        except MLModelScopeError as e:
            where = {"batch_size": result.requested_settings.batch_size, "device": result.device}
            out.append(AgreementUnavailable(framework=framework_label(result), reason=str(e), **where))
    return out


def _agreement(result: RunResult, reference: RunResult | None, reference_framework: str) -> TaskAgreement:
    """The agreement of ``result`` with the reference framework's run; MLModelScopeError saying why when none."""
    if reference is None:
        raise MLModelScopeError(
            f"no {reference_framework} run of {result.model.name} at batch size "
            f"{result.requested_settings.batch_size} on {result.device} to compare {framework_label(result)} with.",
            hint="Agreement needs the reference framework's run: see the failures, or pick another --reference.",
        )
    return measure(reference, result)


def measure(reference: RunResult, result: RunResult) -> TaskAgreement:
    """How closely ``result`` reproduces ``reference``'s answers, in their task; MLModelScopeError saying why it
    cannot be measured (no accuracy run, another model or dataset, answers not kept or unreadable)."""
    name, reference_name = framework_label(result), framework_label(reference)
    for field in ("model", "dataset"):
        ours, theirs = getattr(result, field).name, getattr(reference, field).name
        if ours != theirs:
            raise MLModelScopeError(
                f"run {result.id} evaluated {field} {ours} but the reference run {reference.id} {theirs}.",
                hint="Agreement compares runs of the same model on the same dataset.",
            )
    for run, run_name in ((reference, reference_name), (result, name)):
        if run.accuracy is None:
            raise MLModelScopeError(
                f"the {run_name} run {run.id} has no accuracy run (mode {run.requested_settings.mode}).",
                hint="Agreement compares the answers of accuracy runs: evaluate with --mode accuracy or both.",
            )
    assert reference.accuracy is not None and result.accuracy is not None
    names = {"reference_name": reference_name, "framework_name": name}
    measured = compare_runs(reference.accuracy, result.accuracy, **names)
    if measured is None:
        raise MLModelScopeError(incomparable_reason(reference.accuracy, result.accuracy, **names))
    batch_size = result.requested_settings.batch_size
    return measured.model_copy(update={"batch_size": batch_size, "device": result.device})
