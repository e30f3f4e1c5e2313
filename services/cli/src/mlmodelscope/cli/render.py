"""Human-readable rendering of an evaluation result (the table printed at the end of ``evaluate``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from rich import box
from rich.console import Group, RenderableType
from rich.table import Column, Table
from rich.text import Text

from mlmodelscope.core.evaluation.agreement_tasks import DetectionAgreement, SegmentationAgreement
from mlmodelscope.core.evaluation.results import AccuracyResult, FrameworkTrace, RunResult, Verdict
from mlmodelscope.core.evaluation.summary import EvaluationSummary, TaskAgreement, framework_label


def _ms(ns: float) -> str:
    """A latency in the unit that reads best: 850 ns, 23.4 us, 4.21 ms, 1.25 s."""
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.1f} us"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def _verdict_text(verdict: Verdict) -> Text:
    return Text(verdict.result, style="bold green" if verdict.valid else "bold red")


def framework_trace_text(trace: FrameworkTrace) -> Text:
    """``complete: 1,000 of 1,000 profiled calls have operator spans`` (plain text: a reason may hold brackets)."""
    style = {"complete": "green", "partial": "bold yellow", "failed": "bold red"}[trace.status]
    text = Text(trace.status, style=style)
    text.append(
        f": {trace.profiled_calls:,} of {trace.window_calls:,} profiled calls have operator spans "
        f"(window: the first {trace.max_calls:,} calls)"
    )
    if trace.reason:
        text.append(f"; {trace.reason}")
    return text


def accuracy_text(accuracy: AccuracyResult) -> str:
    """The task's figures: top-1/top-5 (classification), mAP and its variants (detection), mIoU (segmentation)."""
    if accuracy.detection is not None:
        d = accuracy.detection
        return (
            f"mAP {d.map:.4f}   mAP@.5 {d.map_50:.4f}   mAP@.75 {d.map_75:.4f}   small/medium/large "
            f"{d.map_small:.3f}/{d.map_medium:.3f}/{d.map_large:.3f}   AR@100 {d.mar_100:.4f}   "
            f"({accuracy.count} images, {d.detections:,} detections)"
        )
    if accuracy.segmentation is not None:
        s = accuracy.segmentation
        return f"mIoU {s.mean_iou:.4f}   pixel accuracy {s.pixel_accuracy:.4f}   ({accuracy.count} images)"
    top1 = "-" if accuracy.top1 is None else f"{accuracy.top1:.4f}"
    top5 = "-" if accuracy.top5 is None else f"{accuracy.top5:.4f}"
    return f"top-1 {top1}   top-5 {top5}   ({accuracy.count} samples)"


def primary_cell(result: RunResult, *, with_name: bool) -> str:
    """The headline accuracy figure of a run ('0.9889', or 'mAP 0.4123' when runs of several tasks are shown)."""
    primary = result.accuracy.primary if result.accuracy is not None else None
    if primary is None:
        return "-"
    name, value = primary
    return f"{name} {value:.4f}" if with_name else f"{value:.4f}"


def result_table(result: RunResult) -> RenderableType:
    settings = result.requested_settings
    table = Table(title=f"{result.model.name} on {result.framework.name} {result.framework.version}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("dataset", f"{result.dataset.name} ({result.dataset.version})")
    table.add_row("scenario / mode", f"{settings.scenario} / {settings.mode}, batch size {settings.batch_size}")
    table.add_row("device", f"{result.device} on {result.environment.arch} ({result.environment.cpu_model})")
    load = result.load_time
    table.add_row(
        "model load (cold start)",
        f"{load.model_load_s * 1000:.1f} ms (artifact fetch {load.artifact_fetch_s * 1000:.1f} ms)",
    )
    parts: list[RenderableType] = [table]
    if result.accuracy is not None:
        accuracy = result.accuracy
        table.add_row("accuracy", accuracy_text(accuracy))
        table.add_row("accuracy run", _verdict_text(accuracy.verdict))
    if result.performance is not None:
        performance = result.performance
        latency = performance.latency
        table.add_row("performance verdict", _verdict_text(performance.verdict))
        table.add_row(
            "latency per call",
            f"p50 {_ms(latency.p50_ns)}   p90 {_ms(latency.p90_ns)}   p99 {_ms(latency.p99_ns)}   "
            f"p99.9 {_ms(latency.p99_9_ns)}",
        )
        table.add_row("mean / trimmed mean", f"{_ms(latency.mean_ns)} / {_ms(latency.trimmed_mean_20_ns)} (20%)")
        table.add_row("throughput", f"{performance.throughput.samples_per_s:,.1f} samples/s")
        table.add_row("queries / duration", f"{performance.queries:,} calls in {performance.duration_s:.2f} s")
        if result.framework_trace is not None:
            table.add_row("framework trace", framework_trace_text(result.framework_trace))
        checks = Table("constraint", "satisfied", "reason", title="LoadGen verdict", title_justify="left")
        for check in performance.verdict.constraints:
            checks.add_row(check.name, "yes" if check.satisfied else Text("NO", style="bold red"), check.reason)
        parts.append(checks)
        if performance.verdict.recommendations:
            parts.append(Text("LoadGen recommends: " + "; ".join(performance.verdict.recommendations)))
    return Group(*parts)


def _accuracy_column(results: Sequence[RunResult]) -> tuple[str, bool]:
    """The comparison's accuracy header (top-1, mAP, mIoU; 'accuracy' when the runs have several) and whether each
    cell names its metric."""
    metrics = {r.accuracy.primary[0] for r in results if r.accuracy is not None and r.accuracy.primary}
    if len(metrics) > 1:
        return "accuracy", True
    metric = next(iter(metrics), "top1")
    return ("top-1" if metric == "top1" else metric), False


Task = Literal["classification", "object_detection", "semantic_segmentation"]
_AGREEMENT_COLUMNS: dict[Task, tuple[str, ...]] = {
    "classification": ("agree", "max|dp|", "KL", "JS"),
    "object_detection": ("boxes", "matched", "IoU", "max|ds|", "ref-only", "run-only"),
    "semantic_segmentation": ("pixel agree", "diff px", "images"),
}
_AGREEMENT_TITLES: dict[Task, str] = {
    "classification": "top-1 agreement, max absolute probability difference, mean KL and Jensen-Shannon divergence "
    "in nats",
    "object_detection": "boxes: detections of the run; matched: share of both runs' boxes paired (same class, IoU "
    ">= 0.5); IoU: mean IoU of the pairs; max|ds|: largest score difference of a pair; ref-only / run-only: boxes "
    "only the reference / only this run found",
    "semantic_segmentation": "pixel agree: share of the original images' pixels given the same class; diff px: "
    "pixels given another class; images: images both runs answered",
}


def result_task(result: RunResult) -> Task | None:
    """The task of a run's answers; None for a run without an accuracy pass."""
    if result.accuracy is None:
        return None
    if result.accuracy.detection is not None:
        return "object_detection"
    if result.accuracy.segmentation is not None:
        return "semantic_segmentation"
    return "classification"


def agreement_cells(measured: TaskAgreement) -> list[str]:
    """The agreement columns of one run (``_AGREEMENT_COLUMNS`` of its task)."""
    if isinstance(measured, DetectionAgreement):
        iou = "-" if measured.mean_matched_iou is None else f"{measured.mean_matched_iou:.6f}"
        diff = "-" if measured.max_abs_score_diff is None else f"{measured.max_abs_score_diff:.1e}"
        return [
            f"{measured.framework_detections:,}",
            f"{measured.matched_fraction * 100:.2f}%",
            iou,
            diff,
            f"{measured.unmatched_reference:,}",
            f"{measured.unmatched_framework:,}",
        ]
    if isinstance(measured, SegmentationAgreement):
        return [f"{measured.pixel_agreement * 100:.4f}%", f"{measured.differing_pixels:,}", f"{measured.images:,}"]
    return [
        f"{measured.top1_agreement * 100:.1f}%",
        f"{measured.max_abs_probability_diff:.1e}",
        f"{measured.mean_kl_divergence:.1e}",
        f"{measured.mean_js_divergence:.1e}",
    ]


def _comparison(summary: EvaluationSummary, task: Task, results: Sequence[RunResult]) -> Table:
    """One task's runs against the reference framework: accuracy, latency, throughput and the task's agreement."""
    measured: dict[tuple[str, int, str], TaskAgreement] = {
        (a.framework, a.batch_size, a.device): a for a in summary.measured_agreements()
    }
    columns = _AGREEMENT_COLUMNS[task]
    accuracy_column, with_name = _accuracy_column(results)
    what = "" if task == "classification" else f"{task.replace('_', ' ')} "
    table = Table(
        Column("framework", min_width=11, overflow="fold"),
        *(Column(name, no_wrap=True) for name in ("batch", accuracy_column, "p50", "items/s", *columns)),
        title=f"{summary.evaluation_id}: {what}agreement with {summary.reference_framework} "
        f"({_AGREEMENT_TITLES[task]})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for result in results:
        name = framework_label(result)
        batch = result.requested_settings.batch_size
        performance = result.performance
        row = [
            name.replace(" ", "\n"),
            str(batch),
            primary_cell(result, with_name=with_name),
            _ms(performance.latency.p50_ns).replace(" ", "") if performance is not None else "-",
            f"{performance.throughput.samples_per_s:,.0f}" if performance is not None else "-",
        ]
        found = measured.get((name, batch, result.device))
        if result.framework.name == summary.reference_framework:
            row += ["ref", *([""] * (len(columns) - 1))]
        elif found is None:
            row += ["-"] * len(columns)
        else:
            row += agreement_cells(found)
        table.add_row(*row)
    return table


def agreement_tables(summary: EvaluationSummary) -> list[RenderableType]:
    """One comparison table per task of the summary's runs, then why any agreement is missing."""
    tasks = [result_task(result) for result in summary.results]
    # A run without an accuracy pass is listed with the evaluation's (first) task; classification if none has one.
    first: Task = next((task for task in tasks if task is not None), "classification")
    by_task: dict[Task, list[RunResult]] = {first: []}
    for result, task in zip(summary.results, tasks, strict=True):
        by_task.setdefault(task or first, []).append(result)
    tables: list[RenderableType] = [_comparison(summary, task, results) for task, results in by_task.items()]
    for missing in summary.agreement_unavailable:
        tables.append(
            Text(
                f"agreement of {missing.framework} (batch {missing.batch_size}, {missing.device}) not measured: "
                f"{missing.reason}",
                style="yellow",
            )
        )
    return tables


def summary_tables(summary: EvaluationSummary) -> list[RenderableType]:
    """The comparison of every run with the reference framework, and one table per batch-size sweep."""
    tables = agreement_tables(summary)
    for sweep in summary.batch_sweeps:
        table = Table(
            "batch",
            "samples/s",
            "gain",
            "p50 / call",
            "p99 / call",
            "verdict",
            title=f"batch sweep: {sweep.model} on {sweep.framework} ({sweep.device}, {sweep.scenario})",
            title_justify="left",
        )
        previous: float | None = None
        for point in sweep.points:
            gain = f"{(point.samples_per_s / previous - 1) * 100:+.1f}%" if previous else ""
            marker = "  <- optimal" if point.batch_size == sweep.optimal_batch_size else ""
            table.add_row(
                f"{point.batch_size}{marker}",
                f"{point.samples_per_s:,.1f}",
                gain,
                _ms(point.p50_ns),
                _ms(point.p99_ns),
                "VALID" if point.valid else Text("INVALID", style="bold red"),
            )
            previous = point.samples_per_s
        tables.append(table)
        note = (
            f"optimal batch size {sweep.optimal_batch_size}: doubling it gains less than "
            f"{sweep.gain_threshold * 100:.0f}% throughput"
            if sweep.saturated
            else f"throughput still grows at batch {sweep.optimal_batch_size}: measure larger batches"
        )
        tables.append(Text(note))
    if summary.failures:
        tables.append(Text("failed: " + "; ".join(f"{k}: {v}" for k, v in summary.failures.items()), style="red"))
    return tables
