"""A folder of JPEGs is scored exactly as an npz of the same decoded images: same tensors, same top-1/top-5.

The digits test split becomes grey JPEGs of mixed sizes in class sub-folders. The folder route decodes them
(GRAY), resizes to 8x8 and normalizes inside the model's pre-processing, in loaded sets of 64 (fewer than the
dataset has), through the sample cache; the npz route gets the very same decoded and resized arrays and only
normalizes. The digits CNN must then answer both identically, probability for probability.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.datasets.opening import open_reader
from mlmodelscope.core.errors import ManifestError
from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.processing.preprocess import Preprocessor
from mlmodelscope.core.processing.steps import PreprocessStep
from tests.support.paths import ASSETS

pytestmark = pytest.mark.slow

DIGITS = ASSETS / "artifacts" / "digits"
ONNX_SHA256 = "a887ee54111c3d39c37e040bbecb86d66f5b16d13b68855ac599899fcc81cee4"
LABELS_SHA256 = "7427877c40fb0361401248f9c96abe6117396bc6ab16811b5b1706274c02443e"
IMAGES = 300
DECODE = [{"decode": {"color_mode": "GRAY"}}, {"resize": {"size": [8, 8], "method": "bilinear"}}]
TENSOR = [{"normalize": {"mean": 0.0, "scale": 255.0}}, {"layout": "CHW"}, {"dtype": "float32"}]  # as /16 of 0..16


def _write_jpegs(folder: Path) -> None:
    """The first IMAGES test digits as grey JPEGs of mixed sizes and aspect ratios, one sub-folder per class."""
    with np.load(DIGITS / "digits_test.npz") as data:
        images, labels = data["images"][:IMAGES], data["labels"][:IMAGES]
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        grey = np.round(image[..., 0] * (255 / 16)).astype(np.uint8)
        size = (8 * (2 + i % 5), 8 * (2 + i % 3))  # (width, height): 16..48 x 16..32, whole pixel blocks
        picture = Image.fromarray(grey, mode="L").resize(size, Image.Resampling.NEAREST)
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=92)
        (folder / str(label) / f"{i:04d}.jpg").write_bytes(buffer.getvalue())


def _model(name: str, dataset: str, preprocess: list[dict[str, object]]) -> str:
    steps = "\n".join(f"        - {step}" for step in preprocess)
    return f"""apiVersion: mlmodelscope.org/v1alpha1
kind: Model
metadata: {{name: {name}}}
spec:
  task: image_classification
  framework: {{name: onnxruntime, version: ">=1.17"}}
  artifacts:
    - {{uri: "file://{DIGITS / "digits_cnn.onnx"}", sha256: {ONNX_SHA256}, format: onnx}}
  inputs:
    - name: input
      shape: [1, 8, 8]
      dtype: float32
      preprocess:
{steps}
  outputs:
    - name: logits
      shape: [10]
      postprocess: [{{softmax: {{}}}}, {{top_k: {{k: 5}}}}]
      labels: {{uri: "file://{DIGITS / "labels.txt"}", sha256: {LABELS_SHA256}}}
  dataset: {dataset}
"""


def _dataset(name: str, source: str) -> str:
    return f"""apiVersion: mlmodelscope.org/v1alpha1
kind: Dataset
metadata: {{name: {name}}}
spec:
  task: image_classification
  size: {IMAGES}
  source: {source}
"""


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("assets")
    for sub in ("models", "datasets", "frameworks"):
        (root / sub).mkdir()
    (root / "frameworks" / "onnxruntime.yaml").write_text((ASSETS / "frameworks" / "onnxruntime.yaml").read_text())
    _write_jpegs(root / "datasets" / "digits-jpeg")
    (root / "datasets" / "digits-jpeg.yaml").write_text(_dataset("digits-jpeg", "{kind: folder, uri: digits-jpeg}"))
    (root / "models" / "digits-jpeg-cnn.yaml").write_text(_model("digits-jpeg-cnn", "digits-jpeg", DECODE + TENSOR))
    # The npz route: the same JPEGs, decoded and resized by the same steps, in the folder reader's order.
    registry = load_registry([root])
    reader = open_reader(registry.dataset("digits-jpeg"), ArtifactStore(root / "cache"), root / "datasets")
    decode = Preprocessor([PreprocessStep.model_validate(step) for step in DECODE])
    images = np.stack([decode(reader.read(i)) for i in range(reader.size)])
    assert images.shape == (IMAGES, 8, 8, 1) and images.dtype == np.uint8
    np.savez(root / "datasets" / "decoded.npz", images=images, labels=reader.truth.labels)  # type: ignore[union-attr]
    digest = hashlib.sha256((root / "datasets" / "decoded.npz").read_bytes()).hexdigest()
    npz = f"{{kind: npz, uri: decoded.npz, sha256: {digest}}}"
    (root / "datasets" / "digits-decoded.yaml").write_text(_dataset("digits-decoded", npz))
    (root / "models" / "digits-decoded-cnn.yaml").write_text(_model("digits-decoded-cnn", "digits-decoded", TENSOR))
    return root


def _accuracy(root: Path, model: str, out: Path) -> RunResult:
    settings = EvaluationSettings(mode="accuracy", scenario="offline", batch_size=16, performance_sample_count=64)
    request = RunRequest(model=model, framework="onnxruntime", dataset=None, settings=settings, output_dir=out)
    return execute_run(load_registry([root]), ArtifactStore(root / "cache"), request)


def _probabilities(result: RunResult) -> np.ndarray:
    assert result.accuracy is not None and result.accuracy.outputs is not None
    with np.load(result.accuracy.outputs.path) as data:
        return np.asarray(data["probabilities"])


def test_folder_of_jpegs_scores_exactly_as_the_npz_of_its_decoded_images(assets: Path, tmp_path: Path) -> None:
    folder = _accuracy(assets, "digits-jpeg-cnn", tmp_path / "folder")
    npz = _accuracy(assets, "digits-decoded-cnn", tmp_path / "npz")
    assert folder.accuracy is not None and npz.accuracy is not None
    assert folder.accuracy.count == npz.accuracy.count == IMAGES
    assert folder.accuracy.verdict.valid
    assert folder.accuracy.top1 == npz.accuracy.top1
    assert folder.accuracy.top5 == npz.accuracy.top5
    assert folder.accuracy.top1 is not None and folder.accuracy.top1 > 0.9  # the real model sees real digits
    np.testing.assert_array_equal(_probabilities(folder), _probabilities(npz))


def test_second_run_reads_the_sample_cache_and_answers_the_same(assets: Path, tmp_path: Path) -> None:
    first = _accuracy(assets, "digits-jpeg-cnn", tmp_path / "first")
    entries = list((assets / "cache" / "samples").glob("*/*.npy"))
    assert len(entries) == IMAGES  # every item pre-processed once, for this (dataset, pipeline) pair only
    damaged = next(entry for entry in entries if entry.name == "7.npy")
    damaged.write_bytes(damaged.read_bytes()[:-4])  # recomputed, not trusted
    second = _accuracy(assets, "digits-jpeg-cnn", tmp_path / "second")
    assert first.accuracy is not None and second.accuracy is not None
    assert second.accuracy.top1 == first.accuracy.top1 and second.accuracy.top5 == first.accuracy.top5
    np.testing.assert_array_equal(_probabilities(first), _probabilities(second))


def test_accuracy_on_unlabelled_images_is_refused_before_anything_runs(assets: Path, tmp_path: Path) -> None:
    unlabelled = "{kind: folder, uri: digits-jpeg, labels: none}"
    (assets / "datasets" / "digits-unlabelled.yaml").write_text(_dataset("digits-unlabelled", unlabelled))
    settings = EvaluationSettings(mode="accuracy")
    request = RunRequest(
        model="digits-jpeg-cnn",
        framework="onnxruntime",
        dataset="digits-unlabelled",
        settings=settings,
        output_dir=tmp_path,
    )
    with pytest.raises(ManifestError, match=r"300 unlabelled items \(e\.g\. item 0 \(0/\d{4}\.jpg\)\)"):
        execute_run(load_registry([assets]), ArtifactStore(assets / "cache"), request)
    (assets / "datasets" / "digits-unlabelled.yaml").unlink()
