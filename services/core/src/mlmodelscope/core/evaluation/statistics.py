"""Latency statistics: mean, MLModelScope's 20% trimmed mean, and the MLPerf percentiles.

Percentiles use the nearest-rank definition (``numpy`` method ``inverted_cdf``): every reported value is a latency
that was actually observed, as in LoadGen's own summary. The trimmed mean drops 20% of the samples from *each* end
before averaging (``scipy.stats.trim_mean(x, 0.2)``), MLModelScope's robust central figure.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

PERCENTILES = (50.0, 90.0, 95.0, 97.0, 99.0, 99.9)
TRIM_FRACTION = 0.2


class LatencyStats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int
    min_ns: int
    max_ns: int
    mean_ns: float
    trimmed_mean_20_ns: float
    p50_ns: int
    p90_ns: int
    p95_ns: int
    p97_ns: int
    p99_ns: int
    p99_9_ns: int


def trimmed_mean(values: np.ndarray, fraction: float = TRIM_FRACTION) -> float:
    """Mean after removing ``int(fraction * n)`` of the lowest and of the highest values."""
    n = len(values)
    cut = int(fraction * n)
    kept = np.sort(values)[cut : n - cut] if n - 2 * cut > 0 else np.sort(values)
    return float(kept.mean())


def latency_stats(latencies_ns: np.ndarray) -> LatencyStats:
    if len(latencies_ns) == 0:
        raise ValueError("latency statistics need at least one latency")
    values = np.asarray(latencies_ns, dtype=np.int64)
    p = np.percentile(values, PERCENTILES, method="inverted_cdf").astype(np.int64)
    return LatencyStats(
        count=len(values),
        min_ns=int(values.min()),
        max_ns=int(values.max()),
        mean_ns=float(values.mean()),
        trimmed_mean_20_ns=trimmed_mean(values),
        p50_ns=int(p[0]),
        p90_ns=int(p[1]),
        p95_ns=int(p[2]),
        p97_ns=int(p[3]),
        p99_ns=int(p[4]),
        p99_9_ns=int(p[5]),
    )
