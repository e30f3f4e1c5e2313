"""The summary of an evaluation of several runs: every result, cross-framework agreement and batch-size sweeps.

``mlmodelscope evaluate -f a,b,c -b 1,2,4`` runs one agent per framework x batch size; this document gathers what
they produced and what can only be said about them together: how closely each framework reproduces the reference
framework's per-sample probabilities (at the same batch size and device), and each framework's throughput curve
and optimal batch size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.evaluation.agreement import Agreement, compare_outputs
from mlmodelscope.core.evaluation.batch_sweep import DEFAULT_GAIN_THRESHOLD, BatchSweep, batch_sweeps
from mlmodelscope.core.evaluation.results import EvaluationResult

SUMMARY_SCHEMA_VERSION = 1


class EvaluationSummary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SUMMARY_SCHEMA_VERSION
    evaluation_id: str
    reference_framework: str = Field(description="The framework every other one is compared with.")
    results: list[EvaluationResult]
    agreement: list[Agreement] = Field(default_factory=list)
    batch_sweeps: list[BatchSweep] = Field(default_factory=list)
    failures: dict[str, str] = Field(default_factory=dict, description="run id -> why it failed.")

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)


def summarize(
    evaluation_id: str,
    reference_framework: str,
    results: Sequence[EvaluationResult],
    failures: Mapping[str, str] | None = None,
    gain_threshold: float = DEFAULT_GAIN_THRESHOLD,
) -> EvaluationSummary:
    return EvaluationSummary(
        evaluation_id=evaluation_id,
        reference_framework=reference_framework,
        results=list(results),
        agreement=agreements(results, reference_framework),
        batch_sweeps=batch_sweeps(results, gain_threshold),
        failures=dict(failures or {}),
    )


def agreements(results: Sequence[EvaluationResult], reference_framework: str) -> list[Agreement]:
    """Each non-reference run against the reference framework's run of the same model, dataset, batch and device."""

    def key(result: EvaluationResult) -> tuple[str, str, int, str]:
        return (result.model.name, result.dataset.name, result.requested_settings.batch_size, result.device)

    references = {
        key(r): r
        for r in results
        if r.framework.name == reference_framework and r.accuracy is not None and r.accuracy.outputs is not None
    }
    out: list[Agreement] = []
    for result in results:
        reference = references.get(key(result))
        if reference is None or result is reference or result.accuracy is None or result.accuracy.outputs is None:
            continue
        assert reference.accuracy is not None and reference.accuracy.outputs is not None
        measured = compare_outputs(
            reference.accuracy.outputs,
            result.accuracy.outputs,
            reference_name=f"{reference.framework.name} {reference.framework.version}",
            framework_name=f"{result.framework.name} {result.framework.version}",
        )
        out.append(measured.model_copy(update={"batch_size": key(result)[2], "device": result.device}))
    return out
