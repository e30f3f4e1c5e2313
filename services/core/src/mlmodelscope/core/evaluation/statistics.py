"""Latency statistics: mean, MLModelScope's 20% trimmed mean, and the MLPerf percentiles.

Percentiles use the nearest-rank definition (the value at rank ceil(p/100 * n) of the sorted latencies): every
reported value is a latency that was actually observed, as in LoadGen's own summary. The trimmed mean drops 20%
of the samples from *each* end before averaging (``scipy.stats.trim_mean(x, 0.2)``), MLModelScope's robust
central figure.

``histogram_stats`` computes the same figures, exactly, from each distinct latency and how often it occurred:
what a LoadGen run keeps instead of one latency per query (``sut.LatencyCounts``), so its memory is bounded
by the spread of its latencies in nanoseconds rather than by its length.
"""

from __future__ import annotations

import math

import numpy as np

from mlmodelscope.core.evaluation.results import LatencyStats

PERCENTILES = (50.0, 90.0, 95.0, 97.0, 99.0, 99.9)
TRIM_FRACTION = 0.2


def trimmed_mean(values: np.ndarray, fraction: float = TRIM_FRACTION) -> float:
    """Mean after removing ``int(fraction * n)`` of the lowest and of the highest values."""
    return _trimmed_mean_of_sorted(np.sort(values), fraction)


def _trimmed_mean_of_sorted(ordered: np.ndarray, fraction: float) -> float:
    n = len(ordered)
    cut = int(fraction * n)
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
        trimmed_mean_20_ns=_trimmed_mean_of_sorted(values, TRIM_FRACTION),  # sorted once: a long run's copy
        p50_ns=p[0],
        p90_ns=p[1],
        p95_ns=p[2],
        p97_ns=p[3],
        p99_ns=p[4],
        p99_9_ns=p[5],
    )


def histogram_stats(values_ns: np.ndarray, counts: np.ndarray) -> LatencyStats:
    """``latency_stats`` of the latencies ``values_ns`` (sorted, distinct) each observed ``counts`` times."""
    values = np.asarray(values_ns, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        raise ValueError("latency statistics need at least one latency")
    cumulative = np.cumsum(counts)  # cumulative[i]: rank of the last occurrence of values[i]
    ranks = [max(1, math.ceil(round(q / 100 * n, 9))) for q in PERCENTILES]
    p = [int(values[int(np.searchsorted(cumulative, rank))]) for rank in ranks]
    cut = int(TRIM_FRACTION * n)
    low, high = (cut, n - cut) if n - 2 * cut > 0 else (0, n)
    # How many of each value's ranks (cumulative - counts, cumulative] lie inside the kept ranks (low, high].
    kept = np.clip(np.minimum(cumulative, high) - np.maximum(cumulative - counts, low), 0, None)
    return LatencyStats(
        count=n,
        min_ns=int(values[0]),
        max_ns=int(values[-1]),
        mean_ns=int((values * counts).sum()) / n,
        trimmed_mean_20_ns=int((values * kept).sum()) / (high - low),
        p50_ns=p[0],
        p90_ns=p[1],
        p95_ns=p[2],
        p97_ns=p[3],
        p99_ns=p[4],
        p99_9_ns=p[5],
    )
