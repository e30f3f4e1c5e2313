"""Object-detection and segmentation figures of several runs side by side: the compare API and page, the run page's
charts and the CLI report all show them from here, so every place gives the same numbers under the same names.

A run's accuracy is compared within its task only: detection runs by COCO's box metrics (mAP@[.5:.95], mAP@.5,
mAP@.75, by object size, AR@100) and AP per class; segmentation runs by mean IoU, pixel accuracy and IoU per
class. COCO writes -1 where it has nothing to average (no large objects, a class without ground truth): such a
value is kept as it is in the numbers and shown as "n/a".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.analysis import svg
from mlmodelscope.core.evaluation.results import DetectionMetrics, RunResult, SegmentationMetrics

TaskName = Literal["object_detection", "semantic_segmentation"]
DETECTION_FIGURES: tuple[tuple[str, str], ...] = (
    ("map", "mAP@[.5:.95]"),
    ("map_50", "mAP@.5"),
    ("map_75", "mAP@.75"),
    ("map_small", "mAP small"),
    ("map_medium", "mAP medium"),
    ("map_large", "mAP large"),
    ("mar_100", "AR@100"),
)
SEGMENTATION_FIGURES: tuple[tuple[str, str], ...] = (("mean_iou", "mIoU"), ("pixel_accuracy", "pixel accuracy"))


class TaskRun(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    label: str = Field(description="How the run is named in tables: its framework (and version), or its id.")
    figures: dict[str, float] = Field(description="Figure key (map, map_50, ..., mean_iou) -> value; -1: n/a.")
    per_class: dict[str, float] = Field(description="Class name -> AP (detection) or IoU (segmentation).")


class TaskComparison(BaseModel):
    """One task's accuracy figures over the runs of that task, in the order the runs were given."""

    model_config = ConfigDict(frozen=True)

    task: TaskName
    figures: list[tuple[str, str]] = Field(description="(key, label) of each figure, in display order.")
    per_class_figure: str = Field(description="What per_class holds: 'AP' or 'IoU'.")
    classes: list[str] = Field(description="Every class of any run, in first-seen order.")
    runs: list[TaskRun]


def _detection_run(run_id: str, label: str, metrics: DetectionMetrics) -> TaskRun:
    figures = {key: float(getattr(metrics, key)) for key, _ in DETECTION_FIGURES}
    return TaskRun(run_id=run_id, label=label, figures=figures, per_class=dict(metrics.per_class_ap))


def _segmentation_run(run_id: str, label: str, metrics: SegmentationMetrics) -> TaskRun:
    figures = {key: float(getattr(metrics, key)) for key, _ in SEGMENTATION_FIGURES}
    return TaskRun(run_id=run_id, label=label, figures=figures, per_class=dict(metrics.per_class_iou))


def _comparison(task: TaskName, runs: list[TaskRun]) -> TaskComparison:
    classes = list(dict.fromkeys(name for run in runs for name in run.per_class))
    figures = DETECTION_FIGURES if task == "object_detection" else SEGMENTATION_FIGURES
    per_class = "AP" if task == "object_detection" else "IoU"
    return TaskComparison(task=task, figures=list(figures), per_class_figure=per_class, classes=classes, runs=runs)


def run_label(result: RunResult) -> str:
    return f"{result.framework.name} {result.framework.version}".strip()


def task_comparisons(results: Sequence[tuple[str, RunResult | None]]) -> list[TaskComparison]:
    """The detection and the segmentation comparison of ``(run id, result)`` pairs (a task no run has is left
    out; classification runs are compared by top-1 elsewhere)."""
    detection: list[TaskRun] = []
    segmentation: list[TaskRun] = []
    for run_id, result in results:
        accuracy = result.accuracy if result is not None else None
        if result is None or accuracy is None:
            continue
        if accuracy.detection is not None:
            detection.append(_detection_run(run_id, run_label(result), accuracy.detection))
        if accuracy.segmentation is not None:
            segmentation.append(_segmentation_run(run_id, run_label(result), accuracy.segmentation))
    comparisons = []
    if detection:
        comparisons.append(_comparison("object_detection", detection))
    if segmentation:
        comparisons.append(_comparison("semantic_segmentation", segmentation))
    return comparisons


def pr_points(metrics: DetectionMetrics) -> list[tuple[float, float]]:
    """(recall, precision) of the averaged PR curve; recall levels no detection reached (COCO's -1) left out."""
    recall = metrics.pr_curve.get("recall", [])
    precision = metrics.pr_curve.get("precision", [])
    return [(r, p) for r, p in zip(recall, precision, strict=False) if p >= 0]


def pr_chart(series: Sequence[tuple[str, DetectionMetrics]], *, title: str = "Precision-recall (IoU 0.50)") -> str:
    """Precision over recall of one or several detection runs (SVG, one line per run)."""
    return svg.line_chart(
        [svg.Series(name, pr_points(metrics)) for name, metrics in series],
        title=title,
        x_label="recall",
        y_label="precision",
        y_format="%",
        kind="pr-curve",
    )


def per_class_chart(values: dict[str, float], *, title: str) -> str:
    """Per-class AP or IoU as horizontal bars, best first (classes with n/a left out)."""
    ranked = sorted(((name, v) for name, v in values.items() if v >= 0), key=lambda item: -item[1])
    return svg.bar_chart([n for n, _ in ranked], [v for _, v in ranked], title=title, value_format="%")


def result_charts(result: RunResult | None) -> dict[str, str]:
    """The run page's accuracy charts: the PR curve and AP per class (detection), or IoU per class."""
    accuracy = result.accuracy if result is not None else None
    if accuracy is None:
        return {}
    charts = {}
    if accuracy.detection is not None:
        if pr_points(accuracy.detection):
            charts["pr_curve"] = pr_chart([("all classes", accuracy.detection)])
        if accuracy.detection.per_class_ap:
            charts["per_class_ap"] = per_class_chart(accuracy.detection.per_class_ap, title="AP per class")
    if accuracy.segmentation is not None and accuracy.segmentation.per_class_iou:
        charts["per_class_iou"] = per_class_chart(accuracy.segmentation.per_class_iou, title="IoU per class")
    return charts


def comparison_charts(comparison: TaskComparison, results: dict[str, RunResult]) -> str:
    """The PR curves of every detection run (one chart), or nothing for segmentation (the tables say it all)."""
    if comparison.task != "object_detection":
        return ""
    series = []
    for run in comparison.runs:
        accuracy = results[run.run_id].accuracy
        if accuracy is not None and accuracy.detection is not None:
            series.append((f"{run.label} ({run.run_id})", accuracy.detection))
    return pr_chart(series, title="Precision-recall of every run (IoU 0.50)")
