"""The report's accuracy tables for object detection and semantic segmentation, across the reported runs.

The core's report has one accuracy column, top-1, which detection and segmentation runs do not have. These tables
add their figures (``collector.task_metrics``, the same comparison the compare page shows): per task, one row per
run with mAP@[.5:.95], mAP@.5, mAP@.75, mAP by object size and AR@100 (detection) or mIoU and pixel accuracy
(segmentation), and one table of AP / IoU per class with a column per run; the HTML report adds the precision-recall
curves of the detection runs. In CSV and JSON they are tables like the others (raw fractions, -1 where COCO has
nothing to average); in Markdown and HTML the fractions are shown in %, -1 as n/a.

When two or more runs of a task are reported, an agreement table compares each with the first run of that task
(``summary.measure``, the measure ``evaluate`` prints): probabilities for classification, boxes for detection
(matched fraction, mean matched IoU, largest score difference, boxes only one run found), masks for segmentation
(pixel agreement). It reads the runs' per-sample answers (outputs.npz, detections.json, masks.npz) where their
results say they are, so it needs them on this machine; a run whose agreement cannot be measured has a row with
the reason instead of figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from mlmodelscope.collector.task_metrics import TaskComparison, comparison_charts, run_label, task_comparisons
from mlmodelscope.core.analysis.report import Report, html_table
from mlmodelscope.core.analysis.tables import Cell, RunInfo, Table
from mlmodelscope.core.errors import MLModelScopeError
from mlmodelscope.core.evaluation.agreement import Agreement
from mlmodelscope.core.evaluation.agreement_tasks import DetectionAgreement, SegmentationAgreement
from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.evaluation.summary import TaskAgreement, measure

_TITLES = {
    "classification": "Classification",
    "object_detection": "Object detection",
    "semantic_segmentation": "Semantic segmentation",
}
AgreementTask = Literal["classification", "object_detection", "semantic_segmentation"]
_AGREEMENT_FIGURES: dict[AgreementTask, tuple[str, ...]] = {
    "classification": (
        "samples",
        "top1_agreement",
        "max_abs_probability_diff",
        "mean_kl_divergence",
        "mean_js_divergence",
    ),
    "object_detection": (
        "framework_detections",
        "matched",
        "matched_fraction",
        "mean_matched_iou",
        "max_abs_score_diff",
        "unmatched_reference",
        "unmatched_framework",
    ),
    "semantic_segmentation": ("images", "pixels", "differing_pixels", "pixel_agreement"),
}
_AGREEMENT_NOTES: dict[AgreementTask, str] = {
    "classification": "top-1 agreement, max absolute probability difference, mean KL and JS divergence (nats)",
    "object_detection": "boxes paired by class and IoU >= 0.5; mean IoU and largest score difference of the pairs; "
    "boxes only the reference / only this run found",
    "semantic_segmentation": "share of the original images' pixels given the same class",
}
# Agreement figures near 1 or 0 need more digits than the default 2-decimal percentage.
_FORMATS: dict[str, Callable[[float], str]] = {
    "max_abs_probability_diff": "{:.1e}".format,
    "mean_kl_divergence": "{:.1e}".format,
    "mean_js_divergence": "{:.1e}".format,
    "max_abs_score_diff": "{:.1e}".format,
    "mean_matched_iou": "{:.6f}".format,
    "pixel_agreement": "{:.4%}".format,
}


def comparisons_of(runs: Sequence[RunInfo]) -> list[TaskComparison]:
    return task_comparisons([(run.run_id, run.result) for run in runs])


def _tables(comparison: TaskComparison) -> list[Table]:
    title = _TITLES[comparison.task]
    keys = [key for key, _ in comparison.figures]
    labels = ", ".join(label for _, label in comparison.figures)
    summary = Table(
        name=f"accuracy-{comparison.task}",
        title=f"{title}: {labels}",
        columns=["run_id", "framework", *keys],
        rows=[[run.run_id, run.label, *(run.figures[key] for key in keys)] for run in comparison.runs],
    )
    per_class_rows: list[list[Cell]] = [
        [name, *(run.per_class.get(name) for run in comparison.runs)] for name in comparison.classes
    ]
    per_class = Table(
        name=f"per-class-{comparison.task}",
        title=f"{title}: {comparison.per_class_figure} per class (one column per run)",
        columns=["class", *(run.run_id for run in comparison.runs)],
        rows=per_class_rows,
    )
    return [summary, per_class] if comparison.classes else [summary]


def _agreement_task(result: RunResult | None) -> AgreementTask | None:
    accuracy = result.accuracy if result is not None else None
    if accuracy is None:
        return None
    if accuracy.detection is not None:
        return "object_detection"
    if accuracy.segmentation is not None:
        return "semantic_segmentation"
    if accuracy.outputs is not None or accuracy.top1 is not None:
        return "classification"
    return None


def _figures(measured: TaskAgreement, task: AgreementTask) -> list[Cell]:
    expected = {
        "classification": Agreement,
        "object_detection": DetectionAgreement,
        "semantic_segmentation": SegmentationAgreement,
    }[task]
    if not isinstance(measured, expected):
        raise MLModelScopeError(f"the runs answered as {type(measured).__name__}, not {task}.")
    return [getattr(measured, key) for key in _AGREEMENT_FIGURES[task]]


def agreement_tables(runs: Sequence[RunInfo]) -> list[Table]:
    """Per task with two runs or more: each run's agreement with the first run of that task, or why there is none."""
    by_task: dict[AgreementTask, list[tuple[str, RunResult]]] = {}
    for run in runs:
        task = _agreement_task(run.result)
        if task is not None and run.result is not None:
            by_task.setdefault(task, []).append((run.run_id, run.result))
    tables = []
    for task, members in by_task.items():
        if len(members) < 2:
            continue
        (reference_id, reference), others = members[0], members[1:]
        keys = _AGREEMENT_FIGURES[task]
        rows: list[list[Cell]] = []
        for run_id, result in others:
            label = run_label(result)
            try:
                rows.append([run_id, label, reference_id, *_figures(measure(reference, result), task), ""])
            except MLModelScopeError as e:
                rows.append([run_id, label, reference_id, *([None] * len(keys)), str(e)])
        tables.append(
            Table(
                name=f"agreement-{task}",
                title=f"{_TITLES[task]}: agreement with {reference_id} ({run_label(reference)}): "
                f"{_AGREEMENT_NOTES[task]}",
                columns=["run_id", "framework", "reference_run_id", *keys, "reason"],
                rows=rows,
            )
        )
    return tables


def task_tables(runs: Sequence[RunInfo]) -> list[Table]:
    tables = [table for comparison in comparisons_of(runs) for table in _tables(comparison)]
    return tables + agreement_tables(runs)


def with_task_tables(report: Report) -> Report:
    """The report with the task tables after its own (for CSV and JSON)."""
    return report.model_copy(update={"tables": [*report.tables, *task_tables(report.runs)]})


def _cell(value: Cell, column: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value < 0:
            return "n/a"
        return _FORMATS[column](value) if column in _FORMATS else f"{value:.2%}"
    return str(value)


def markdown_section(report: Report) -> str:
    lines: list[str] = [""]
    for table in task_tables(report.runs):
        lines += [f"## {table.title}", "", "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
        lines += [
            "| "
            + " | ".join(
                _cell(cell, column).replace("|", "\\|") for column, cell in zip(table.columns, row, strict=True)
            )
            + " |"
            for row in table.rows
        ]
        lines.append("")
    return "\n".join(lines) if len(lines) > 1 else ""


def html_section(report: Report) -> str:
    """The task tables and, for detection, the precision-recall curves of every run (inline SVG)."""
    parts = [html_table(table, lambda column, cell: _cell(cell, column)) for table in task_tables(report.runs)]
    results: dict[str, RunResult] = {run.run_id: run.result for run in report.runs if run.result is not None}
    for comparison in comparisons_of(report.runs):
        chart = comparison_charts(comparison, results)
        if chart:
            parts.append(f'<h2>Precision-recall curves</h2><div class="charts">{chart}</div>')
    return "\n".join(parts)


def with_html_section(html: str, report: Report) -> str:
    section = html_section(report)
    if not section:
        return html
    head, tail = html.rsplit("</body>", 1)
    return f"{head}{section}\n</body>{tail}"
