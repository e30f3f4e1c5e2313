"""Bootstrap confidence intervals for latency percentiles and throughput, computed exactly and cheaply.

Percentiles. A run has tens of thousands of per-query latencies, and a naive bootstrap (resample n values B times,
take the percentile of each) costs O(B n log n). We do not need the resamples themselves: resampling n values from
the empirical distribution is ``x[ceil(n U) - 1]`` for uniform U, a non-decreasing map, so the k-th smallest value
of a resample is ``x[ceil(n U_(k)) - 1]`` where ``U_(k)``, the k-th order statistic of n uniforms, is
Beta(k, n - k + 1). Drawing B Beta variates therefore gives B draws from *exactly* the bootstrap distribution of
the nearest-rank percentile (the definition ``core.evaluation.statistics`` uses), in O(B) after one sort.

Throughput. The completion throughput of a run is items / wall time, with the wall time split into the gaps
between consecutive query completions (the first query's gap is its own latency). Consecutive queries are grouped
into at most ``MAX_BLOCKS`` blocks (sum of items, sum of gaps) and the blocks are resampled: a block bootstrap of a
ratio estimator, which also keeps the short-range correlation of consecutive queries (a slow patch of the machine)
inside the interval.

Every function takes a ``numpy.random.Generator``; callers seed it, so the same data always gives the same interval
(the API and the pages it feeds show identical numbers).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from mlmodelscope.core.analysis.errors import NotEnoughDataError

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0
MAX_BLOCKS = 1000


def nearest_rank(n: int, percentile: float) -> int:
    """The 1-based rank of the nearest-rank percentile of n values (as ``core.evaluation.statistics``)."""
    return max(1, math.ceil(round(percentile / 100 * n, 9)))


def percentile_draws(
    sorted_ns: NDArray[np.int64], percentile: float, rng: np.random.Generator, resamples: int = DEFAULT_RESAMPLES
) -> NDArray[np.int64]:
    """``resamples`` draws of the nearest-rank percentile of a bootstrap resample of ``sorted_ns`` (ascending)."""
    n = len(sorted_ns)
    if n == 0:
        raise NotEnoughDataError("a percentile needs at least one latency")
    k = nearest_rank(n, percentile)
    uniforms = rng.beta(k, n - k + 1, size=resamples)
    indices = np.clip(np.ceil(n * uniforms).astype(np.int64), 1, n) - 1
    draws: NDArray[np.int64] = sorted_ns[indices]
    return draws


def percentile_value(sorted_ns: NDArray[np.int64], percentile: float) -> int:
    return int(sorted_ns[nearest_rank(len(sorted_ns), percentile) - 1])


def throughput_blocks(
    items: NDArray[np.int64], gaps_ns: NDArray[np.int64], max_blocks: int = MAX_BLOCKS
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(items per block, ns per block) of consecutive queries grouped into at most ``max_blocks`` blocks."""
    n = len(items)
    if n == 0:
        raise NotEnoughDataError("a throughput needs at least one query")
    blocks = min(n, max_blocks)
    edges = np.linspace(0, n, blocks + 1).round().astype(np.int64)
    item_sums = np.add.reduceat(items.astype(np.float64), edges[:-1])
    gap_sums = np.add.reduceat(gaps_ns.astype(np.float64), edges[:-1])
    return item_sums, gap_sums


def throughput_draws(
    items: NDArray[np.int64],
    gaps_ns: NDArray[np.int64],
    rng: np.random.Generator,
    resamples: int = DEFAULT_RESAMPLES,
) -> NDArray[np.float64]:
    """Block-bootstrap draws of items per second (see the module docstring)."""
    item_sums, gap_sums = throughput_blocks(items, gaps_ns)
    m = len(item_sums)
    draws = np.empty(resamples, dtype=np.float64)
    chunk = max(1, 2_000_000 // m)  # bounded memory: at most ~2M indices at once
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        picks = rng.integers(0, m, size=(stop - start, m))
        total_ns = gap_sums[picks].sum(axis=1)
        draws[start:stop] = item_sums[picks].sum(axis=1) / np.maximum(total_ns, 1.0) * 1e9
    return draws


def throughput_value(items: NDArray[np.int64], gaps_ns: NDArray[np.int64]) -> float:
    total_ns = float(gaps_ns.sum())
    return float(items.sum()) / max(total_ns, 1.0) * 1e9


def interval(draws: NDArray[np.floating] | NDArray[np.integer], confidence: float) -> tuple[float, float]:
    """The percentile-method interval of the draws: the (1-c)/2 and (1+c)/2 quantiles."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws.astype(np.float64), [alpha, 1.0 - alpha])
    return float(low), float(high)
