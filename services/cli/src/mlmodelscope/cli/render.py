"""Human-readable rendering of an evaluation result (the table printed at the end of ``evaluate``)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mlmodelscope.core.evaluation.results import EvaluationResult, Verdict


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


def result_table(result: EvaluationResult) -> RenderableType:
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
        table.add_row("accuracy", f"top-1 {accuracy.top1:.4f}   top-5 {accuracy.top5:.4f}   ({accuracy.count} samples)")
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
        checks = Table("constraint", "satisfied", "reason", title="LoadGen verdict", title_justify="left")
        for check in performance.verdict.constraints:
            checks.add_row(check.name, "yes" if check.satisfied else Text("NO", style="bold red"), check.reason)
        parts.append(checks)
        if performance.verdict.recommendations:
            parts.append(Text("LoadGen recommends: " + "; ".join(performance.verdict.recommendations)))
    return Group(*parts)
