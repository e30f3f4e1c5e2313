"""The report's accuracy tables for object detection and semantic segmentation, across the reported runs.

The core's report has one accuracy column, top-1, which detection and segmentation runs do not have. These tables
add their figures (``collector.task_metrics``, the same comparison the compare page shows): per task, one row per
run with mAP@[.5:.95], mAP@.5, mAP@.75, mAP by object size and AR@100 (detection) or mIoU and pixel accuracy
(segmentation), and one table of AP / IoU per class with a column per run; the HTML report adds the precision-recall
curves of the detection runs. In CSV and JSON they are tables like the others (raw fractions, -1 where COCO has
nothing to average); in Markdown and HTML the fractions are shown in %, -1 as n/a.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from mlmodelscope.collector.task_metrics import TaskComparison, comparison_charts, task_comparisons
from mlmodelscope.core.analysis.report import Report
from mlmodelscope.core.analysis.tables import Cell, RunInfo, Table
from mlmodelscope.core.evaluation.results import EvaluationResult

_TITLES = {"object_detection": "Object detection", "semantic_segmentation": "Semantic segmentation"}


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


def task_tables(runs: Sequence[RunInfo]) -> list[Table]:
    return [table for comparison in comparisons_of(runs) for table in _tables(comparison)]


def with_task_tables(report: Report) -> Report:
    """The report with the task tables after its own (for CSV and JSON)."""
    return report.model_copy(update={"tables": [*report.tables, *task_tables(report.runs)]})


def _cell(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "n/a" if value < 0 else f"{value:.2%}"
    return str(value)


def markdown_section(report: Report) -> str:
    lines: list[str] = [""]
    for table in task_tables(report.runs):
        lines += [f"## {table.title}", "", "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
        lines += ["| " + " | ".join(_cell(cell).replace("|", "\\|") for cell in row) + " |" for row in table.rows]
        lines.append("")
    return "\n".join(lines) if len(lines) > 1 else ""


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{escape(column)}</th>" for column in table.columns)
    rows = []
    for row in table.rows:
        cells = []
        for column, cell in zip(table.columns, row, strict=True):
            kind = ' class="num"' if isinstance(cell, float) else ""
            raw = "" if cell is None else escape(str(cell))
            cells.append(f'<td{kind} data-column="{escape(column)}" data-value="{raw}">{escape(_cell(cell))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<h2>{escape(table.title)}</h2>\n<table data-table="{escape(table.name)}"><tr>{head}</tr>\n'
        + "\n".join(rows)
        + "</table>"
    )


def html_section(report: Report) -> str:
    """The task tables and, for detection, the precision-recall curves of every run (inline SVG)."""
    parts = [_html_table(table) for table in task_tables(report.runs)]
    results: dict[str, EvaluationResult] = {run.run_id: run.result for run in report.runs if run.result is not None}
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
