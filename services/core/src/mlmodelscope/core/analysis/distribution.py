"""A run's latency distribution as a histogram (log-spaced bins) and a CDF, ready to plot or to tabulate.

Latencies are heavy-tailed (p99 is often 10x p50), so bins are spaced evenly in log(latency) between the smallest
and the largest value: every bin is visible and the tail is not one bar. The CDF is the empirical one, sampled at
most ``cdf_points`` times (at evenly spaced ranks, always including the first and last value).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.analysis.query_samples import QuerySample

DEFAULT_BINS = 40
DEFAULT_CDF_POINTS = 200


class Histogram(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    edges_ns: list[float] = Field(description="len(counts) + 1 bin edges, ascending; the last bin includes its end.")
    counts: list[int]


class CdfPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ns: int
    fraction: float = Field(ge=0, le=1, description="Share of queries with a latency <= latency_ns.")


def histogram(sample: QuerySample, bins: int = DEFAULT_BINS) -> Histogram:
    values = sample.sorted_latency_ns
    low, high = float(max(values[0], 1)), float(max(values[-1], 1))
    edges = np.array([low, low + 1.0]) if high <= low else np.geomspace(low, high, bins + 1)
    counts, _ = np.histogram(np.maximum(values, 1).astype(np.float64), bins=edges)
    return Histogram(edges_ns=[float(e) for e in edges], counts=[int(c) for c in counts])


def cdf(sample: QuerySample, points: int = DEFAULT_CDF_POINTS) -> list[CdfPoint]:
    values = sample.sorted_latency_ns
    n = len(values)
    ranks = np.unique(np.linspace(1, n, min(points, n)).round().astype(np.int64))
    return [CdfPoint(latency_ns=int(values[r - 1]), fraction=float(r) / n) for r in ranks]
