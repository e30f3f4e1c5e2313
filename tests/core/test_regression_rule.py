"""The regression rule: beyond the threshold AND significant, on p99 or throughput."""

from __future__ import annotations

import numpy as np

from mlmodelscope.core.analysis.compare import compare
from mlmodelscope.core.analysis.query_samples import QuerySample
from mlmodelscope.core.analysis.regression import RegressionPolicy, judge


def sample(seed: int, scale: float = 1.0, n: int = 4000) -> QuerySample:
    rng = np.random.default_rng(seed)
    return QuerySample.from_latencies(np.round(rng.lognormal(np.log(40_000), 0.3, size=n) * scale).astype(np.int64))


def test_p99_and_throughput_thirty_percent_worse_regress_at_a_ten_percent_threshold() -> None:
    verdict = judge(compare(sample(1), sample(2, 1.3)), RegressionPolicy(p99_threshold=0.1, throughput_threshold=0.1))
    assert verdict.regressed and verdict.p99_regressed and verdict.throughput_regressed
    assert 1.2 < verdict.p99_ratio < 1.4
    assert any(reason.startswith("p99 is +") for reason in verdict.reasons)


def test_the_same_change_is_allowed_by_a_larger_threshold() -> None:
    verdict = judge(compare(sample(1), sample(2, 1.3)), RegressionPolicy(p99_threshold=0.5, throughput_threshold=0.5))
    assert not verdict.regressed
    assert verdict.reasons == []


def test_a_significant_change_below_the_threshold_is_not_a_regression() -> None:
    comparison = compare(sample(3), sample(4, 1.05, n=20_000))
    assert comparison.metric("p50").verdict == "slower"  # real...
    verdict = judge(comparison, RegressionPolicy(p99_threshold=0.1, throughput_threshold=0.1))
    assert not verdict.regressed  # ...but within 10%


def test_noise_never_regresses_even_with_a_zero_threshold() -> None:
    verdict = judge(compare(sample(5), sample(6)), RegressionPolicy(p99_threshold=0.0, throughput_threshold=0.0))
    assert not verdict.regressed


def test_a_faster_run_is_not_a_regression() -> None:
    assert not judge(compare(sample(7), sample(8, 0.7)), RegressionPolicy()).regressed
