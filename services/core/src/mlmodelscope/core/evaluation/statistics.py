"""Latency statistics: mean, MLModelScope's 20% trimmed mean, and the MLPerf percentiles.

Percentiles use the nearest-rank definition (the value at rank ceil(p/100 * n) of the sorted latencies): every
reported value is a latency that was actually observed, as in LoadGen's own summary. The trimmed mean drops 20%
of the samples from *each* end before averaging (``scipy.stats.trim_mean(x, 0.2)``), MLModelScope's robust
central figure.
"""

from __future__ import annotations

import math

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
    ordered = np.sort(values)
    kept = ordered[cut : n - cut] if n - 2 * cut > 0 else ordered
    return float(kept.mean())


def latency_stats(latencies_ns: np.ndarray) -> LatencyStats:
    if len(latencies_ns) == 0:
        raise ValueError("latency statistics need at least one latency")
    values = np.sort(np.asarray(latencies_ns, dtype=np.int64))
    n = len(values)
    # round() first so that 99.9% of 1000 is rank 999, not 1000 through 0.999 * 1000 = 999.0000000000001.
    p = [int(values[max(1, math.ceil(round(q / 100 * n, 9))) - 1]) for q in PERCENTILES]
    return LatencyStats(
        count=len(values),
        min_ns=int(values[0]),
        max_ns=int(values[-1]),
        mean_ns=float(values.mean()),
        trimmed_mean_20_ns=trimmed_mean(values),
        p50_ns=p[0],
        p90_ns=p[1],
        p95_ns=p[2],
        p97_ns=p[3],
        p99_ns=p[4],
        p99_9_ns=p[5],
    )
