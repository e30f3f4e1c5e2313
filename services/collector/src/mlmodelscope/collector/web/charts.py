"""The SVG charts of the pages, built from the analysis models with ``core.analysis.svg``."""

from __future__ import annotations

from mlmodelscope.collector.analysis_models import CompareView
from mlmodelscope.core.analysis import svg
from mlmodelscope.core.analysis.run_analysis import RunAnalysis
from mlmodelscope.core.analysis.timeline import Timeline
from mlmodelscope.core.evaluation.batch_sweep import BatchSweep


def run_charts(analysis: RunAnalysis | None, sweeps: list[BatchSweep], timeline: Timeline | None) -> dict[str, str]:
    charts: dict[str, str] = {}
    if analysis is not None:
        charts["histogram"] = svg.histogram_chart(analysis.histogram)
        charts["cdf"] = svg.latency_cdf_chart([("CDF", analysis.cdf)])
        layers = analysis.layers
        charts["layers"] = svg.bar_chart(
            [layer.name for layer in layers.top_layers],
            [float(layer.total_ns) for layer in layers.top_layers],
            title="Top layers by total time",
        )
        charts["op_types"] = svg.bar_chart(
            [op.op_type for op in layers.op_types],
            [float(op.total_ns) for op in layers.op_types],
            title="Time by op type",
        )
    if sweeps:
        charts["sweep"] = svg.line_chart(
            [svg.Series(s.framework, [(p.batch_size, p.samples_per_s) for p in s.points]) for s in sweeps],
            title="Throughput vs batch size",
            x_label="batch size (log scale)",
            y_label="samples/s",
            log_x=True,
            kind="sweep",
        )
    if timeline is not None:
        charts["phases"] = svg.timeline_chart(timeline.phases, title="Application phases (whole run)")
        charts["window"] = svg.timeline_chart(
            timeline.window, title=f"First {timeline.window_queries} queries with their operators"
        )
    return charts


def compare_charts(view: CompareView, analyses: dict[str, RunAnalysis]) -> dict[str, str]:
    runs = [view.baseline.run_id, *(c.candidate.run_id for c in view.candidates)]
    cdf = svg.latency_cdf_chart([(run_id, analyses[run_id].cdf) for run_id in runs])
    p99 = [float(analyses[run_id].latency.p99_ns) for run_id in runs]
    bars = svg.bar_chart(runs, p99, title="p99 latency")
    return {"cdf": cdf, "bars": bars}
