"""LoadGen's schedule: hints calibrated through LoadGen, the schedule's size and memory, the warning, pinned hints."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from mlmodelscope.core.datasets.reader import ClassLabels, ItemName
from mlmodelscope.core.evaluation import schedule
from mlmodelscope.core.evaluation.driver import LoadGenDriver, RunProgress
from mlmodelscope.core.evaluation.sample_library import SampleLibrary
from mlmodelscope.core.evaluation.schedule import (
    CALIBRATION_MAX_SAMPLES,
    LOADGEN_BYTES_PER_QUERY,
    MEMORY_WARNING_FRACTION,
    PROFILED_COST_FRACTION,
    STREAM_HINT_FRACTION,
    QueryCost,
    QueryMeter,
    available_memory,
    calibration_hints,
    calibration_settings,
    estimate_schedule,
    generated_queries,
    loadgen_hints,
    needs_calibration,
    schedule_bytes,
)
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import Registry
from mlmodelscope.core.manifests.model_tensors import ModelInput
from mlmodelscope.core.predictor import Predictor, PredictorOptions

QUICK = {"min_duration_s": 0.2, "min_query_count": 64, "warmup_queries": 2}
GIB = 2**30


def _cost(per_query_ns: float, samples_per_s: float = 1e5) -> QueryCost:
    return QueryCost(source="loadgen", per_query_ns=per_query_ns, samples_per_s=samples_per_s, queries=1000)


# --- estimate maths --------------------------------------------------------------------------------------------


def test_single_stream_generates_twice_min_duration_at_the_hint() -> None:
    settings = EvaluationSettings(mode="performance", min_duration_s=10.0, min_query_count=100)
    hints = loadgen_hints(settings, _cost(10_000 / STREAM_HINT_FRACTION))
    assert hints.expected_latency_ns == 10_000
    needed, generated, samples = generated_queries(settings, hints)
    assert (needed, generated, samples) == (1_000_000, 2_000_001, 1)  # LoadGen: 2 x min_duration, plus query 0


def test_min_query_count_is_the_floor_of_the_schedule() -> None:
    settings = EvaluationSettings(mode="performance", min_duration_s=0.01, min_query_count=5_000)
    needed, generated, _ = generated_queries(settings, loadgen_hints(settings, _cost(1e6)))
    assert needed == generated == 5_000


def test_offline_generates_one_query_of_1_1_x_min_duration_samples() -> None:
    settings = EvaluationSettings(scenario="offline", mode="performance", min_duration_s=10.0, expected_qps=2_000.0)
    hints = loadgen_hints(settings, _cost(1e6))
    assert generated_queries(settings, hints) == (1, 1, 22_000)


def test_server_generates_min_duration_at_its_target_rate() -> None:
    settings = EvaluationSettings(scenario="server", mode="performance", min_duration_s=10.0, target_qps=300.0)
    assert generated_queries(settings, loadgen_hints(settings, _cost(1e6)))[:2] == (3_000, 3_000)


def test_the_schedule_peaks_at_the_next_power_of_two_slots() -> None:
    assert schedule_bytes(2**20, 1) == 2**20 * LOADGEN_BYTES_PER_QUERY
    assert schedule_bytes(2**20 + 1, 1) == 2**21 * LOADGEN_BYTES_PER_QUERY  # the doubling vector's peak
    assert schedule_bytes(1000, 8) > schedule_bytes(1000, 1)  # MultiStream's samples cost more


# --- the warning ---------------------------------------------------------------------------------------------


def _long_fast_run() -> EvaluationSettings:
    return EvaluationSettings(mode="performance", min_duration_s=600.0)


def test_no_warning_when_the_schedule_fits() -> None:
    settings = _long_fast_run()
    hints = loadgen_hints(settings, _cost(20_000))
    needed = schedule_bytes(generated_queries(settings, hints)[1], 1)
    estimate = estimate_schedule(settings, hints, (int(needed / MEMORY_WARNING_FRACTION) + 1, "injected"))
    assert estimate.estimated_bytes == needed
    assert estimate.warning is None


def test_warning_names_the_figures_and_the_ways_to_bound_the_schedule() -> None:
    settings = _long_fast_run()
    hints = loadgen_hints(settings, _cost(20_000))
    estimate = estimate_schedule(settings, hints, (4 * GIB, "injected cgroup"))
    assert estimate.estimated_bytes > MEMORY_WARNING_FRACTION * 4 * GIB  # 60M queries: ~16 GiB
    assert estimate.warning is not None
    for words in (
        f"{estimate.generated_queries:,} queries",
        "injected cgroup",
        "--min-duration",
        "expected_latency_ms",
    ):
        assert words in estimate.warning
    assert "--max-queries" in estimate.warning and "do not shrink the schedule" in estimate.warning
    assert "INVALID" in estimate.warning


def test_available_memory_is_the_cgroup_headroom_when_lower(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("400000\n")
    assert available_memory(tmp_path) == (600_000, "cgroup v2 memory.max 1000000 bytes")
    (tmp_path / "memory.max").write_text("max\n")
    available, source = available_memory(tmp_path)
    assert source == "system available memory" and available > 0


def test_available_memory_reads_cgroup_v1(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("2000000\n")
    (tmp_path / "memory" / "memory.usage_in_bytes").write_text("500000\n")
    assert available_memory(tmp_path)[0] == 1_500_000
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert available_memory(tmp_path)[1] == "system available memory"


# --- pinned hints ----------------------------------------------------------------------------------------------


def test_pinned_hints_win_over_the_calibration() -> None:
    settings = EvaluationSettings(mode="performance", expected_latency_ms=2.0)
    hints = loadgen_hints(settings, _cost(10_000))
    assert hints.pinned and hints.expected_latency_ns == 2_000_000
    assert not needs_calibration(settings, 5_000)
    offline = EvaluationSettings(scenario="offline", mode="performance", expected_qps=123.0)
    assert loadgen_hints(offline, _cost(10_000)).offline_expected_qps == 123.0
    assert not needs_calibration(offline, 5_000)


def test_unpinned_hints_follow_the_cost() -> None:
    settings = EvaluationSettings(mode="performance")
    assert needs_calibration(settings, 5_000)
    assert not needs_calibration(settings, 5_000_000)  # a 5 ms call: LoadGen's overhead is negligible
    slow, fast = loadgen_hints(settings, _cost(100_000)), loadgen_hints(settings, _cost(10_000))
    assert slow.expected_latency_ns == 10 * fast.expected_latency_ns
    offline = EvaluationSettings(scenario="offline", mode="performance")
    assert loadgen_hints(offline, _cost(1e6, samples_per_s=1_000.0)).offline_expected_qps == pytest.approx(1_500.0)


def test_a_profiled_run_takes_a_calibrated_cost_at_a_fraction_but_a_measured_run_cost_as_it_is() -> None:
    """At FRAMEWORK level the calibration may have measured profiled calls (ORT profiles from session creation):
    the schedule is sized for queries PROFILED_COST_FRACTION as long; a cost from a previous test is exact."""
    settings = EvaluationSettings(mode="performance")
    calibrated = _cost(100_000)
    plain, profiled = loadgen_hints(settings, calibrated), loadgen_hints(settings, calibrated, profiled=True)
    assert profiled.expected_latency_ns == round(plain.expected_latency_ns * PROFILED_COST_FRACTION)
    run_cost = QueryCost(source="run", per_query_ns=100_000.0, samples_per_s=10_000.0, queries=500)
    assert loadgen_hints(settings, run_cost, profiled=True).expected_latency_ns == plain.expected_latency_ns
    offline = EvaluationSettings(scenario="offline", mode="performance")
    offline_cost = _cost(1e6, samples_per_s=1_000.0)
    assert loadgen_hints(offline, offline_cost, profiled=True).offline_expected_qps == pytest.approx(6_000.0)
    pinned = EvaluationSettings(mode="performance", expected_latency_ms=0.5)
    assert loadgen_hints(pinned, calibrated, profiled=True).expected_latency_ns == 500_000


def test_the_offline_calibration_query_is_capped() -> None:
    """Offline's one query ends only when answered: a bare call far faster than LoadGen must not make it long."""
    settings = EvaluationSettings(scenario="offline", mode="performance", batch_size=16)
    hints = calibration_hints(settings, 10_000)  # 16 samples in 10 us: 1.6 million samples/s on the bare call
    samples = generated_queries(calibration_settings(settings), hints)[2]
    assert samples <= CALIBRATION_MAX_SAMPLES


def test_the_meter_counts_queries_and_samples() -> None:
    answered: list[int] = []
    meter = QueryMeter()
    metered = meter.wrap(lambda samples: answered.extend(samples))
    for query in ([1], [2, 3], [4]):
        metered(query)
    assert answered == [1, 2, 3, 4]
    assert (meter.queries, meter.samples) == (3, 4)
    cost = meter.cost(EvaluationSettings(mode="performance"))
    assert cost is not None and cost.source == "loadgen" and cost.queries == 3
    assert QueryMeter().cost(EvaluationSettings()) is None


# --- the calibration test through LoadGen -------------------------------------------------------------------


class _ZerosReader:
    def __init__(self, size: int) -> None:
        self.size = size
        self.truth = ClassLabels(np.zeros(size, np.int64))
        self.fingerprint = "zeros"

    def read(self, index: int) -> np.ndarray:
        return np.zeros((1, 8, 8), np.float32)

    def name(self, index: int) -> ItemName:
        return ItemName(index)


class _FastPredictor(Predictor):
    """Returns a prepared answer: the bare call costs next to nothing, a query is almost all LoadGen's work."""

    name = "fast"
    progress: RunProgress | None = None
    slow_phase = "none"

    @classmethod
    def library_version(cls) -> str:
        return "0"

    def load(self, artifact_path: Path) -> None:
        self.answer = [np.zeros((1, 10), np.float32)]

    def predict(self, inputs):  # type: ignore[no-untyped-def]
        if self.progress is not None and self.progress.phase == self.slow_phase:
            time.sleep(0.0005)
        return self.answer


def _driver(registry: Registry, **settings: object) -> LoadGenDriver:
    spec = registry.model("digits-cnn").spec
    predictor = _FastPredictor(spec, PredictorOptions())
    predictor.load(Path("unused"))
    library = SampleLibrary(
        _ZerosReader(20), spec.model_copy(update={"inputs": [ModelInput(name="x", shape=[1, 8, 8], dtype="float32")]})
    )
    chosen = EvaluationSettings(scenario="single-stream", mode="performance", **{**QUICK, **settings})
    progress = RunProgress()
    predictor.progress = progress
    return LoadGenDriver(predictor, library, None, chosen, progress)


def test_the_hint_reflects_a_query_through_loadgen_not_the_bare_call(registry: Registry, tmp_path: Path) -> None:
    driver = _driver(registry)
    warmup = driver.warm_up()
    assert warmup.cost is not None and warmup.cost.source == "loadgen" and warmup.cost.queries > 100
    # LoadGen's issue/complete path and the SUT callback are several times the prepared answer's cost.
    assert warmup.cost.per_query_ns > 1.5 * warmup.median_latency_ns
    outcome = driver.run("performance", warmup, tmp_path / "logs")
    assert outcome.report is not None and outcome.report.valid, outcome.report
    hint = outcome.report.requested_settings["single_stream_expected_latency_ns"]
    assert hint == max(round(warmup.cost.per_query_ns * STREAM_HINT_FRACTION), 1_000)
    schedule = outcome.schedule
    assert schedule is not None and schedule.hints.expected_latency_ns == hint
    assert schedule.generated_queries_logged is not None
    assert abs(schedule.generated_queries_logged - schedule.generated_queries) <= 2 + schedule.generated_queries // 1000
    assert driver.progress.schedule is schedule


def test_a_pinned_hint_skips_the_calibration(registry: Registry, tmp_path: Path) -> None:
    driver = _driver(registry, expected_latency_ms=0.05)
    warmup = driver.warm_up()
    assert warmup.cost is None and warmup.calibration_s == 0.0
    outcome = driver.run("performance", warmup, tmp_path / "logs")
    assert outcome.report is not None
    assert outcome.report.requested_settings["single_stream_expected_latency_ns"] == 50_000


def test_a_calibration_slower_than_the_run_is_caught_by_the_rerun(registry: Registry, tmp_path: Path) -> None:
    """Slow only during the calibration test: LoadGen runs out of queries, the run repeats on its own cost."""
    driver = _driver(registry)
    driver.predictor.slow_phase = "calibration"  # type: ignore[attr-defined]
    warmup = driver.warm_up()
    assert warmup.cost is not None and warmup.cost.per_query_ns > 400_000  # the 0.5 ms sleep
    outcome = driver.run("performance", warmup, tmp_path / "logs")
    assert outcome.report is not None and outcome.report.valid, outcome.report
    assert outcome.schedule is not None and outcome.schedule.hints.cost is not None
    assert outcome.schedule.hints.cost.source == "run"
    assert outcome.report.requested_settings["single_stream_expected_latency_ns"] < 200_000


def test_the_run_logs_the_warning_when_memory_is_short(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(schedule, "available_memory", lambda: (1_000_000, "injected 1 MB"))
    driver = _driver(registry, expected_latency_ms=0.05)
    with caplog.at_level(logging.INFO, logger="mlmodelscope.core.evaluation.driver"):
        outcome = driver.run("performance", driver.warm_up(), tmp_path / "logs")
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "injected 1 MB" in warnings[0] and "--max-queries" in warnings[0]
    assert outcome.schedule is not None and outcome.schedule.warning == warnings[0]
    recorded = json.loads((tmp_path / "logs" / schedule.SCHEDULE_FILE).read_text())
    assert recorded["generated_queries"] == outcome.schedule.generated_queries
