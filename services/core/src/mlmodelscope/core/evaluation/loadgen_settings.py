"""Our evaluation settings as LoadGen's ``TestSettings``: the one translation between the two vocabularies.

Besides copying durations, query bounds and seeds, it sets the hints LoadGen sizes its query schedule from
(``schedule.LoadGenHints``: calibrated through LoadGen, or the user's), and the performance sample count, the size
of the sample library's loaded set.
"""

from __future__ import annotations

from typing import Any

import mlperf_loadgen as lg

from mlmodelscope.core.evaluation.schedule import LoadGenHints
from mlmodelscope.core.evaluation.settings import EvaluationSettings, Scenario

SCENARIOS: dict[Scenario, Any] = {
    "single-stream": lg.TestScenario.SingleStream,
    "multi-stream": lg.TestScenario.MultiStream,
    "server": lg.TestScenario.Server,
    "offline": lg.TestScenario.Offline,
}


def loadgen_test_settings(s: EvaluationSettings, *, accuracy: bool, performance_count: int, hints: LoadGenHints) -> Any:
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
    # LoadGen pre-generates its whole schedule from these hints (see ``schedule``): they come from a calibration
    # test through LoadGen, or from the user.
    if s.scenario == "single-stream":
        ts.single_stream_expected_latency_ns = hints.expected_latency_ns
    elif s.scenario == "multi-stream":
        ts.multi_stream_samples_per_query = s.samples_per_query
        ts.multi_stream_expected_latency_ns = hints.expected_latency_ns
    elif s.scenario == "offline":
        ts.offline_expected_qps = hints.offline_expected_qps
    else:
        ts.server_target_qps = hints.server_target_qps
        ts.server_target_latency_ns = round(s.effective_latency_bound_ms * 1e6)
    if s.target_latency_percentile is not None:
        if s.scenario == "single-stream":
            ts.single_stream_target_latency_percentile = s.target_latency_percentile
        elif s.scenario == "multi-stream":
            ts.multi_stream_target_latency_percentile = s.target_latency_percentile
        elif s.scenario == "server":
            ts.server_target_latency_percentile = s.target_latency_percentile
    return ts
