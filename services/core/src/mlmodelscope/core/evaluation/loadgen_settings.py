"""Our evaluation settings as LoadGen's ``TestSettings``: the one translation between the two vocabularies.

Besides copying durations, query bounds and seeds, it calibrates LoadGen's query generation from the warm-up's
fastest batch latency (unless the user pinned the hints), and sets the performance sample count, the size of the
sample library's loaded set.
"""

from __future__ import annotations

import math
from typing import Any

import mlperf_loadgen as lg

from mlmodelscope.core.evaluation.settings import EvaluationSettings, Scenario

SCENARIOS: dict[Scenario, Any] = {
    "single-stream": lg.TestScenario.SingleStream,
    "multi-stream": lg.TestScenario.MultiStream,
    "server": lg.TestScenario.Server,
    "offline": lg.TestScenario.Offline,
}


def loadgen_test_settings(s: EvaluationSettings, *, accuracy: bool, performance_count: int, min_latency_ns: int) -> Any:
    """LoadGen's TestSettings for one test (accuracy or performance) of ``s``."""
    ts = lg.TestSettings()
    ts.scenario = SCENARIOS[s.scenario]
    ts.mode = lg.TestMode.AccuracyOnly if accuracy else lg.TestMode.PerformanceOnly
    ts.min_duration_ms = round(s.min_duration_s * 1000)
    ts.max_duration_ms = round(s.max_duration_s * 1000) if s.max_duration_s else 0
    ts.min_query_count = s.min_query_count
    ts.max_query_count = s.max_query_count or 0
    ts.qsl_rng_seed = s.seeds.qsl
    ts.sample_index_rng_seed = s.seeds.sample_index
    ts.schedule_rng_seed = s.seeds.schedule
    ts.performance_sample_count_override = performance_count
    # LoadGen pre-generates queries from these hints: a latency hint that is too high (or a QPS hint too low)
    # makes it run out of queries before min_duration, so calibrate on the fast side of the warm-up.
    batch_latency_ns = max(min_latency_ns, 1_000)
    if s.scenario == "single-stream":
        expected_ns = s.expected_latency_ms * 1e6 if s.expected_latency_ms else batch_latency_ns * 0.5
        ts.single_stream_expected_latency_ns = max(round(expected_ns), 1_000)
    elif s.scenario == "multi-stream":
        ts.multi_stream_samples_per_query = s.samples_per_query
        calls = math.ceil(s.samples_per_query / s.batch_size)
        expected_ns = s.expected_latency_ms * 1e6 if s.expected_latency_ms else batch_latency_ns * calls * 0.5
        ts.multi_stream_expected_latency_ns = max(round(expected_ns), 1_000)
    elif s.scenario == "offline":
        measured_qps = s.batch_size / (batch_latency_ns / 1e9)
        ts.offline_expected_qps = s.expected_qps if s.expected_qps else measured_qps * 1.5
    else:
        measured_qps = 1e9 / batch_latency_ns
        ts.server_target_qps = s.target_qps if s.target_qps else measured_qps * 0.5
        ts.server_target_latency_ns = round(s.effective_latency_bound_ms * 1e6)
    if s.target_latency_percentile is not None:
        if s.scenario == "single-stream":
            ts.single_stream_target_latency_percentile = s.target_latency_percentile
        elif s.scenario == "multi-stream":
            ts.multi_stream_target_latency_percentile = s.target_latency_percentile
        elif s.scenario == "server":
            ts.server_target_latency_percentile = s.target_latency_percentile
    return ts
