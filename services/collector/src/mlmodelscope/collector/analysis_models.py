"""Request and response models (pydantic) of the analysis, baseline, regression, catalog and launch endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from mlmodelscope.collector.storage.timeutil import utc
from mlmodelscope.collector.task_metrics import TaskComparison
from mlmodelscope.core.analysis.compare import Comparison
from mlmodelscope.core.analysis.regression import RegressionPolicy, RegressionVerdict
from mlmodelscope.core.evaluation.batch_sweep import BatchSweep

UtcDatetime = Annotated[datetime, AfterValidator(utc)]
RunIdText = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
NameText = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class ComparedRun(_Response):
    run_id: str
    model: str | None
    framework: str | None
    arch: str | None
    accelerator: str | None
    scenario: str | None
    batch_size: int | None


class CandidateComparison(_Response):
    candidate: ComparedRun
    comparison: Comparison


class CompareView(_Response):
    baseline: ComparedRun = Field(description="The first run given: every other run is compared with it.")
    candidates: list[CandidateComparison]
    accuracy: list[TaskComparison] = Field(
        default_factory=list,
        description="Detection (mAP, AP per class) and segmentation (mIoU, IoU per class) figures of the compared "
        "runs of those tasks, side by side.",
    )


class SweepList(_Response):
    evaluation_id: str
    sweeps: list[BatchSweep]


class BaselineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: RunIdText


class BaselineView(_Response):
    model: str
    framework: str
    arch: str
    accelerator: str
    scenario: str
    batch_size: int
    run_id: str
    set_at: UtcDatetime


class BaselineList(_Response):
    items: list[BaselineView]
    policy: RegressionPolicy


class RegressionStatus(_Response):
    run_id: str
    state: Literal["no baseline", "baseline", "ok", "regressed"]
    stored: bool = Field(description="True: the monitor's stored check; False: the rule applied on request.")
    baseline_run_id: str | None = None
    verdict: RegressionVerdict | None = None
    comparison: Comparison | None = None
    checked_at: UtcDatetime | None = None


class CatalogModel(_Response):
    name: str
    task: str
    framework: str
    version: str
    dataset: str | None
    formats: list[str]
    description: str


class CatalogFramework(_Response):
    name: str
    version: str
    formats: list[str]
    accelerators: list[str]
    description: str


class RefusedModel(_Response):
    model: str
    reasons: list[str] = Field(description="Why the model cannot be evaluated on the dataset, one sentence each.")


class CatalogDataset(_Response):
    name: str
    task: str
    size: int
    description: str
    kind: str = Field(default="", description="Its source kind: folder, coco, npz or synthetic.")
    fitting_models: list[str] = Field(
        default_factory=list, description="The listed models that can be evaluated on it (compatibility.fit)."
    )
    refused_models: list[RefusedModel] = Field(
        default_factory=list, description="The listed models that cannot, with the reasons."
    )


class CatalogResponse(_Response):
    assets: list[str] = Field(description="The asset folders the catalog was read from.")
    models: list[CatalogModel]
    frameworks: list[CatalogFramework]
    datasets: list[CatalogDataset]


# One launch starts frameworks x batch sizes agents: 8 x 16 at most.
MAX_LAUNCH_BATCH_SIZES = 16


class LaunchRequest(BaseModel):
    """An evaluation to start: one agent per framework x batch size, as ``mlmodelscope evaluate`` would."""

    model_config = ConfigDict(extra="forbid")

    model: NameText
    frameworks: list[NameText] = Field(min_length=1, max_length=8)
    dataset: NameText | None = None
    scenario: Literal["single-stream", "multi-stream", "server", "offline"] = "single-stream"
    mode: Literal["accuracy", "performance", "both"] = "both"
    batch_sizes: list[Annotated[int, Field(ge=1, le=65536)]] = Field(
        default_factory=lambda: [1],
        min_length=1,
        max_length=MAX_LAUNCH_BATCH_SIZES,
        description=f"Distinct batch sizes, at most {MAX_LAUNCH_BATCH_SIZES} (one agent per framework x size).",
        json_schema_extra={"uniqueItems": True},
    )
    min_duration_s: float = Field(default=10.0, gt=0, le=3600)
    trace_level: Literal["no", "application", "model", "framework"] = "model"
    device: Literal["cpu", "gpu", "fpga"] = "cpu"
    arch: Literal["amd64", "arm64", "ppc64le"] = Field(default="amd64", description="Cluster launches: node arch.")

    @field_validator("batch_sizes")
    @classmethod
    def _distinct_batch_sizes(cls, sizes: list[int]) -> list[int]:
        repeated = sorted({size for size in sizes if sizes.count(size) > 1})
        if repeated:
            raise ValueError(f"batch sizes repeat ({', '.join(map(str, repeated))}): give each size once")
        return sizes


class LaunchResponse(_Response):
    evaluation_id: str
    run_ids: list[str]
