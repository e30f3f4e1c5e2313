"""``mlmodelscope runs list`` and ``mlmodelscope trace export``: read past evaluations back from the collector.

With ``--collector-url`` (or ``MLMODELSCOPE_COLLECTOR_URL``) they ask that collector, e.g. one in a cluster;
otherwise they start a collector on the local data folder for the duration of the command, so everything local
mode recorded stays readable after the evaluation ended.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import typer
from rich.table import Table

from mlmodelscope.cli.local import collector_to_ask, data_dir
from mlmodelscope.cli.plain_help import cli_app
from mlmodelscope.cli.terminal import literal_console
from mlmodelscope.core.collector_client import CollectorClient, runs_path
from mlmodelscope.core.collector_paths import run_api_path
from mlmodelscope.core.tracing.chrome import validate_chrome_trace

runs_app = cli_app(help="Past evaluations stored by the collector.", no_args_is_help=True)
trace_app = cli_app(help="Traces of runs.", no_args_is_help=True)

CollectorUrl = Annotated[
    str | None, typer.Option("--collector-url", help="Collector to ask (default: start one on the local data).")
]


@runs_app.command("list")
def list_runs(
    collector_url: CollectorUrl = None,
    model: Annotated[str | None, typer.Option(help="Only runs of this model.")] = None,
    framework: Annotated[str | None, typer.Option(help="Only runs on this framework.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many runs.")] = 50,
) -> None:
    """List runs, newest first."""
    filters = {"limit": limit, "model": model, "framework": framework}
    query = urlencode({name: value for name, value in filters.items() if value})
    with collector_to_ask(collector_url) as url, CollectorClient(url) as client:
        page: dict[str, Any] = client.get_json(runs_path(query))
    table = Table("run", "status", "model", "framework", "scenario", "batch", "accuracy", "samples/s", "started")
    for run in page["items"]:
        throughput = f"{run['throughput_samples_per_s']:,.1f}" if run.get("throughput_samples_per_s") else "-"
        table.add_row(
            run["run_id"],
            run["status"],
            run.get("model") or "-",
            run.get("framework") or "-",
            run.get("scenario") or "-",
            str(run.get("batch_size") or "-"),
            accuracy_cell(run),
            throughput,
            str(run.get("started_at") or "-"),
        )
    literal_console().print(table)
    literal_console().print(f"{len(page['items'])} of {page['total']} runs")


def accuracy_cell(run: dict[str, Any]) -> str:
    """A run's primary accuracy: 'top1 0.9889', 'mAP 0.4123', 'mIoU 0.7012' (a collector before schema 3 gives
    only accuracy_top1)."""
    metric, value = run.get("accuracy_metric"), run.get("accuracy_value")
    if metric is None or value is None:
        metric, value = "top1", run.get("accuracy_top1")
    return "-" if value is None else f"{metric} {value:.4f}"


PERFETTO_SUFFIXES = (".pftrace", ".perfetto-trace", ".pb")


@trace_app.command("export")
def export_trace(
    run_id: Annotated[str, typer.Argument(help="Run id (see `mlmodelscope runs list`).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write: Chrome-trace JSON, or Perfetto protobuf (.pftrace).")
    ],
    trace_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="chrome (JSON), perfetto (protobuf: smaller, nanoseconds) or auto: perfetto for a .pftrace, "
            ".perfetto-trace or .pb output, chrome otherwise.",
        ),
    ] = "auto",
    collector_url: CollectorUrl = None,
) -> None:
    """Write a run's timeline (all levels) as Chrome-trace JSON or Perfetto's protobuf trace, for ui.perfetto.dev
    (both) or chrome://tracing (JSON)."""
    chosen = _trace_format(trace_format, output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    try:
        with collector_to_ask(collector_url) as url:
            path = run_api_path(run_id, "trace") + ("?format=perfetto" if chosen == "perfetto" else "")
            with CollectorClient(url) as client:
                client.download(path, partial)  # streamed: a 1M-span trace is ~200 MB of JSON
        spans = _check_trace(partial, chosen)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    literal_console().print(f"wrote {spans:,} spans of run {run_id} to {output} ({chosen})")


def _trace_format(requested: str, output: Path) -> str:
    if requested == "auto":
        return "perfetto" if output.suffix.lower() in PERFETTO_SUFFIXES else "chrome"
    if requested not in ("chrome", "perfetto"):
        raise typer.BadParameter(f"'{requested}': choose chrome, perfetto or auto.", param_hint="--format")
    return requested


def _check_trace(path: Path, trace_format: str) -> int:
    """The number of spans in the downloaded trace, once it is known to be whole."""
    if trace_format == "perfetto":
        from mlmodelscope.cli.perfetto_file import count_slices

        return count_slices(path.read_bytes())
    with path.open("rb") as handle:
        document: dict[str, Any] = json.load(handle)
    validate_chrome_trace(document)
    return sum(1 for event in document["traceEvents"] if event.get("ph") == "X")


@runs_app.command("import")
def import_runs(
    path: Annotated[Path, typer.Argument(help="A run folder, the data folder, or one unpublished/*.jsonl file.")],
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Collector database (default: the local data folder's).")
    ] = None,
) -> None:
    """Store the messages agents kept in <run dir>/unpublished when NATS was unreachable (each once, however often
    imported)."""
    from mlmodelscope.cli.unpublished import import_unpublished

    report = import_unpublished(path, database_url or data_dir(os.environ).database_url)
    console = literal_console()
    if not report.files:
        console.print(f"nothing to import: no unpublished/*.jsonl under {path}")
        return
    runs = ", ".join(sorted(report.run_ids)) or "-"
    console.print(
        f"{len(report.files)} file(s), run(s) {runs}: {report.stored} message(s) stored, "
        f"{report.already_stored} already stored, {len(report.rejected)} rejected"
    )
    if report.rejected:
        for line in report.rejected[:20]:
            console.print(f"rejected: {line}")
        raise typer.Exit(1)
