"""A report over several runs: MLModelScope's tables plus plots, rendered as self-contained HTML, Markdown, CSV
or JSON. The data comes in already fetched (the CLI reads it from the collector's API), so every number in a report
is the API's number.

HTML embeds its stylesheet and its charts (inline SVG from ``svg``): one file that opens offline.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape

from pydantic import BaseModel, ConfigDict

from mlmodelscope.core.analysis import svg
from mlmodelscope.core.analysis.compare import Comparison
from mlmodelscope.core.analysis.tables import (
    Cell,
    RunInfo,
    Table,
    batch_table,
    comparison_table,
    format_cell,
    layer_table,
    model_table,
    op_type_table,
)
from mlmodelscope.core.evaluation.batch_sweep import BatchSweep, batch_sweeps
from mlmodelscope.core.evaluation.results import RunResult


class RunComparison(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline_run_id: str
    candidate_run_id: str
    comparison: Comparison


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    generated_at: datetime
    source: str
    runs: list[RunInfo]
    comparisons: list[RunComparison]
    sweeps: list[BatchSweep]
    tables: list[Table]


def build_report(
    runs: Sequence[RunInfo], comparisons: Sequence[RunComparison], *, source: str, generated_at: datetime
) -> Report:
    # A sweep is the runs of one evaluation (same conditions); runs of other evaluations are not its points.
    evaluations: dict[str, list[RunResult]] = {}
    for run in runs:
        if run.result is not None:
            evaluations.setdefault(run.evaluation_id or run.run_id, []).append(run.result)
    sweeps = [sweep for results in evaluations.values() for sweep in batch_sweeps(results)]
    tables = [model_table(runs)]
    for run in runs:
        if run.analysis is not None and run.analysis.layers.layer_spans:
            tables += [layer_table(run), op_type_table(run)]
    if sweeps:
        tables.append(batch_table(sweeps))
    tables += [comparison_table(c.baseline_run_id, c.candidate_run_id, c.comparison) for c in comparisons]
    return Report(
        title=f"MLModelScope report: {', '.join(run.run_id for run in runs)}",
        generated_at=generated_at,
        source=source,
        runs=list(runs),
        comparisons=list(comparisons),
        sweeps=sweeps,
        tables=tables,
    )


def to_json(report: Report) -> str:
    return report.model_dump_json(indent=2) + "\n"


def csv_files(report: Report) -> dict[str, str]:
    """One CSV text per table, keyed by the table's name (raw numbers in base units)."""
    files = {}
    for table in report.tables:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table.columns)
        writer.writerows(["" if cell is None else cell for cell in row] for row in table.rows)
        files[table.name] = buffer.getvalue()
    return files


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report) -> str:
    lines = [f"# {report.title}", "", f"Generated {report.generated_at.isoformat()} from {report.source}.", ""]
    for table in report.tables:
        lines += [f"## {table.title}", ""]
        lines.append("| " + " | ".join(table.columns) + " |")
        lines.append("|" + "---|" * len(table.columns))
        for row in table.rows:
            cells = [_md_cell(format_cell(column, cell)) for column, cell in zip(table.columns, row, strict=True)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 20px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; font-size: 13px; }
th { background: #eef2f6; } td.num { text-align: right; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } svg { border: 1px solid #ddd; background: #fff; }
"""


def html_table(table: Table, cell_text: Callable[[str, Cell], str] = format_cell) -> str:
    """A table as HTML: numbers right-aligned, each cell's raw value in ``data-value`` beside its text
    (``cell_text(column, value)``, ``format_cell`` by default), for the report's tests and readers' scripts."""
    head = "".join(f"<th>{escape(column)}</th>" for column in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for column, cell in zip(table.columns, row, strict=True):
            kind = ' class="num"' if isinstance(cell, int | float) and not isinstance(cell, bool) else ""
            raw = "" if cell is None else escape(str(cell))
            cells.append(
                f'<td{kind} data-column="{escape(column)}" data-value="{raw}">{escape(cell_text(column, cell))}</td>'
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<h2>{escape(table.title)}</h2>\n<table data-table="{escape(table.name)}"><tr>{head}</tr>\n'
        + "\n".join(body)
        + "</table>"
    )


def _run_charts(run: RunInfo) -> list[str]:
    analysis = run.analysis
    if analysis is None:
        return []
    charts = [
        svg.histogram_chart(analysis.histogram, title=f"Latency distribution: {run.run_id}"),
        svg.latency_cdf_chart([(run.run_id, analysis.cdf)], title=f"Latency CDF: {run.run_id}"),
    ]
    layers = analysis.layers
    if layers.layer_spans:
        charts.append(
            svg.bar_chart(
                [layer.name for layer in layers.top_layers],
                [float(layer.total_ns) for layer in layers.top_layers],
                title=f"Top layers: {run.run_id}",
            )
        )
        charts.append(
            svg.bar_chart(
                [op.op_type for op in layers.op_types],
                [float(op.total_ns) for op in layers.op_types],
                title=f"Time by op type: {run.run_id}",
            )
        )
    return charts


def to_html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(report.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(report.title)}</h1>",
        f"<p>Generated {escape(report.generated_at.isoformat())} from {escape(report.source)}.</p>",
    ]
    for table in report.tables:
        parts.append(html_table(table))
    for run in report.runs:
        charts = _run_charts(run)
        if charts:
            parts.append(f'<h2>Plots: {escape(run.run_id)}</h2><div class="charts">' + "".join(charts) + "</div>")
    if report.sweeps:
        chart = svg.line_chart(
            [svg.Series(s.framework, [(p.batch_size, p.samples_per_s) for p in s.points]) for s in report.sweeps],
            title="Throughput vs batch size",
            x_label="batch size (log scale)",
            y_label="samples/s",
            log_x=True,
            kind="sweep",
        )
        parts.append(f'<h2>Throughput vs batch size</h2><div class="charts">{chart}</div>')
    with_cdf = [run for run in report.runs if run.analysis is not None]
    if len(with_cdf) > 1:
        chart = svg.line_chart(
            [
                svg.Series(run.run_id, [(p.latency_ns, p.fraction) for p in run.analysis.cdf])
                for run in with_cdf
                if run.analysis is not None
            ],
            title="Latency CDF of every run",
            x_label="latency per query (log scale)",
            y_label="share of queries",
            x_format="ns",
            y_format="%",
            log_x=True,
            kind="cdf",
        )
        parts.append(f'<h2>Runs side by side</h2><div class="charts">{chart}</div>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
