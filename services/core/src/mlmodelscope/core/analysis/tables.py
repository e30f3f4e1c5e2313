"""MLModelScope's report tables, as plain rows: model latency/throughput, layer latency top-N, latency by operator
type, batch-size sweeps with the optimal batch size, and run-vs-run comparisons.

Cells hold raw numbers in base units (column names say the unit: ``_ns``, ``_samples_per_s``, ``share``), so CSV
and JSON carry exactly the API's figures; ``format_cell`` turns them into text for Markdown and HTML.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from mlmodelscope.core.analysis.compare import Comparison
from mlmodelscope.core.analysis.run_analysis import RunAnalysis
from mlmodelscope.core.analysis.svg import format_ns
from mlmodelscope.core.evaluation.batch_sweep import BatchSweep
from mlmodelscope.core.evaluation.results import RunResult

Cell = str | int | float | bool | None


class Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str
    columns: list[str]
    rows: list[list[Cell]]


class RunInfo(BaseModel):
    """The labels of a run (as the collector lists them) plus its result and analysis when there are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    evaluation_id: str | None = None
    model: str | None = None
    framework: str | None = None
    arch: str | None = None
    accelerator: str | None = None
    scenario: str | None = None
    batch_size: int | None = None
    result: RunResult | None = None
    analysis: RunAnalysis | None = None


def format_cell(column: str, value: Cell) -> str:
    """A cell as text: latencies in ns/µs/ms/s, shares and accuracies in %, ratios with 3 decimals."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and column.endswith("_ns"):
        return format_ns(float(value))
    if isinstance(value, float) and column.startswith("ratio"):
        return f"{value:.3f}"
    if isinstance(value, float) and (column == "share" or column.startswith("top")):
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def model_table(runs: Sequence[RunInfo]) -> Table:
    columns = [
        "run_id", "model", "framework", "framework_version", "arch", "accelerator", "scenario", "batch_size",
        "queries", "p50_ns", "p50_low_ns", "p50_high_ns", "p90_ns", "p99_ns", "p99_low_ns", "p99_high_ns",
        "trimmed_mean_20_ns", "loadgen_samples_per_s", "completion_samples_per_s", "top1", "valid",
    ]  # fmt: skip
    rows: list[list[Cell]] = []
    for run in runs:
        result, analysis = run.result, run.analysis
        performance = result.performance if result is not None else None
        estimates = analysis.estimates if analysis is not None else {}
        rows.append(
            [
                run.run_id,
                run.model,
                run.framework,
                result.framework.version if result is not None else None,
                run.arch,
                run.accelerator,
                run.scenario,
                run.batch_size,
                analysis.queries if analysis else None,
                analysis.latency.p50_ns if analysis else None,
                estimates["p50"].low if analysis else None,
                estimates["p50"].high if analysis else None,
                analysis.latency.p90_ns if analysis else None,
                analysis.latency.p99_ns if analysis else None,
                estimates["p99"].low if analysis else None,
                estimates["p99"].high if analysis else None,
                analysis.latency.trimmed_mean_20_ns if analysis else None,
                performance.throughput.samples_per_s if performance else None,
                estimates["throughput"].value if analysis else None,
                result.accuracy.top1 if result is not None and result.accuracy is not None else None,
                performance.verdict.valid if performance else None,
            ]
        )
    return Table(name="model", title="Model latency and throughput", columns=columns, rows=rows)


def layer_table(run: RunInfo) -> Table:
    columns = ["rank", "layer", "op_type", "calls", "total_ns", "mean_ns", "share"]
    rows: list[list[Cell]] = []
    if run.analysis is not None:
        for rank, layer in enumerate(run.analysis.layers.top_layers, start=1):
            rows.append([rank, layer.name, layer.op_type, layer.calls, layer.total_ns, layer.mean_ns, layer.share])
    return Table(
        name=f"layers-{run.run_id}", title=f"Layer latency, top {len(rows)}: {run.run_id}", columns=columns, rows=rows
    )


def op_type_table(run: RunInfo) -> Table:
    columns = ["op_type", "calls", "total_ns", "share"]
    rows: list[list[Cell]] = []
    if run.analysis is not None:
        rows = [[op.op_type, op.calls, op.total_ns, op.share] for op in run.analysis.layers.op_types]
    return Table(
        name=f"op-types-{run.run_id}", title=f"Latency by operator type: {run.run_id}", columns=columns, rows=rows
    )


def batch_table(sweeps: Sequence[BatchSweep]) -> Table:
    columns = ["model", "framework", "device", "scenario", "batch_size", "samples_per_s", "p50_ns", "p99_ns", "valid",
               "optimal", "run_id"]  # fmt: skip
    rows: list[list[Cell]] = []
    for sweep in sweeps:
        for point in sweep.points:
            rows.append(
                [
                    sweep.model,
                    sweep.framework,
                    sweep.device,
                    sweep.scenario,
                    point.batch_size,
                    point.samples_per_s,
                    point.p50_ns,
                    point.p99_ns,
                    point.valid,
                    point.batch_size == sweep.optimal_batch_size,
                    point.run_id,
                ]
            )
    return Table(name="batch", title="Throughput by batch size (optimal batch size)", columns=columns, rows=rows)


def comparison_table(baseline_id: str, candidate_id: str, comparison: Comparison) -> Table:
    columns = ["baseline", "candidate", "metric", "baseline_value", "candidate_value"]
    columns += ["ratio", "ratio_low", "ratio_high", "verdict"]
    rows: list[list[Cell]] = [
        [
            baseline_id,
            candidate_id,
            m.metric,
            m.baseline.value,
            m.candidate.value,
            m.ratio,
            m.ratio_low,
            m.ratio_high,
            m.verdict,
        ]
        for m in comparison.metrics
    ]
    return Table(
        name=f"compare-{candidate_id}",
        title=f"{candidate_id} vs {baseline_id}: {comparison.verdict} ({comparison.settings.confidence:.0%})",
        columns=columns,
        rows=rows,
    )
