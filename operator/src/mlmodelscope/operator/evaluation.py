"""The Evaluation custom resource: what a user asks the cluster to evaluate, and what the operator reports back.

Like Model, Framework and Dataset (``mlmodelscope.core.manifests.resources``) this pydantic model is the single
source of the ``Evaluation`` CRD in ``crds/`` (see ``crds.py``): required fields, enums and numeric bounds declared
here are what the API server enforces at admission. The spec follows the repository's manifest conventions
(snake_case, units in names); the status uses Kubernetes' own names where tools read them (``observedGeneration``,
``conditions[].lastTransitionTime``).

A run is one cell of the matrix models x frameworks x targets (x count) x batch sizes; each runs as one Job.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlmodelscope.core.evaluation.settings import Mode, Scenario
from mlmodelscope.core.manifests.resources import Accelerator, Architecture, ObjectMeta, ResourceName

TraceLevelName = Literal["no", "application", "model", "framework", "library", "system", "hardware", "full"]
Phase = Literal["Pending", "Running", "Succeeded", "Failed"]
RunState = Literal["Pending", "Running", "Succeeded", "Failed"]
ConditionStatus = Literal["True", "False", "Unknown"]
Quantity = Annotated[
    str,
    Field(
        pattern=r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$",
        description="A Kubernetes quantity: '2', '500m', '4Gi'.",
    ),
]
BatchSize = Annotated[int, Field(ge=1, le=65536)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class JobResources(_Strict):
    """Requests and limits of the predictor container (the accelerator is added by the operator). Requests left
    empty equal the limits: Guaranteed QoS, so a benchmark's CPUs are not shared with burstable neighbours."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="e.g. {cpu: '2', memory: 4Gi}; empty: the limits (Guaranteed QoS)."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=lambda: {"cpu": "2", "memory": "4Gi"}, description="e.g. {cpu: '4', memory: 8Gi}."
    )


class Target(_Strict):
    """Where runs execute: nodes of this CPU architecture with this accelerator, and how each run is placed."""

    arch: Architecture = Field(description="Node CPU architecture (the kubernetes.io/arch label).")
    accelerator: Accelerator = Field(default="cpu", description="cpu, gpu (nvidia.com/gpu) or fpga.")
    count: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Devices of the accelerator per run: a gpu target with count 2 runs one Job requesting "
        "nvidia.com/gpu: 2. Must be 1 on a cpu target.",
    )
    repeats: int = Field(default=1, ge=1, le=100, description="Repetitions of every run on this target.")
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Node labels added to the Job's nodeSelector (e.g. a GPU model or dedicated benchmark nodes).",
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="Tolerations added to the Job's pod (Kubernetes Toleration objects)."
    )
    affinity: dict[str, Any] | None = Field(default=None, description="The Job pod's affinity (Kubernetes Affinity).")
    priority_class_name: str | None = Field(
        default=None, min_length=1, max_length=253, description="PriorityClass of the Job's pod."
    )
    resources: JobResources | None = Field(
        default=None, description="Requests and limits of this target's runs; default: the Evaluation's resources."
    )

    @model_validator(mode="after")
    def _devices_need_an_accelerator(self) -> Target:
        if self.accelerator == "cpu" and self.count != 1:
            raise ValueError(
                f"count is the number of devices per run: a cpu target has none, so count must be 1 (got "
                f"{self.count}); use repeats: {self.count} to repeat every run"
            )
        return self


class EvaluationSpec(_Strict):
    models: list[ResourceName] = Field(min_length=1, max_length=50, description="Names of Model resources.")
    frameworks: list[ResourceName] = Field(min_length=1, max_length=20, description="Names of Framework resources.")
    targets: list[Target] = Field(
        default_factory=lambda: [Target(arch="amd64")], min_length=1, max_length=20, description="Node kinds."
    )
    dataset: ResourceName | None = Field(default=None, description="Dataset resource; default: each model's own.")
    scenario: Scenario = "single-stream"
    mode: Mode = "both"
    batch_sizes: list[BatchSize] = Field(default_factory=lambda: [1], min_length=1, max_length=20)
    min_duration_s: float = Field(default=10.0, ge=0, le=86400, description="LoadGen min_duration.")
    max_duration_s: float | None = Field(default=None, gt=0, le=86400, description="LoadGen max_duration.")
    min_query_count: int = Field(default=100, ge=1, le=100_000_000)
    max_query_count: int | None = Field(default=None, ge=1, le=100_000_000)
    target_qps: float | None = Field(default=None, gt=0, le=1_000_000, description="Server: Poisson arrival rate.")
    latency_bound_ms: float | None = Field(default=None, gt=0, le=3_600_000, description="Server latency bound.")
    samples_per_query: int = Field(default=8, ge=1, le=65536, description="Multi-stream: samples per query.")
    warmup_queries: int = Field(default=10, ge=0, le=1_000_000)
    seed: int | None = Field(default=None, ge=0, le=2**53, description="Derives LoadGen's three seeds.")
    threads: int | None = Field(default=None, ge=1, le=1024, description="Framework intra-op threads.")
    trace_level: TraceLevelName = "model"
    parallelism: int = Field(default=4, ge=1, le=1000, description="At most this many Jobs of it at a time.")
    timeout_s: int = Field(default=3600, ge=10, le=604800, description="Each Job's activeDeadlineSeconds.")
    retries: int = Field(default=1, ge=0, le=10, description="Each Job's backoffLimit.")
    resources: JobResources = Field(default_factory=JobResources)
    queue_name: str | None = Field(
        default=None, min_length=1, max_length=63, description="Kueue LocalQueue (label kueue.x-k8s.io/queue-name)."
    )
    suspend: bool = Field(
        default=False,
        description="true: create no more Jobs and delete the running ones (their runs become Pending again); "
        "false: continue where it stopped.",
    )


class RunResult(_Strict):
    """The collector's figures for one run, in the units in their names (the operator computes none of them)."""

    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    throughput_samples_per_s: float | None = None
    top1: float | None = None
    valid: bool | None = Field(default=None, description="LoadGen's verdict (performance, else accuracy run).")
    reason: str = Field(default="", description="Why the verdict is INVALID, when it is.")
    regression: Literal["no baseline", "baseline", "ok", "regressed"] | None = Field(
        default=None, description="The collector's regression check against the baseline of this run's labels."
    )
    regression_reason: str = Field(default="", description="Why the run regressed, when it did.")


class RunStatus(_Strict):
    name: str = Field(description="model/framework/arch-accelerator/bN[/rK]: this run's cell of the matrix.")
    model: str
    framework: str
    arch: Architecture
    accelerator: Accelerator
    batch_size: int
    repetition: int = 0
    run_id: str
    job_name: str
    state: RunState = "Pending"
    attempts: int = Field(default=0, description="Pods the Job started (failed + active + succeeded).")
    message: str = ""
    result: RunResult | None = None


class Condition(_Strict):
    type: str
    status: ConditionStatus
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: str = Field(alias="lastTransitionTime")


class EvaluationStatus(_Strict):
    phase: Phase = "Pending"
    runs: list[RunStatus] = Field(default_factory=list)
    progress: str = Field(default="", description="'<finished>/<total>' runs, for the printer column.")
    valid: str = Field(default="", description="'<valid>/<total>' runs with a VALID verdict.")
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    last_error: str = Field(default="", alias="lastError")


class Evaluation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: Literal["mlmodelscope.org/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Evaluation"]
    metadata: ObjectMeta
    spec: EvaluationSpec
    status: EvaluationStatus | None = None
