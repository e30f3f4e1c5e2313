"""Latency statistics against independent formulas, and LoadGen detail-log parsing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.loadgen_report import parse_report
from mlmodelscope.core.evaluation.settings import EvaluationSettings, Seeds
from mlmodelscope.core.evaluation.statistics import latency_stats, trimmed_mean


def test_trimmed_mean_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 10, 101, 1000):
        values = rng.lognormal(10, 1, n).astype(np.int64)
        assert trimmed_mean(values) == pytest.approx(stats.trim_mean(values, 0.2))


def test_latency_stats_use_observed_values() -> None:
    values = np.arange(1, 1001, dtype=np.int64) * 1000  # 1000 ns .. 1,000,000 ns
    s = latency_stats(values)
    assert (s.count, s.min_ns, s.max_ns) == (1000, 1000, 1_000_000)
    assert s.mean_ns == pytest.approx(500_500)
    assert s.p50_ns == 500_000
    assert s.p90_ns == 900_000
    assert s.p99_ns == 990_000
    assert s.p99_9_ns == 999_000
    assert s.trimmed_mean_20_ns == pytest.approx(500_500)
    with pytest.raises(ValueError, match="at least one"):
        latency_stats(np.array([], dtype=np.int64))


def _mllog(path: Path, entries: dict[str, object], errors: dict[str, str] | None = None) -> None:
    lines = [f":::MLLOG {json.dumps({'key': k, 'value': v, 'metadata': {}})}" for k, v in entries.items()]
    lines += [
        f":::MLLOG {json.dumps({'key': k, 'value': v, 'metadata': {'is_error': True}})}"
        for k, v in (errors or {}).items()
    ]
    (path / "mlperf_log_detail.txt").write_text("\n".join(lines) + "\n:::MLLOG {truncated")


def test_server_report_has_a_reason_per_constraint(tmp_path: Path) -> None:
    _mllog(
        tmp_path,
        {
            "effective_scenario": "Server",
            "effective_min_duration_ms": 1500,
            "effective_min_query_count": 100,
            "effective_target_latency_ns": 50_000_000,
            "effective_target_latency_percentile": 0.99,
            "result_validity": "INVALID",
            "result_perf_constraints_met": False,
            "result_min_duration_met": True,
            "result_min_queries_met": True,
            "early_stopping_met": False,
            "result_invalid_reason": "Reduce target QPS to improve latency. ",
            "early_stopping_result": " * Run unsuccessful.  * Processed 595 queries.",
            "result_query_count": 595,
            "result_overlatency_query_count": 12,
            "result_completed_samples_per_sec": 990.5,
            "result_99.00_percentile_latency_ns": 61_000_000,
        },
    )
    report = parse_report(tmp_path)
    assert not report.valid
    checks = {c.name: c for c in report.constraints}
    assert set(checks) == {"min_duration", "min_queries", "early_stopping", "latency_bound"}
    assert not checks["latency_bound"].satisfied
    assert "12 queries were over" in checks["latency_bound"].reason
    assert "99th percentile" in checks["latency_bound"].reason
    assert checks["early_stopping"].reason == "Run unsuccessful. Processed 595 queries."
    assert report.recommendations == ["Reduce target QPS to improve latency."]
    assert report.throughput_samples_per_s == 990.5
    assert report.throughput_metric == "completed_samples_per_sec"
    assert report.latency_ns["99.00_percentile_latency"] == 61_000_000
    assert report.effective_settings["scenario"] == "Server"


def test_report_without_a_result_is_an_error_naming_loadgen_errors(tmp_path: Path) -> None:
    _mllog(tmp_path, {"effective_scenario": "Offline"}, errors={"error_runtime": "Ran out of generated queries"})
    with pytest.raises(EvaluationError, match="Ran out of generated queries"):
        parse_report(tmp_path)
    with pytest.raises(EvaluationError, match="no detail log"):
        parse_report(tmp_path / "missing")


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="target_qps"):
        EvaluationSettings(scenario="server", mode="performance")
    assert EvaluationSettings(scenario="server", mode="accuracy").target_qps is None
    with pytest.raises(ValueError, match="max_duration_s"):
        EvaluationSettings(min_duration_s=10, max_duration_s=5)
    with pytest.raises(ValueError, match="max_query_count"):
        EvaluationSettings(min_query_count=100, max_query_count=5)
    with pytest.raises(ValueError, match="extra"):
        EvaluationSettings(batchsize=3)  # type: ignore[call-arg]


def test_seeds_from_one_seed_are_deterministic_and_distinct() -> None:
    a, b = Seeds.from_single(1), Seeds.from_single(2)
    assert a == Seeds.from_single(1)
    assert a != b
    assert len({a.qsl, a.sample_index, a.schedule}) == 3
    assert all(0 <= s < 2**64 for s in (a.qsl, a.sample_index, a.schedule))
