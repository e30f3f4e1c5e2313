"""The LoadGen driver and runner in-process: batching per scenario, records, accuracy bookkeeping, failures."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.datasets.reader import ClassLabels, ItemName
from mlmodelscope.core.errors import EvaluationError, PredictorError
from mlmodelscope.core.evaluation.driver import LoadGenDriver
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.sample_library import SampleLibrary
from mlmodelscope.core.evaluation.settings import EvaluationSettings, Seeds
from mlmodelscope.core.manifests import Registry
from mlmodelscope.core.manifests.model_tensors import ModelInput
from mlmodelscope.core.predictor import Predictor, PredictorOptions
from tests.support.paths import ASSETS

pytestmark = pytest.mark.slow

# 64 queries at least: LoadGen's early stopping needs them for a VALID single-stream run, and how many queries fit
# in min_duration_s depends on the CPU and its load.
QUICK = {"min_duration_s": 0.2, "min_query_count": 64, "warmup_queries": 2}


def _run(registry: Registry, tmp_path: Path, framework: str = "onnxruntime", **settings: object):  # type: ignore[no-untyped-def]
    request = RunRequest(
        model="digits-cnn",
        framework=framework,
        dataset=None,
        settings=EvaluationSettings(**{**QUICK, **settings}),  # type: ignore[arg-type]
        output_dir=tmp_path / "out",
    )
    return execute_run(registry, ArtifactStore(tmp_path / "cache"), request)


@pytest.mark.parametrize(
    ("scenario", "batch_size"),
    [("single-stream", 4), ("offline", 32), ("multi-stream", 3), ("server", 7)],
)
def test_accuracy_is_the_same_for_every_scenario_and_batch_size(
    registry: Registry, tmp_path: Path, scenario: str, batch_size: int
) -> None:
    """Every item is answered once whatever the batching (450 is not a multiple of 4, 32, 3 or 7)."""
    extra = {"target_qps": 500.0} if scenario == "server" else {}
    result = _run(registry, tmp_path, scenario=scenario, batch_size=batch_size, mode="accuracy", **extra)
    assert result.accuracy is not None
    assert result.accuracy.count == 450
    assert result.accuracy.verdict.valid
    assert result.accuracy.top1 == pytest.approx(0.9889, abs=1e-4)  # the model's recorded top-1 (445/450)
    assert result.accuracy.top5 == 1.0


def test_performance_records_cover_batches(registry: Registry, tmp_path: Path) -> None:
    result = _run(registry, tmp_path, scenario="offline", batch_size=16, mode="performance")
    performance = result.performance
    assert performance is not None
    assert performance.verdict.valid, performance.verdict
    # Offline answers LoadGen's one big query in batches of 16: calls x 16 >= samples.
    assert performance.queries * 16 >= performance.samples
    assert performance.samples >= 450
    assert performance.effective_settings["scenario"] == "Offline"
    assert performance.throughput.samples_per_s > 0


def test_null_predictor_measures_the_harness(registry: Registry, tmp_path: Path) -> None:
    result = _run(registry, tmp_path, framework="null", mode="both")
    assert result.framework.name == "null"
    assert result.accuracy is not None and result.accuracy.count == 450
    # Zeros for every class: top-1 is always class 0, about one tenth of the digits.
    assert result.accuracy.top1 == pytest.approx(float(np.mean(_labels() == 0)))
    assert result.performance is not None and result.performance.verdict.valid


def test_seeds_are_recorded_and_effective(registry: Registry, tmp_path: Path) -> None:
    result = _run(registry, tmp_path, mode="performance", seeds=Seeds.from_single(7))
    assert result.performance is not None
    effective = result.performance.effective_settings
    assert effective["qsl_rng_seed"] == Seeds.from_single(7).qsl
    assert effective["schedule_rng_seed"] == Seeds.from_single(7).schedule
    assert result.requested_settings.seeds == Seeds.from_single(7)


def test_unavailable_device_is_a_clear_error(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(PredictorError, match="device 'gpu'"):
        request = RunRequest(
            model="digits-cnn",
            framework="onnxruntime",
            dataset=None,
            settings=EvaluationSettings(**QUICK),  # type: ignore[arg-type]
            output_dir=tmp_path / "out",
            device="gpu",
        )
        execute_run(registry, ArtifactStore(tmp_path / "cache"), request)


class _FailingPredictor(Predictor):
    name = "failing"

    @classmethod
    def library_version(cls) -> str:
        return "0"

    def load(self, artifact_path: Path) -> None:
        self.calls = 0

    def predict(self, inputs):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls > 20:  # warm-up passes, then the model breaks
            raise RuntimeError("out of memory")
        return [np.zeros((len(inputs[0]), 10), np.float32)]


def _driver_of(predictor_class: type[Predictor], registry: Registry, **settings: object) -> LoadGenDriver:
    """A single-stream performance driver over 20 zero samples, with a test predictor."""
    predictor = predictor_class(registry.model("digits-cnn").spec, PredictorOptions())
    predictor.load(Path("unused"))
    library = SampleLibrary(_ZerosReader(20), registry.model("digits-cnn").spec.model_copy(update={"inputs": [_INPUT]}))
    chosen = EvaluationSettings(scenario="single-stream", mode="performance", **{**QUICK, **settings})  # type: ignore[arg-type]
    return LoadGenDriver(predictor, library, None, chosen)


_INPUT = ModelInput(name="input", shape=[1, 8, 8], dtype="float32")


class _ZerosReader:
    """``size`` zero 8x8 grey images, all class 0."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.truth = ClassLabels(np.zeros(size, np.int64))
        self.fingerprint = "zeros"

    def read(self, index: int) -> np.ndarray:
        return np.zeros((1, 8, 8), np.float32)

    def name(self, index: int) -> ItemName:
        return ItemName(index)


def test_predictor_failure_completes_the_run_and_reports(registry: Registry, tmp_path: Path) -> None:
    """LoadGen must not hang waiting for answers: failed calls are completed and the failure reported after."""
    driver = _driver_of(_FailingPredictor, registry)
    warmup = driver.warm_up()
    with pytest.raises(EvaluationError, match="out of memory") as info:
        driver.run("performance", warmup, tmp_path / "logs")
    assert isinstance(info.value.__cause__, RuntimeError)


def _labels() -> np.ndarray:
    with np.load(ASSETS / "artifacts" / "digits" / "digits_test.npz") as data:
        return data["labels"]


class _JitLikePredictor(_FailingPredictor):
    """Slow for its first calls, as a JIT-compiling framework is, then fast."""

    def predict(self, inputs):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls <= 2:
            time.sleep(0.02)
        return [np.zeros((len(inputs[0]), 10), np.float32)]


def test_warm_up_continues_until_latency_is_steady(registry: Registry) -> None:
    """Calibrating LoadGen on the slow first calls would make it generate too few queries (an INVALID run)."""
    warmup = _driver_of(_JitLikePredictor, registry, warmup_queries=1).warm_up()
    assert warmup.queries >= 7  # went on past the slow calls until five fast ones in a row
    assert warmup.min_latency_ns < 10_000_000  # calibrated on the fast, steady calls


class _SlowWarmUpPredictor(_FailingPredictor):
    """Steadily slow during the warm-up (a loaded machine), fast once the test sets ``fast`` (not after a count of
    calls: on a loaded machine a sleep's jitter can make the warm-up take more calls than expected)."""

    fast = False

    def predict(self, inputs):  # type: ignore[no-untyped-def]
        if not self.fast:
            time.sleep(0.005)
        return [np.zeros((len(inputs[0]), 10), np.float32)]


def test_a_run_that_ran_out_of_queries_is_recalibrated_and_repeated(registry: Registry, tmp_path: Path) -> None:
    driver = _driver_of(_SlowWarmUpPredictor, registry)
    warmup = driver.warm_up()
    assert warmup.min_latency_ns > 4_000_000  # LoadGen is told ~2.5 ms: it would generate far too few queries
    driver.predictor.fast = True  # type: ignore[attr-defined]
    outcome = driver.run("performance", warmup, tmp_path / "logs")
    assert outcome.report is not None and outcome.report.valid, outcome.report
    assert outcome.report.requested_settings["single_stream_expected_latency_ns"] < 1_000_000
    # The first test is recorded as discarded: its queries; nothing of it was streamed (no tracer here).
    assert outcome.schedule is not None
    assert outcome.schedule.discarded_test_queries > 0 and outcome.schedule.discarded_streamed_spans == 0
