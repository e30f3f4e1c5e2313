"""Is a difference between two runs real? Bootstrap intervals of p50/p90/p99 and throughput, and a verdict.

For each metric we draw from the bootstrap distribution of the baseline and of the candidate independently
(``bootstrap``), and take the percentile-method interval of the candidate/baseline *ratio*. The verdict of a metric
at confidence c (95% by default) is:

* latency percentiles: ``faster`` when the whole ratio interval is below 1, ``slower`` when it is above 1;
* throughput: ``faster`` when the interval is above 1, ``slower`` when below;
* otherwise ``no significant difference``.

The overall verdict is the metrics' common verdict when every significant one agrees (``faster`` or ``slower``),
``mixed`` when they disagree, and ``no significant difference`` when none is significant. Seeds are fixed, so a
comparison is reproducible.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.analysis import bootstrap
from mlmodelscope.core.analysis.errors import AnalysisError
from mlmodelscope.core.analysis.query_samples import QuerySample

MetricName = Literal["p50", "p90", "p99", "throughput"]
Verdict = Literal["faster", "slower", "no significant difference"]
OverallVerdict = Literal["faster", "slower", "mixed", "no significant difference"]
PERCENTILE_METRICS: dict[MetricName, float] = {"p50": 50.0, "p90": 90.0, "p99": 99.0}
METRICS: tuple[MetricName, ...] = ("p50", "p90", "p99", "throughput")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Estimate(_Frozen):
    """A point estimate and its bootstrap confidence interval (``unit``: ns or samples/s)."""

    value: float
    low: float
    high: float
    unit: Literal["ns", "samples/s"]


class MetricComparison(_Frozen):
    metric: MetricName
    baseline: Estimate
    candidate: Estimate
    ratio: float = Field(description="candidate / baseline of the point estimates.")
    ratio_low: float = Field(description="Lower end of the bootstrap interval of the ratio.")
    ratio_high: float
    verdict: Verdict


class BootstrapSettings(_Frozen):
    resamples: int = Field(default=bootstrap.DEFAULT_RESAMPLES, ge=100, le=100_000)
    confidence: float = Field(default=bootstrap.DEFAULT_CONFIDENCE, gt=0.5, lt=1.0)
    seed: int = Field(default=bootstrap.DEFAULT_SEED, ge=0)


class Comparison(_Frozen):
    baseline_queries: int
    candidate_queries: int
    settings: BootstrapSettings
    metrics: list[MetricComparison]
    verdict: OverallVerdict

    def metric(self, name: MetricName) -> MetricComparison:
        for comparison in self.metrics:
            if comparison.metric == name:
                return comparison
        raise AnalysisError(f"no metric '{name}' in this comparison")


def _verdict(low: float, high: float, higher_is_better: bool) -> Verdict:
    if low > 1.0:
        return "faster" if higher_is_better else "slower"
    if high < 1.0:
        return "slower" if higher_is_better else "faster"
    return "no significant difference"


def overall(verdicts: list[Verdict]) -> OverallVerdict:
    significant = {v for v in verdicts if v != "no significant difference"}
    if not significant:
        return "no significant difference"
    if len(significant) > 1:
        return "mixed"
    only: OverallVerdict = significant.pop()
    return only


def compare(baseline: QuerySample, candidate: QuerySample, settings: BootstrapSettings | None = None) -> Comparison:
    """Compare the candidate run with the baseline run (see the module docstring)."""
    settings = settings or BootstrapSettings()
    rng = np.random.default_rng(settings.seed)
    results: list[MetricComparison] = []
    for metric in METRICS:
        if metric == "throughput":
            base_value = bootstrap.throughput_value(baseline.items, baseline.gaps_ns)
            cand_value = bootstrap.throughput_value(candidate.items, candidate.gaps_ns)
            base_draws = bootstrap.throughput_draws(baseline.items, baseline.gaps_ns, rng, settings.resamples)
            cand_draws = bootstrap.throughput_draws(candidate.items, candidate.gaps_ns, rng, settings.resamples)
            unit: Literal["ns", "samples/s"] = "samples/s"
        else:
            q = PERCENTILE_METRICS[metric]
            base_value = bootstrap.percentile_value(baseline.sorted_latency_ns, q)
            cand_value = bootstrap.percentile_value(candidate.sorted_latency_ns, q)
            base_draws = bootstrap.percentile_draws(baseline.sorted_latency_ns, q, rng, settings.resamples).astype(
                np.float64
            )
            cand_draws = bootstrap.percentile_draws(candidate.sorted_latency_ns, q, rng, settings.resamples).astype(
                np.float64
            )
            unit = "ns"
        ratios = cand_draws.astype(np.float64) / np.maximum(base_draws.astype(np.float64), 1e-12)
        ratio_low, ratio_high = bootstrap.interval(ratios, settings.confidence)
        base_low, base_high = bootstrap.interval(base_draws, settings.confidence)
        cand_low, cand_high = bootstrap.interval(cand_draws, settings.confidence)
        results.append(
            MetricComparison(
                metric=metric,
                baseline=Estimate(value=float(base_value), low=base_low, high=base_high, unit=unit),
                candidate=Estimate(value=float(cand_value), low=cand_low, high=cand_high, unit=unit),
                ratio=float(cand_value) / max(float(base_value), 1e-12),
                ratio_low=ratio_low,
                ratio_high=ratio_high,
                verdict=_verdict(ratio_low, ratio_high, higher_is_better=metric == "throughput"),
            )
        )
    return Comparison(
        baseline_queries=baseline.count,
        candidate_queries=candidate.count,
        settings=settings,
        metrics=results,
        verdict=overall([m.verdict for m in results]),
    )


def estimate(sample: QuerySample, metric: MetricName, settings: BootstrapSettings | None = None) -> Estimate:
    """One run's metric with its bootstrap interval (the percentiles table of a run)."""
    settings = settings or BootstrapSettings()
    rng = np.random.default_rng(settings.seed)
    if metric == "throughput":
        draws = bootstrap.throughput_draws(sample.items, sample.gaps_ns, rng, settings.resamples)
        low, high = bootstrap.interval(draws, settings.confidence)
        value = bootstrap.throughput_value(sample.items, sample.gaps_ns)
        return Estimate(value=value, low=low, high=high, unit="samples/s")
    q = PERCENTILE_METRICS[metric]
    pdraws = bootstrap.percentile_draws(sample.sorted_latency_ns, q, rng, settings.resamples)
    low, high = bootstrap.interval(pdraws, settings.confidence)
    return Estimate(value=float(bootstrap.percentile_value(sample.sorted_latency_ns, q)), low=low, high=high, unit="ns")
