"""The Evaluation custom resource: what a user asks the cluster to evaluate, and what the operator reports back.

Like Model, Framework and Dataset (``mlmodelscope.core.manifests.resources``) this pydantic model is the single
source of the ``Evaluation`` CRD in ``crds/`` (see ``crds.py``): required fields, enums and numeric bounds declared
here are what the API server enforces at admission. The spec follows the repository's manifest conventions
(snake_case, units in names); the status uses Kubernetes' own names where tools read them (``observedGeneration``,
``conditions[].lastTransitionTime``).

A run is one cell of the matrix models x frameworks x targets (x repeats) x batch sizes; each runs as one Job.

Cross-field rules are declared twice, on purpose: as CEL ``x-kubernetes-validations`` (``SPEC_RULES``,
``TARGET_RULES``; the API server refuses at admission, before any reconcile) and as pydantic validators (local
mode and the operator refuse the same documents with the same meaning). ``tests/deploy/test_crd_cel.py`` evaluates the
CEL rules of the generated CRD with a CEL interpreter and checks that both refuse exactly the same specs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.config import JsonValue

from mlmodelscope.core.evaluation.settings import EvaluationSettings, Mode, Scenario, Seeds
from mlmodelscope.core.manifests.fields import Accelerator, Architecture, ObjectMeta, ResourceName
from mlmodelscope.core.tracing.spans import TraceLevelName

Phase = Literal["Pending", "Running", "Suspended", "Succeeded", "Failed"]
RunState = Literal["Pending", "Running", "Succeeded", "Failed"]
ConditionStatus = Literal["True", "False", "Unknown"]
Quantity = Annotated[
    str,
    Field(
        pattern=r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$",
        description="A Kubernetes quantity: '2', '500m', '4Gi'.",
    ),
]
BatchSize = Annotated[int, Field(ge=1, le=65536, description="Samples per predictor call.")]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
MAX_MATRIX_RUNS = 1000
"""At most this many cells in models x frameworks x targets x batch_sizes (the status lists every run, and etcd
stores at most 1.5 MiB per object); the operator's ``max_runs`` setting bounds the exact count, repeats included."""

# targets and batch_sizes have default factories, which the schema does not carry: absent means one of each.
_CELLS = (
    "size(self.models) * size(self.frameworks) * (has(self.targets) ? size(self.targets) : 1) * "
    "(has(self.batch_sizes) ? size(self.batch_sizes) : 1)"
)
# No fieldPath/reason (Kubernetes 1.28+): the chart supports 1.27, whose API server would drop or refuse them.
TARGET_RULES: list[JsonValue] = [
    {
        "rule": "self.accelerator != 'cpu' || self.count == 1",
        "message": "count is the number of devices per run: a cpu target has none, so count must be 1 (use repeats "
        "to repeat every run)",
    },
]
SPEC_RULES: list[JsonValue] = [
    {
        "rule": "self.scenario != 'server' || self.mode == 'accuracy' || has(self.target_qps)",
        "message": "the server scenario needs target_qps, the Poisson arrival rate (queries/s)",
    },
    {
        "rule": "!has(self.max_duration_s) || self.max_duration_s >= self.min_duration_s",
        "message": "max_duration_s must be at least min_duration_s",
    },
    {
        "rule": "!has(self.max_query_count) || self.max_query_count >= self.min_query_count",
        "message": "max_query_count must be at least min_query_count",
    },
    {
        "rule": f"{_CELLS} <= {MAX_MATRIX_RUNS}",
        "messageExpression": f"'the matrix models x frameworks x targets x batch_sizes has ' + string({_CELLS}) + "
        f"' runs; at most {MAX_MATRIX_RUNS} are allowed (split it into several Evaluations)'",
        "message": f"the matrix models x frameworks x targets x batch_sizes has more than {MAX_MATRIX_RUNS} runs",
    },
]


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

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": TARGET_RULES})

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
    """What to evaluate: every model in every framework on every target at every batch size, one Job per run."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": SPEC_RULES})

    models: list[ResourceName] = Field(min_length=1, max_length=50, description="Names of Model resources.")
    frameworks: list[ResourceName] = Field(min_length=1, max_length=20, description="Names of Framework resources.")
    targets: list[Target] = Field(
        default_factory=lambda: [Target(arch="amd64")],
        min_length=1,
        max_length=20,
        description="Node kinds the runs execute on; default: one amd64 cpu target.",
    )
    dataset: ResourceName | None = Field(default=None, description="Dataset resource; default: each model's own.")
    scenario: Scenario = Field(default="single-stream", description="LoadGen scenario.")
    mode: Mode = Field(default="both", description="accuracy, performance, or both (two LoadGen runs).")
    batch_sizes: list[BatchSize] = Field(
        default_factory=lambda: [1], min_length=1, max_length=20, description="One run per batch size."
    )
    min_duration_s: float = Field(default=10.0, ge=0, le=86400, description="LoadGen min_duration.")
    max_duration_s: float | None = Field(
        default=None, gt=0, le=86400, description="LoadGen max_duration; at least min_duration_s."
    )
    min_query_count: int = Field(default=100, ge=1, le=100_000_000, description="LoadGen min_query_count.")
    max_query_count: int | None = Field(
        default=None, ge=1, le=100_000_000, description="LoadGen max_query_count; at least min_query_count."
    )
    target_qps: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="Server: Poisson arrival rate (queries/s); required by the server scenario (unless mode is "
        "accuracy).",
    )
    latency_bound_ms: float | None = Field(default=None, gt=0, le=3_600_000, description="Server latency bound.")
    samples_per_query: int = Field(default=8, ge=1, le=65536, description="Multi-stream: samples per query.")
    warmup_queries: int = Field(default=10, ge=0, le=1_000_000, description="Queries run before LoadGen starts.")
    seed: int | None = Field(default=None, ge=0, le=2**53, description="Derives LoadGen's three seeds.")
    threads: int | None = Field(default=None, ge=1, le=1024, description="Framework intra-op threads.")
    trace_level: TraceLevelName = Field(default="model", description="How deep the agent traces each run.")
    parallelism: int = Field(default=4, ge=1, le=1000, description="At most this many Jobs of it at a time.")
    timeout_s: int = Field(default=3600, ge=10, le=604800, description="Each Job's activeDeadlineSeconds.")
    retries: int = Field(default=1, ge=0, le=10, description="Each Job's backoffLimit.")
    resources: JobResources = Field(
        default_factory=JobResources, description="Requests and limits of each run's container (see targets)."
    )
    queue_name: str | None = Field(
        default=None, min_length=1, max_length=63, description="Kueue LocalQueue (label kueue.x-k8s.io/queue-name)."
    )
    suspend: bool = Field(
        default=False,
        description="true: create no more Jobs and delete the running ones (their runs become Pending again); "
        "false: continue where it stopped.",
    )

    @model_validator(mode="after")
    def _bounded_and_consistent(self) -> EvaluationSpec:
        cells = len(self.models) * len(self.frameworks) * len(self.targets) * len(self.batch_sizes)
        if cells > MAX_MATRIX_RUNS:
            raise ValueError(
                f"the matrix models x frameworks x targets x batch_sizes has {cells} runs; at most "
                f"{MAX_MATRIX_RUNS} are allowed (split it into several Evaluations)"
            )
        for batch_size in self.batch_sizes:
            try:  # server without target_qps, max below min: refused as `mlmodelscope evaluate` refuses them
                self.run_settings(batch_size)
            except ValidationError as e:
                reasons = "; ".join(str(p["msg"]).removeprefix("Value error, ") for p in e.errors())
                raise ValueError(f"settings: {reasons}") from e
        return self

    def run_settings(self, batch_size: int) -> EvaluationSettings:
        """The EvaluationSettings of one run at ``batch_size`` (ValidationError when the spec's settings contradict
        each other, as ``mlmodelscope evaluate`` refuses them); ``seed`` derives LoadGen's three seeds."""
        values: dict[str, Any] = {
            "scenario": self.scenario,
            "mode": self.mode,
            "batch_size": batch_size,
            "warmup_queries": self.warmup_queries,
            "min_duration_s": self.min_duration_s,
            "max_duration_s": self.max_duration_s,
            "min_query_count": self.min_query_count,
            "max_query_count": self.max_query_count,
            "target_qps": self.target_qps,
            "latency_bound_ms": self.latency_bound_ms,
            "samples_per_query": self.samples_per_query,
        }
        if self.seed is not None:
            values["seeds"] = Seeds.from_single(self.seed)
        return EvaluationSettings(**values)


class RunFigures(_Strict):
    """The collector's figures for one run, in the units in their names (the operator computes none of them)."""

    p50_ms: float | None = Field(default=None, description="Median query latency.")
    p90_ms: float | None = Field(default=None, description="90th percentile query latency.")
    p99_ms: float | None = Field(default=None, description="99th percentile query latency.")
    throughput_samples_per_s: float | None = Field(default=None, description="Samples per second LoadGen measured.")
    top1: float | None = Field(default=None, description="Top-1 accuracy (fraction) of the accuracy run.")
    accuracy_metric: str | None = Field(
        default=None, description="The accuracy run's primary metric: top1 (classification), mAP (detection), mIoU."
    )
    accuracy_value: float | None = Field(default=None, description="That metric's value (fraction).")
    valid: bool | None = Field(default=None, description="LoadGen's verdict (performance, else accuracy run).")
    reason: str = Field(default="", description="Why the verdict is INVALID, when it is.")
    regression: Literal["no baseline", "baseline", "ok", "regressed"] | None = Field(
        default=None, description="The collector's regression check against the baseline of this run's labels."
    )
    regression_reason: str = Field(default="", description="Why the run regressed, when it did.")


class RunStatus(_Strict):
    """One run: its cell of the matrix, its Job, where it stands, and the collector's figures once stored."""

    name: str = Field(description="model/framework/arch-accelerator/bN[/rK]: this run's cell of the matrix.")
    model: str = Field(description="The Model resource.")
    framework: str = Field(description="The Framework resource.")
    arch: Architecture = Field(description="The target's CPU architecture.")
    accelerator: Accelerator = Field(description="The target's accelerator.")
    batch_size: int = Field(description="Samples per predictor call.")
    repetition: int = Field(default=0, description="Which repetition of the cell (0 ..< the target's repeats).")
    run_id: str = Field(description="The run's id in the collector (mlmodelscope runs show RUN_ID).")
    job_name: str = Field(description="The Job that runs it.")
    state: RunState = Field(default="Pending", description="Pending, Running, Succeeded or Failed.")
    attempts: int = Field(default=0, description="Pods the Job started (failed + active + succeeded).")
    message: str = Field(default="", description="Why the run is in this state (a failure, a pending pod, suspended).")
    restarts: int = Field(
        default=0,
        ge=0,
        description="How often spec.suspend stopped this run's Job; from the first on, its run id and Job name end "
        "in -s<restarts> (the collector keeps the stopped attempt as cancelled).",
    )
    spec_sha256: dict[str, str] = Field(
        default_factory=dict,
        description="sha256 of the canonical spec of the model, framework and dataset this run was planned with "
        "(keys model, framework, dataset); results record the same checksums.",
    )
    result: RunFigures | None = Field(default=None, description="The collector's figures, once the run succeeded.")


class Condition(_Strict):
    """A Kubernetes condition (as metav1.Condition); kubectl wait --for=condition=TYPE reads these."""

    type: str = Field(
        description="Ready (finished well), Succeeded / Failed (terminal), ResultValid (LoadGen verdicts), "
        "Regressed (against the baseline)."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", description="Why, in one CamelCase word.")
    message: str = Field(default="", description="Why, for people.")
    observed_generation: int | None = Field(
        default=None, alias="observedGeneration", description="The metadata.generation this condition describes."
    )
    last_transition_time: Timestamp = Field(
        alias="lastTransitionTime", description="When the status last changed (RFC 3339, UTC)."
    )


class EvaluationStatus(_Strict):
    """What the operator observed: every run, the phase, conditions and times."""

    phase: Phase = Field(
        default="Pending",
        description="Pending (no Job yet), Running, Suspended (spec.suspend), Succeeded (every run did), Failed "
        "(every run finished and one failed, or the spec cannot be satisfied).",
    )
    runs: list[RunStatus] = Field(default_factory=list, description="Every run of the matrix, in matrix order.")
    progress: str = Field(default="", description="'<finished>/<total>' runs, for the printer column.")
    valid: str = Field(default="", description="'<valid>/<total>' runs with a VALID verdict.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Succeeded, Failed, ResultValid and Regressed, one of each type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    start_time: Timestamp | None = Field(
        default=None, alias="startTime", description="When the operator created the first Job (RFC 3339, UTC)."
    )
    completion_time: Timestamp | None = Field(
        default=None,
        alias="completionTime",
        description="When the phase became Succeeded or Failed (RFC 3339, UTC); cleared when a changed spec "
        "reopens it.",
    )
    observed_generation: int | None = Field(
        default=None, alias="observedGeneration", description="The metadata.generation this status describes."
    )
    last_error: str = Field(default="", alias="lastError", description="The latest failure, for people.")


class Evaluation(BaseModel):
    """An evaluation of models x frameworks x targets x batch sizes, each run as one Job, results in the status."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: Literal["mlmodelscope.org/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Evaluation"]
    metadata: ObjectMeta
    spec: EvaluationSpec = Field(description="What to evaluate.")
    status: EvaluationStatus | None = Field(default=None, description="What the operator observed; written by it.")
