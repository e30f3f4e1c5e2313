"""The PyTorch predictor with real torch: discovery, the committed TorchScript digits model, errors, end to end."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlmodelscope.core.artifacts import ArtifactStore
from mlmodelscope.core.errors import DeviceUnavailableError, ModelLoadError
from mlmodelscope.core.evaluation.runner import EvaluationRequest, run_evaluation
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import Model, load_registry
from mlmodelscope.core.predictor import Predictor, PredictorOptions, available_predictors, load_predictor_class
from tests.conftest import ASSETS

torch = pytest.importorskip("torch")

DIGITS = ASSETS / "artifacts" / "digits"
TORCHSCRIPT = DIGITS / "digits_cnn.torchscript.pt"
ONNX = DIGITS / "digits_cnn.onnx"


@pytest.fixture(scope="module")
def model() -> Model:
    return load_registry([ASSETS]).model("digits-cnn")


@pytest.fixture(scope="module")
def test_inputs() -> tuple[np.ndarray, np.ndarray]:
    """The digits test split as the model sees it: float32 (450, 1, 8, 8) in [0, 1], and the labels."""
    with np.load(DIGITS / "digits_test.npz") as data:
        images, labels = data["images"], data["labels"]
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2) / np.float32(16.0), dtype=np.float32)
    return x, labels


def _predictor(model: Model, **options: object) -> Predictor:
    return load_predictor_class("pytorch")(model.spec, PredictorOptions(**options))  # type: ignore[arg-type]


def test_pytorch_is_discovered_by_entry_point() -> None:
    assert "pytorch" in available_predictors()
    cls = load_predictor_class("pytorch")
    assert cls.name == "pytorch"
    assert cls.library_version() == torch.__version__.split("+")[0]
    assert "+" not in cls.library_version()


def test_registry_picks_the_torchscript_artifact_for_pytorch() -> None:
    resolution = load_registry([ASSETS]).resolve("digits-cnn", "pytorch")
    assert resolution.artifact.format == "torchscript"
    assert resolution.artifact.uri.endswith("digits_cnn.torchscript.pt")


@pytest.mark.parametrize("batch", [1, 2, 7, 64])
def test_predict_returns_one_batch_of_declared_outputs(model: Model, batch: int) -> None:
    with _predictor(model, intra_op_threads=1) as predictor:
        predictor.load(TORCHSCRIPT)
        x = np.random.default_rng(0).random((batch, 1, 8, 8), dtype=np.float32)
        outputs = predictor.predict([x])
        assert len(outputs) == 1
        assert outputs[0].shape == (batch, 10)
        assert outputs[0].dtype == np.float32


def test_read_only_inputs_are_accepted(model: Model) -> None:
    with _predictor(model) as predictor:
        predictor.load(TORCHSCRIPT)
        x = np.random.default_rng(2).random((3, 1, 8, 8), dtype=np.float32)
        expected = predictor.predict([x])[0]
        x.setflags(write=False)
        np.testing.assert_array_equal(predictor.predict([x])[0], expected)


def test_torchscript_agrees_with_the_onnx_model(model: Model, test_inputs: tuple[np.ndarray, np.ndarray]) -> None:
    """The same trained weights: logits within 1e-4 of ONNX Runtime and the same top-1 (445/450)."""
    x, labels = test_inputs
    with _predictor(model) as pytorch:
        pytorch.load(TORCHSCRIPT)
        torch_logits = pytorch.predict([x])[0]
        # Batch size does not change the answer.
        single = np.concatenate([pytorch.predict([x[i : i + 1]])[0] for i in range(9)])
        np.testing.assert_allclose(single, torch_logits[:9], atol=1e-5)
    with load_predictor_class("onnxruntime")(model.spec, PredictorOptions()) as onnx:
        onnx.load(ONNX)
        onnx_logits = onnx.predict([x])[0]
    np.testing.assert_allclose(torch_logits, onnx_logits, atol=1e-4, rtol=0)
    torch_top1 = np.argmax(torch_logits, axis=1)
    np.testing.assert_array_equal(torch_top1, np.argmax(onnx_logits, axis=1))
    assert int(np.sum(torch_top1 == labels)) == 445


def test_torch_export_archives_load_too(model: Model, tmp_path: Path) -> None:
    """A torch.export archive is recognised by its members and runs with a dynamic batch."""
    with pytest.warns(DeprecationWarning):  # torch announces TorchScript's deprecation on load
        scripted = torch.jit.load(str(TORCHSCRIPT))
    network = torch.nn.Sequential(  # the digits architecture (scripts/build_digits.py: build_model)
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2, 2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    )
    network.load_state_dict(scripted.state_dict())
    network.eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(network, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: batch},))
    path = tmp_path / "digits.pt2"
    torch.export.save(program, str(path))
    x = np.random.default_rng(3).random((5, 1, 8, 8), dtype=np.float32)
    with _predictor(model) as exported, _predictor(model) as reference:
        exported.load(path)
        reference.load(TORCHSCRIPT)
        np.testing.assert_allclose(exported.predict([x])[0], reference.predict([x])[0], atol=1e-5)


@pytest.mark.parametrize("content", [b"this is not a zip archive", None])
def test_bad_artifact_is_a_model_load_error(model: Model, tmp_path: Path, content: bytes | None) -> None:
    broken = tmp_path / "broken.pt"
    if content is None:  # a zip, but not a model
        with zipfile.ZipFile(broken, "w") as archive:
            archive.writestr("hello.txt", "hi")
    else:
        broken.write_bytes(content)
    with pytest.raises(ModelLoadError, match="could not load") as info:
        _predictor(model).load(broken)
    assert str(broken) in info.value.message
    assert info.value.hint


def test_damaged_torchscript_is_a_model_load_error(model: Model, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.pt"
    with zipfile.ZipFile(TORCHSCRIPT) as source, zipfile.ZipFile(damaged, "w") as target:
        for info in source.infolist():
            if not info.filename.endswith(("/data.pkl", "/constants.pkl")):
                target.writestr(info, source.read(info))
        target.writestr("archive/constants.pkl", b"garbage")
    with pytest.raises(ModelLoadError, match="could not load") as info:
        _predictor(model).load(damaged)
    assert str(damaged) in info.value.message


def test_gpu_without_cuda_is_a_clear_error(model: Model) -> None:
    if torch.cuda.is_available():
        pytest.skip("this torch build has CUDA")
    with pytest.raises(DeviceUnavailableError, match="gpu") as info:
        _predictor(model, device="gpu").load(TORCHSCRIPT)
    assert "CUDA build of torch" in info.value.hint


def test_unsupported_device_is_a_clear_error(model: Model) -> None:
    with pytest.raises(DeviceUnavailableError) as info:
        _predictor(model, device="fpga").load(TORCHSCRIPT)
    assert "fpga" in info.value.message


@pytest.mark.slow
def test_evaluation_end_to_end(scratch_assets: Path, tmp_path: Path) -> None:
    """A model whose own framework is pytorch: accuracy as recorded and a valid short performance run."""
    manifest = scratch_assets / "models" / "digits-cnn.yaml"
    document = yaml.safe_load(manifest.read_text())
    document["spec"]["framework"] = {"name": "pytorch", "version": ">=2.1"}
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))
    request = EvaluationRequest(
        model="digits-cnn",
        framework="pytorch",
        dataset=None,
        settings=EvaluationSettings(mode="both", min_duration_s=0.2, min_query_count=50, warmup_queries=2),
        output_dir=tmp_path / "out",
    )
    result = run_evaluation(load_registry([scratch_assets]), ArtifactStore(tmp_path / "cache"), request)
    assert result.framework.name == "pytorch"
    assert result.accuracy is not None
    assert result.accuracy.count == 450
    assert result.accuracy.top1 == pytest.approx(0.9889, abs=1e-4)
    assert result.accuracy.top5 == 1.0
    assert result.performance is not None
    assert result.performance.verdict.valid, result.performance.verdict
