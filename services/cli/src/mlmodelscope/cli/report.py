"""``mlmodelscope report RUN... -o report.html``: a report over runs stored by the collector.

Reads each run's labels, result and analysis (``/api/v1/runs/{id}``, ``.../result``, ``.../analysis``) and, for two
or more runs, the comparison with the first (``/api/v1/compare``), then writes MLModelScope's tables (model
latency/throughput, layer latency top-N, latency by op type, throughput by batch size with the optimal batch size,
comparisons with verdicts) as self-contained HTML with embedded SVG plots, or as ``--format md|csv|json``. With
``--collector-url`` (or ``MLMODELSCOPE_COLLECTOR_URL``) it asks that collector; otherwise it starts one on the local
data folder, as ``runs list`` does. CSV writes one file per table: ``-o out.csv`` gives ``out.csv`` (the model
table) and ``out.<table>.csv`` for the others.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import typer
from pydantic import ValidationError

from mlmodelscope.cli.local import collector_to_ask
from mlmodelscope.cli.report_tasks import markdown_section, with_html_section, with_task_tables
from mlmodelscope.cli.terminal import literal_console
from mlmodelscope.core.analysis.compare import Comparison
from mlmodelscope.core.analysis.report import (
    Report,
    RunComparison,
    build_report,
    csv_files,
    to_html,
    to_json,
    to_markdown,
)
from mlmodelscope.core.analysis.run_analysis import RunAnalysis
from mlmodelscope.core.analysis.tables import RunInfo
from mlmodelscope.core.collector_client import CollectorClient
from mlmodelscope.core.collector_paths import run_api_path
from mlmodelscope.core.errors import MLModelScopeError
from mlmodelscope.core.evaluation.results import RunResult

ReportFormat = Literal["html", "md", "csv", "json"]
_TIMEOUT_S = 120.0


_OPTIONAL = frozenset({404, 422})  # no such document for this run: the report shows the rest


def _result_of(run_id: str, document: Any) -> RunResult | None:
    """The run's result, or None (with a warning) when the stored document is not an RunResult of this
    version, e.g. one whose non-finite numbers the collector served as null: the report shows the rest."""
    if document is None:
        return None
    try:
        return RunResult.model_validate(document)
    except ValidationError as e:
        problem = e.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        literal_console(stderr=True).print(
            f"warning: run {run_id}'s result is left out of the report: {where}: {problem['msg']}"
        )
        return None


def collect(collector_url: str, run_ids: list[str], top: int) -> Report:
    """Fetch everything the report needs from the collector and build it."""
    runs: list[RunInfo] = []
    comparisons: list[RunComparison] = []
    with CollectorClient(collector_url, timeout_s=_TIMEOUT_S) as client:
        for run_id in run_ids:
            run_path = run_api_path(run_id)  # an id is a path segment, whatever it holds
            detail = client.get_json(run_path)
            result = client.get_json(f"{run_path}/result", missing=_OPTIONAL)
            analysis = client.get_json(f"{run_path}/analysis?top={top}", missing=_OPTIONAL)
            runs.append(
                RunInfo(
                    run_id=run_id,
                    evaluation_id=detail.get("evaluation_id"),
                    model=detail.get("model"),
                    framework=detail.get("framework"),
                    arch=detail.get("arch"),
                    accelerator=detail.get("accelerator"),
                    scenario=detail.get("scenario"),
                    batch_size=detail.get("batch_size"),
                    result=_result_of(run_id, result),
                    analysis=RunAnalysis.model_validate(analysis) if analysis is not None else None,
                )
            )
        analysed = [run.run_id for run in runs if run.analysis is not None]
        if len(analysed) > 1:
            view = client.get_json("/api/v1/compare?" + urlencode([("run", r) for r in analysed]))
            for candidate in view["candidates"]:
                comparisons.append(
                    RunComparison(
                        baseline_run_id=view["baseline"]["run_id"],
                        candidate_run_id=candidate["candidate"]["run_id"],
                        comparison=Comparison.model_validate(candidate["comparison"]),
                    )
                )
    return build_report(runs, comparisons, source=collector_url, generated_at=datetime.now(UTC))


def write(report: Report, output: Path, output_format: ReportFormat) -> list[Path]:
    """Write the report; detection/segmentation runs add their accuracy tables (``report_tasks``)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if output_format == "csv":
        written = []
        for index, (name, text) in enumerate(csv_files(with_task_tables(report)).items()):
            path = output if index == 0 else output.with_name(f"{output.stem}.{name}{output.suffix or '.csv'}")
            path.write_text(text, encoding="utf-8")
            written.append(path)
        return written
    if output_format == "html":
        text = with_html_section(to_html(report), report)
    elif output_format == "md":
        text = to_markdown(report) + markdown_section(report)
    else:
        text = to_json(with_task_tables(report))
    output.write_text(text, encoding="utf-8")
    return [output]


def _format_of(output: Path, requested: str | None) -> ReportFormat:
    choice = requested or {".md": "md", ".csv": "csv", ".json": "json"}.get(output.suffix.lower(), "html")
    if choice not in ("html", "md", "csv", "json"):
        raise MLModelScopeError(f"--format '{choice}' is not one of html, md, csv, json.")
    return choice  # type: ignore[return-value]


def report(
    run_ids: Annotated[
        list[str], typer.Argument(help="Run ids (see `mlmodelscope runs list`); the first is the baseline.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (report.html, report.md, ...).")],
    output_format: Annotated[
        str | None, typer.Option("--format", "-f", help="html | md | csv | json (default: from the file's suffix).")
    ] = None,
    top: Annotated[int, typer.Option(min=1, max=100, help="Layers in the layer latency table.")] = 10,
    collector_url: Annotated[
        str | None, typer.Option("--collector-url", help="Collector to ask (default: start one on the local data).")
    ] = None,
) -> None:
    """Write a report over runs: latency/throughput, layer top-N, op types, optimal batch size, comparisons."""
    chosen = _format_of(output, output_format)
    with collector_to_ask(collector_url) as url:
        built = collect(url, list(dict.fromkeys(run_ids)), top)
    for path in write(built, output, chosen):
        literal_console().print(f"wrote {path}")
