"""The compare verdict and the bootstrap intervals on synthetic distributions with known differences."""

from __future__ import annotations

import numpy as np
import pytest

from mlmodelscope.core.analysis import bootstrap
from mlmodelscope.core.analysis.compare import BootstrapSettings, compare, estimate, overall
from mlmodelscope.core.analysis.errors import NotEnoughDataError
from mlmodelscope.core.analysis.query_samples import QuerySample


def lognormal_ns(seed: int, n: int = 4000, median_ns: float = 50_000, sigma: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.lognormal(np.log(median_ns), sigma, size=n)).astype(np.int64)


def test_identical_runs_show_no_significant_difference() -> None:
    sample = QuerySample.from_latencies(lognormal_ns(1))
    comparison = compare(sample, sample)
    assert comparison.verdict == "no significant difference"
    for metric in comparison.metrics:
        assert metric.verdict == "no significant difference"
        assert metric.ratio == pytest.approx(1.0)
        assert metric.ratio_low <= 1.0 <= metric.ratio_high


def test_two_runs_of_the_same_distribution_show_no_significant_difference() -> None:
    comparison = compare(QuerySample.from_latencies(lognormal_ns(2)), QuerySample.from_latencies(lognormal_ns(3)))
    assert comparison.verdict == "no significant difference", comparison.model_dump()


def test_a_run_twenty_percent_faster_is_faster_on_every_metric() -> None:
    base = lognormal_ns(4)
    faster = np.round(lognormal_ns(5) * 0.8).astype(np.int64)
    comparison = compare(QuerySample.from_latencies(base), QuerySample.from_latencies(faster))
    assert comparison.verdict == "faster"
    assert [m.verdict for m in comparison.metrics] == ["faster"] * 4
    assert comparison.metric("p50").ratio == pytest.approx(0.8, abs=0.03)
    assert comparison.metric("p50").ratio_high < 1.0
    # throughput of back-to-back calls is 1 / mean latency: 1 / 0.8 = 1.25 x
    assert comparison.metric("throughput").ratio == pytest.approx(1.25, abs=0.04)
    assert comparison.metric("throughput").ratio_low > 1.0


def test_a_run_thirty_percent_slower_is_slower() -> None:
    base = lognormal_ns(6)
    slower = np.round(lognormal_ns(7) * 1.3).astype(np.int64)
    comparison = compare(QuerySample.from_latencies(base), QuerySample.from_latencies(slower))
    assert comparison.verdict == "slower"
    assert comparison.metric("p99").ratio_low > 1.0
    assert comparison.metric("throughput").ratio_high < 1.0


def test_a_tiny_difference_in_a_small_noisy_run_is_not_significant() -> None:
    base = lognormal_ns(8, n=200, sigma=0.6)
    candidate = np.round(lognormal_ns(9, n=200, sigma=0.6) * 1.01).astype(np.int64)
    comparison = compare(QuerySample.from_latencies(base), QuerySample.from_latencies(candidate))
    assert comparison.verdict == "no significant difference"


def test_a_faster_body_with_a_heavier_tail_is_mixed() -> None:
    rng = np.random.default_rng(10)
    base = lognormal_ns(11, sigma=0.1)
    candidate = np.round(lognormal_ns(12, sigma=0.1) * 0.7).astype(np.int64)
    tail = rng.choice(len(candidate), size=len(candidate) // 20, replace=False)  # 5% of queries 3x slower
    candidate[tail] = base.max() * 3
    comparison = compare(QuerySample.from_latencies(base), QuerySample.from_latencies(candidate))
    assert comparison.metric("p50").verdict == "faster"
    assert comparison.metric("p99").verdict == "slower"
    assert comparison.verdict == "mixed"


def test_the_comparison_is_reproducible() -> None:
    a, b = QuerySample.from_latencies(lognormal_ns(13)), QuerySample.from_latencies(lognormal_ns(14))
    assert compare(a, b) == compare(a, b)
    assert compare(a, b) != compare(a, b, BootstrapSettings(seed=1))


def test_exact_percentile_draws_match_a_naive_bootstrap() -> None:
    """The Beta order-statistic shortcut has the distribution of 'resample n values, take the percentile'."""
    values = np.sort(lognormal_ns(15, n=500, sigma=0.5))
    rng = np.random.default_rng(0)
    exact = bootstrap.percentile_draws(values, 90.0, rng, resamples=20_000)
    k = bootstrap.nearest_rank(len(values), 90.0)
    naive = np.array(
        [np.sort(values[rng.integers(0, len(values), size=len(values))])[k - 1] for _ in range(4000)], dtype=np.int64
    )
    for q in (0.025, 0.25, 0.5, 0.75, 0.975):
        assert np.quantile(exact, q) == pytest.approx(np.quantile(naive, q), rel=0.02)


def test_the_p50_interval_covers_the_true_median_about_95_percent_of_the_time() -> None:
    true_median = 50_000
    covered = 0
    repeats = 200
    for seed in range(repeats):
        interval = estimate(QuerySample.from_latencies(lognormal_ns(1000 + seed, n=300)), "p50")
        covered += interval.low <= true_median <= interval.high
    assert 0.90 <= covered / repeats <= 0.99


def test_throughput_is_items_over_wall_time() -> None:
    # three back-to-back queries of 2 items, 1 ms each: 6 items in 3 ms = 2000/s
    sample = QuerySample.from_intervals([0, 1_000_000, 2_000_000], [1_000_000, 2_000_000, 3_000_000], [2, 2, 2])
    assert bootstrap.throughput_value(sample.items, sample.gaps_ns) == pytest.approx(2000.0)
    # idle time between queries counts: one query per 2 ms
    idle = QuerySample.from_intervals([0, 2_000_000], [1_000_000, 3_000_000])
    assert bootstrap.throughput_value(idle.items, idle.gaps_ns) == pytest.approx(2 / 3e-3)


def test_overall_verdict_rules() -> None:
    assert overall(["faster", "no significant difference"]) == "faster"
    assert overall(["slower", "slower"]) == "slower"
    assert overall(["faster", "slower"]) == "mixed"
    assert overall(["no significant difference"]) == "no significant difference"


def test_a_run_without_queries_cannot_be_compared() -> None:
    with pytest.raises(NotEnoughDataError, match="no performance-mode query records"):
        QuerySample.from_intervals([], [])
