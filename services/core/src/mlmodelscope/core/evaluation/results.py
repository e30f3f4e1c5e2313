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

from mlmodelscope.core.evaluation.environment import Environment
from mlmodelscope.core.evaluation.loadgen_report import ConstraintCheck
from mlmodelscope.core.evaluation.schedule import ScheduleEstimate
from mlmodelscope.core.evaluation.settings import EvaluationSettings

SCHEMA_VERSION = 1


class _Frozen(BaseModel):
    # NaN and infinities travel as "NaN"/"Infinity" strings (JSON has no literal for them) and validate back.
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")


class LatencyStats(_Frozen):
    """Latency statistics of one run's calls or queries, in ns (``statistics.latency_stats`` computes them)."""

    count: int
    min_ns: int
    max_ns: int
    mean_ns: float
    trimmed_mean_20_ns: float
    p50_ns: int
    p90_ns: int
    p95_ns: int
    p97_ns: int
    p99_ns: int
    p99_9_ns: int


class OutputsFile(_Frozen):
    """Where an accuracy run's per-sample probabilities were written, and what they hold."""

    path: str
    sha256: str
    samples: int = Field(ge=0, description="Samples the run answered.")
    classes: int = Field(ge=0)


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
    schedule: ScheduleEstimate | None = Field(
        default=None,
        description="LoadGen's pre-generated query schedule: its hints, queries and memory, estimated before the "
        "test and as LoadGen logged it (None in results made before schedules were estimated).",
    )


class DetectionMetrics(_Frozen):
    """COCO's box metrics (pycocotools' COCOeval, iouType bbox) of an object-detection accuracy run.

    Every figure is a fraction in [0, 1], or -1 where COCO has nothing to average (e.g. no large objects), as
    COCOeval reports it. The detections themselves are kept as a COCO results JSON (``detections_file``).
    """

    map: float = Field(description="mAP@[.5:.95]: AP averaged over IoU thresholds 0.50, 0.55, ..., 0.95.")
    map_50: float = Field(description="AP at IoU 0.50.")
    map_75: float = Field(description="AP at IoU 0.75.")
    map_small: float = Field(description="mAP@[.5:.95] over objects below 32^2 pixels.")
    map_medium: float = Field(description="mAP@[.5:.95] over objects of 32^2..96^2 pixels.")
    map_large: float = Field(description="mAP@[.5:.95] over objects above 96^2 pixels.")
    mar_100: float = Field(description="Recall averaged over IoU thresholds, at most 100 detections per image.")
    per_class_ap: dict[str, float] = Field(
        default_factory=dict, description="mAP@[.5:.95] per class name (-1: the class has no ground truth)."
    )
    pr_curve: dict[str, list[float]] = Field(
        default_factory=dict,
        description="Precision at recall 0.00, 0.01, ..., 1.00 (IoU 0.50, all areas, 100 detections), "
        "averaged over classes: keys 'recall' and 'precision'.",
    )
    detections: int = Field(ge=0, description="Detections kept after post-processing, over all images.")
    detections_file: str = Field(description="The COCO results JSON ([{image_id, category_id, bbox, score}]).")
    detections_sha256: str


class SegmentationMetrics(_Frozen):
    """Semantic segmentation metrics from the confusion matrix over every pixel of every original-size image."""

    mean_iou: float = Field(description="Mean over classes present (in truth or prediction) of TP / (TP+FP+FN).")
    pixel_accuracy: float = Field(description="Correct pixels / all pixels.")
    per_class_iou: dict[str, float] = Field(
        default_factory=dict, description="IoU per class name (absent: the class is in neither truth nor prediction)."
    )
    classes: int = Field(ge=1, description="Classes of the confusion matrix (background included).")
    masks_file: str | None = Field(
        default=None, description="The predicted masks (an .npz of uint8 arrays per item) for agreement."
    )


class AccuracyResult(_Frozen):
    top1: float | None = Field(default=None, description="Classification: top-1 accuracy (None for other tasks).")
    top5: float | None = Field(default=None, description="Classification: top-5 accuracy (None for other tasks).")
    count: int
    verdict: Verdict
    log_dir: str
    outputs: OutputsFile | None = Field(
        default=None, description="Per-sample probabilities of this run (for cross-framework agreement)."
    )
    detection: DetectionMetrics | None = Field(default=None, description="Object detection: COCO box metrics.")
    segmentation: SegmentationMetrics | None = Field(default=None, description="Semantic segmentation metrics.")

    @property
    def primary(self) -> tuple[str, float] | None:
        """The task's headline figure: ('top1', x), ('mAP', x) or ('mIoU', x)."""
        if self.top1 is not None:
            return "top1", self.top1
        if self.detection is not None:
            return "mAP", self.detection.map
        if self.segmentation is not None:
            return "mIoU", self.segmentation.mean_iou
        return None


class LoadTime(_Frozen):
    artifact_fetch_s: float
    dataset_s: float = Field(
        description="Fetch (unpack) and open the dataset: list its items and read its truth. Decoding and "
        "pre-processing happen in LoadGen's untimed load callbacks, inside the accuracy and performance runs."
    )
    model_load_s: float = Field(description="Predictor load: the framework's cold start.")
    warmup_s: float = Field(description="Warm-up calls, and the calibration test through LoadGen after them.")
    calibration_s: float = Field(
        default=0.0, description="Of warmup_s: the short LoadGen test that measures what a query costs there."
    )


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


class RunResult(_Frozen):
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
