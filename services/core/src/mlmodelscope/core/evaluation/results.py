"""The evaluation result: one pydantic document, written as JSON, that says everything about a run.

It is the contract between the agent, the CLI, the collector and reports: requested and effective settings,
seeds, LoadGen's verdict with a reason per constraint, latency statistics, throughput, accuracy, model load time
(cold start) and the environment. ``schema_version`` changes when a field changes meaning.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.evaluation.agreement import OutputsFile
from mlmodelscope.core.evaluation.environment import Environment
from mlmodelscope.core.evaluation.loadgen_report import ConstraintCheck
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.evaluation.statistics import LatencyStats

SCHEMA_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Verdict(_Frozen):
    valid: bool
    result: Literal["VALID", "INVALID"]
    constraints: list[ConstraintCheck]
    recommendations: list[str]
    early_stopping: list[str]
    errors: list[str] = Field(default_factory=list)


class Throughput(_Frozen):
    samples_per_s: float = Field(description="Dataset items per second, as LoadGen measured it (x batch size).")
    queries_per_s: float = Field(description="Completed predictor calls per second, SUT side.")
    loadgen_metric: str = Field(description="Which LoadGen figure samples_per_s comes from.")


class PerformanceResult(_Frozen):
    verdict: Verdict
    latency: LatencyStats = Field(description="Per predictor call, measured by the SUT (perf_counter_ns).")
    loadgen_latency_ns: dict[str, float] = Field(description="LoadGen's own latency figures (per LoadGen sample).")
    throughput: Throughput
    queries: int
    samples: int
    duration_s: float
    effective_settings: dict[str, Any] = Field(description="The settings LoadGen ran with (its 'effective_*').")
    loadgen_requested_settings: dict[str, Any] = Field(description="What we asked LoadGen for ('requested_*').")
    log_dir: str


class AccuracyResult(_Frozen):
    top1: float
    top5: float
    count: int
    verdict: Verdict
    log_dir: str
    outputs: OutputsFile | None = Field(
        default=None, description="Per-sample probabilities of this run (for cross-framework agreement)."
    )


class LoadTime(_Frozen):
    artifact_fetch_s: float
    dataset_s: float = Field(description="Fetch, decode and pre-process the whole dataset (untimed by LoadGen).")
    model_load_s: float = Field(description="Predictor load: the framework's cold start.")
    warmup_s: float


FrameworkTraceStatus = Literal["complete", "partial", "failed"]


class FrameworkTrace(_Frozen):
    """How far the framework's own profile (FRAMEWORK trace level) covers the performance run, and why not further.

    The profiler covers a declared window: the first ``max_calls`` predictor calls of the performance run
    (``EvaluationSettings.framework_trace_max_calls``); later calls carry no operator spans by design. A problem
    with the profiler never fails the evaluation: the result is kept and this says what went wrong.
    """

    status: FrameworkTraceStatus = Field(
        description="complete: every call of the window has operator spans; partial: some do; failed: none do."
    )
    max_calls: int = Field(ge=1, description="The window: at most this many calls after warm-up are profiled.")
    window_calls: int = Field(ge=0, description="Calls of the performance run made while the profiler ran.")
    profiled_calls: int = Field(ge=0, description="Calls (model spans) that received operator spans.")
    reason: str | None = Field(default=None, description="Why the trace is partial or failed (None when complete).")


class ResourceRef(_Frozen):
    name: str
    version: str
    spec_sha256: str = Field(
        default="", description="sha256 of the resource's canonical spec the run evaluated; empty in older results."
    )


class EvaluationResult(_Frozen):
    schema_version: int = SCHEMA_VERSION
    id: str
    created_at: datetime
    model: ResourceRef
    framework: ResourceRef
    dataset: ResourceRef
    device: str
    requested_settings: EvaluationSettings
    trace_level: str = "no"
    load_time: LoadTime
    accuracy: AccuracyResult | None = None
    performance: PerformanceResult | None = None
    framework_trace: FrameworkTrace | None = Field(
        default=None, description="At FRAMEWORK trace level: which calls the framework profiler covered."
    )
    environment: Environment

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)
