"""The sample library is LoadGen's QSL: it decodes only what is loaded, frees it on unload, walks a dataset larger
than the performance sample count in sets, reuses its on-disk cache and names the file it cannot decode."""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlmodelscope.core.datasets.reader import ClassLabels, ItemName
from mlmodelscope.core.datasets.sample_cache import SampleCache
from mlmodelscope.core.errors import EvaluationError, ProcessingError
from mlmodelscope.core.evaluation.driver import LoadGenDriver
from mlmodelscope.core.evaluation.results import AccuracyResult, Verdict
from mlmodelscope.core.evaluation.sample_library import SampleLibrary
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests.model_spec import ModelSpec
from mlmodelscope.core.manifests.model_tensors import ModelInput
from mlmodelscope.core.predictor import Predictor, PredictorOptions
from mlmodelscope.core.processing.preprocess import Preprocessor
from mlmodelscope.core.processing.steps import PreprocessStep

SIDE = 12
QUICK = {"min_duration_s": 0.05, "min_query_count": 16, "warmup_queries": 1}


def _jpeg(seed: int, size: tuple[int, int]) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class _JpegReader:
    """``size`` JPEGs of mixed sizes, named cls/NNN.jpg; counts every read (from any thread)."""

    def __init__(self, size: int, broken: int | None = None, fingerprint: str = "f" * 64) -> None:
        self.size = size
        self.truth = ClassLabels(np.arange(size, dtype=np.int64) % 3)
        self.fingerprint = fingerprint
        self.reads: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._broken = broken

    def read(self, index: int) -> bytes:
        with self._lock:
            self.reads[index] += 1
        if index == self._broken:
            return b"this is not an image"
        return _jpeg(index, (20 + index % 7, 16 + index % 5))

    def name(self, index: int) -> ItemName:
        return ItemName(index, f"c{index % 3}/{index:03d}.jpg")


_INPUT = ModelInput(
    name="input",
    shape=[3, SIDE, SIDE],
    dtype="float32",
    preprocess=[
        PreprocessStep.model_validate(step)
        for step in (
            {"decode": {"color_mode": "RGB"}},
            {"resize": {"size": [SIDE, SIDE]}},
            {"normalize": {"mean": 0.0, "scale": 255.0}},
            {"layout": "CHW"},
            {"dtype": "float32"},
        )
    ],
)


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    """A model of that one input (nothing of it but its inputs is used here)."""
    return ModelSpec.model_validate(
        {
            "task": "image_classification",
            "framework": {"name": "onnxruntime"},
            "artifacts": [{"uri": "unused.onnx", "sha256": "0" * 64, "format": "onnx"}],
            "inputs": [_INPUT.model_dump(exclude_none=True)],
            "outputs": [{"name": "logits", "shape": [10], "postprocess": [{"top_k": {"k": 5}}]}],
        }
    )


def test_only_loaded_items_are_decoded(spec: ModelSpec) -> None:
    reader = _JpegReader(40)
    library = SampleLibrary(reader, spec)
    assert library.loaded == 0 and not reader.reads  # opening decodes nothing
    library.load([5, 9, 5, 30])
    assert reader.reads == Counter({5: 1, 9: 1, 30: 1})
    assert library.loaded == 3
    (batch,) = library.gather([30, 5])
    assert batch.shape == (2, 3, SIDE, SIDE) and batch.dtype == np.float32
    alone = Preprocessor(_INPUT.preprocess)(_JpegReader(40).read(30))
    np.testing.assert_array_equal(batch[0], alone)
    library.load([9, 10])  # 9 is already in RAM: only 10 is decoded
    assert reader.reads[9] == 1 and reader.reads[10] == 1


def test_unload_frees_the_items(spec: ModelSpec) -> None:
    library = SampleLibrary(_JpegReader(20), spec)
    library.load(range(4))
    (view,) = library.contiguous(0, 4)
    assert view.base is not None  # consecutive rows: a view, no copy
    del view
    library.unload([0, 1])
    assert library.loaded == 2 and not library.is_loaded(0) and library.is_loaded(2)
    with pytest.raises(EvaluationError, match=r"item 0 \(c0/000.jpg\) was not loaded"):
        library.gather([0, 2])
    library.unload([2, 3])
    assert library.loaded == 0
    assert not library._blocks  # the block's array is released once none of its items is loaded


class _ZeroPredictor(Predictor):
    name = "zeros"

    @classmethod
    def library_version(cls) -> str:
        return "0"

    def load(self, artifact_path: Path) -> None:
        pass

    def predict(self, inputs):  # type: ignore[no-untyped-def]
        return [np.zeros((len(inputs[0]), 10), np.float32)]


class _CountingScorer:
    """Counts how often each item is answered; the library's peak loaded count is watched on every batch."""

    def __init__(self, size: int, library: SampleLibrary) -> None:
        self.answers: Counter[int] = Counter()
        self.size = size
        self.library = library
        self.peak_loaded = 0

    def record(self, items: np.ndarray, outputs: Sequence[np.ndarray]) -> None:
        self.peak_loaded = max(self.peak_loaded, self.library.loaded)
        self.answers.update(int(i) for i in items)

    @property
    def answered(self) -> np.ndarray:
        return np.array([self.answers[i] > 0 for i in range(self.size)])

    def warm(self, outputs: Sequence[np.ndarray]) -> None:
        pass

    def result(self, verdict: Verdict, log_dir: Path) -> AccuracyResult:  # pragma: no cover - unused here
        raise NotImplementedError


@pytest.mark.parametrize(("scenario", "batch_size"), [("single-stream", 1), ("offline", 3), ("multi-stream", 2)])
def test_accuracy_walks_a_dataset_larger_than_the_loaded_set(
    spec: ModelSpec, tmp_path: Path, scenario: str, batch_size: int
) -> None:
    """LoadGen loads sets of performance_sample_count items, issues them, unloads: every item answered once."""
    reader = _JpegReader(50)
    library = SampleLibrary(reader, spec)
    scorer = _CountingScorer(50, library)
    settings = EvaluationSettings(
        scenario=scenario,  # type: ignore[arg-type]
        mode="accuracy",
        batch_size=batch_size,
        performance_sample_count=8,
        samples_per_query=2,
        **QUICK,  # type: ignore[arg-type]
    )
    driver = LoadGenDriver(_ZeroPredictor(spec, PredictorOptions()), library, scorer, settings)
    warmup = driver.warm_up()
    assert library.loaded == 0  # the warm-up released what it loaded
    outcome = driver.run("accuracy", warmup, tmp_path / "logs")
    assert not outcome.errors
    assert scorer.answers == Counter(range(50))  # every item exactly once
    assert 0 < scorer.peak_loaded <= 8 + 1  # never more than one loaded set (+1: MultiStream's padding)
    assert library.loaded == 0
    warmup_reads = Counter(range(batch_size))
    assert reader.reads - warmup_reads == Counter(range(50))  # each set decoded once


def test_performance_decodes_only_the_loaded_set(spec: ModelSpec, tmp_path: Path) -> None:
    reader = _JpegReader(60)
    library = SampleLibrary(reader, spec)
    settings = EvaluationSettings(mode="performance", performance_sample_count=10, **QUICK)  # type: ignore[arg-type]
    driver = LoadGenDriver(_ZeroPredictor(spec, PredictorOptions()), library, None, settings)
    outcome = driver.run("performance", driver.warm_up(), tmp_path / "logs")
    assert outcome.report is not None and outcome.report.effective_settings["performance_sample_count"] == 10
    assert sum((reader.reads - Counter({0: 1})).values()) == 10  # the warm-up's item 0, then one loaded set
    assert library.loaded == 0


def test_cache_hit_avoids_decoding(spec: ModelSpec, tmp_path: Path) -> None:
    first = _JpegReader(12)
    library = SampleLibrary(first, spec, SampleCache(tmp_path, first.fingerprint, _INPUT))
    library.load(range(12))
    (expected,) = library.gather(range(12))
    again = _JpegReader(12)
    cache = SampleCache(tmp_path, again.fingerprint, _INPUT)
    second = SampleLibrary(again, spec, cache)
    second.load(range(12))
    assert not again.reads and cache.hits == 12
    np.testing.assert_array_equal(second.gather(range(12))[0], expected)
    other = _JpegReader(12, fingerprint="e" * 64)  # other bytes: another key, decoded again
    SampleLibrary(other, spec, SampleCache(tmp_path, other.fingerprint, _INPUT)).load([0])
    assert other.reads == Counter({0: 1})


def test_corrupted_cache_entry_is_recomputed(spec: ModelSpec, tmp_path: Path) -> None:
    reader = _JpegReader(6)
    cache = SampleCache(tmp_path, reader.fingerprint, _INPUT)
    SampleLibrary(reader, spec, cache).load(range(6))
    truncated, garbage = cache.path(2), cache.path(4)
    truncated.write_bytes(truncated.read_bytes()[:-7])
    garbage.write_bytes(b"\x93NUMPY not really")
    again = _JpegReader(6)
    cache = SampleCache(tmp_path, again.fingerprint, _INPUT)
    library = SampleLibrary(again, spec, cache)
    library.load(range(6))
    assert again.reads == Counter({2: 1, 4: 1}) and cache.hits == 4
    alone = Preprocessor(_INPUT.preprocess)(_JpegReader(6).read(2))
    np.testing.assert_array_equal(library.gather([2])[0][0], alone)
    assert SampleCache(tmp_path, again.fingerprint, _INPUT).get(2) is not None  # rewritten whole


def test_undecodable_file_is_named(spec: ModelSpec, tmp_path: Path) -> None:
    library = SampleLibrary(_JpegReader(30, broken=21), spec)
    with pytest.raises(ProcessingError, match=r"item 21 \(c0/021.jpg\).*decode"):
        library.load(range(30))


def test_undecodable_file_fails_the_run_with_its_name(spec: ModelSpec, tmp_path: Path) -> None:
    """LoadGen's load callback cannot raise: the driver keeps the error and raises it once the test is over."""
    reader = _JpegReader(30, broken=21)
    library = SampleLibrary(reader, spec)
    settings = EvaluationSettings(mode="accuracy", performance_sample_count=10, **QUICK)  # type: ignore[arg-type]
    driver = LoadGenDriver(_ZeroPredictor(spec, PredictorOptions()), library, _CountingScorer(30, library), settings)
    with pytest.raises(ProcessingError, match=r"c0/021.jpg"):
        driver.run("accuracy", driver.warm_up(), tmp_path / "logs")
    assert library.loaded == 0


def test_units_of_a_batch_walk_the_dataset_in_sets(spec: ModelSpec, tmp_path: Path) -> None:
    """SingleStream with batch 4: a LoadGen sample is 4 consecutive items; 8 items per set = 2 units loaded."""
    reader = _JpegReader(50)
    library = SampleLibrary(reader, spec)
    scorer = _CountingScorer(50, library)
    settings = EvaluationSettings(mode="accuracy", batch_size=4, performance_sample_count=8, **QUICK)  # type: ignore[arg-type]
    driver = LoadGenDriver(_ZeroPredictor(spec, PredictorOptions()), library, scorer, settings)
    assert driver.qsl.total == 13 and driver._performance_count == 2
    driver.run("accuracy", driver.warm_up(), tmp_path / "logs")
    # The last unit wraps around (items 48, 49, 0, 1) so every call is a full batch: 0 and 1 are answered twice.
    assert scorer.answers == Counter(range(50)) + Counter({0: 1, 1: 1})
    assert scorer.peak_loaded <= 8


def test_the_default_performance_sample_count_is_mlperfs_bounded_by_the_dataset() -> None:
    assert EvaluationSettings().performance_samples(50_000) == 1024
    assert EvaluationSettings().performance_samples(450) == 450
    assert EvaluationSettings(performance_sample_count=64).performance_samples(450) == 64
    assert EvaluationSettings(performance_sample_count=5000).performance_samples(450) == 450
