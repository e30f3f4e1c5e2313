"""Everything the analyses say about one run: percentiles with bootstrap intervals, throughput, the latency
distribution and the per-layer breakdown. The collector serves it (``/api/v1/runs/{id}/analysis``), its pages and
the CLI's report draw it.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.analysis import layers as layer_analysis
from mlmodelscope.core.analysis.compare import METRICS, BootstrapSettings, Estimate, MetricName, estimate
from mlmodelscope.core.analysis.distribution import CdfPoint, Histogram, cdf, histogram
from mlmodelscope.core.analysis.layers import LayerBreakdown, LayerGroup
from mlmodelscope.core.analysis.query_samples import QuerySample
from mlmodelscope.core.evaluation.results import LatencyStats
from mlmodelscope.core.evaluation.statistics import latency_stats
from mlmodelscope.core.tracing.spans import Span


class RunAnalysis(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    queries: int = Field(description="Performance-mode query records the statistics are computed from.")
    latency: LatencyStats = Field(description="Of the per-query latencies stored by the collector.")
    estimates: dict[MetricName, Estimate] = Field(
        description="p50/p90/p99 (ns) and completion throughput (samples/s) with bootstrap intervals."
    )
    bootstrap: BootstrapSettings
    histogram: Histogram
    cdf: list[CdfPoint]
    layers: LayerBreakdown


def analyze(
    run_id: str,
    sample: QuerySample,
    spans: Iterable[Span] = (),
    *,
    layer_groups: Iterable[LayerGroup] | None = None,
    top: int = layer_analysis.DEFAULT_TOP,
    settings: BootstrapSettings | None = None,
) -> RunAnalysis:
    """The analysis of one run; layers from its FRAMEWORK spans, or from ``layer_groups`` already aggregated."""
    settings = settings or BootstrapSettings()
    groups = layer_analysis.groups_of(spans) if layer_groups is None else layer_groups
    return RunAnalysis(
        run_id=run_id,
        queries=sample.count,
        latency=latency_stats(sample.sorted_latency_ns),
        estimates={metric: estimate(sample, metric, settings) for metric in METRICS},
        bootstrap=settings,
        histogram=histogram(sample),
        cdf=cdf(sample),
        layers=layer_analysis.breakdown_of_groups(groups, top=top),
    )
