"""The model zoo: zoo: URIs, building into the cache (reuse, atomicity, missing builders), the PyTorch builders
(shapes, ONNX/TorchScript agreement), synthetic datasets, and real evaluations of zoo models."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from mlmodelscope.core.artifacts.digests import sha256_of_file
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.artifacts.zoo import (
    BUILD_RECORD,
    FetchedArtifact,
    available_builders,
    build_zoo_artifact,
    fetch_artifact,
    load_zoo_builder,
    tree_sha256,
    zoo_build_dir,
)
from mlmodelscope.core.datasets.opening import open_reader
from mlmodelscope.core.errors import ArtifactError, FrameworkUnavailableError, ManifestError, ModelLoadError
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.sample_library import SampleLibrary, dataset_source_sha256
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.manifests.artifact_spec import Artifact, ZooRef, parse_zoo_uri
from mlmodelscope.core.manifests.dataset_spec import DatasetSource
from mlmodelscope.core.manifests.resources import Dataset
from mlmodelscope.core.predictor import PredictorOptions, load_predictor_class
from tests.support.cli import run_cli
from tests.support.paths import ASSETS, REPO

ZOO_MODELS = ["resnet18", "resnet50", "mobilenet-v2", "transformer-encoder"]
SLOW_MODELS = {"resnet50"}


def _zoo_params(models: list[str]) -> list[Any]:
    return [pytest.param(m, marks=pytest.mark.slow) if m in SLOW_MODELS else m for m in models]


# --- zoo: URIs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "name", "seed"),
    [
        ("zoo:resnet18", "resnet18", 0),
        ("zoo:resnet18?seed=0", "resnet18", 0),
        ("zoo:mobilenet-v2?seed=42", "mobilenet-v2", 42),
        ("zoo:transformer-encoder?seed=4294967295", "transformer-encoder", 2**32 - 1),
        ("zoo:a", "a", 0),
    ],
)
def test_zoo_uris_name_a_model_and_a_seed(uri: str, name: str, seed: int) -> None:
    artifact = Artifact(uri=uri, format="onnx")
    assert artifact.zoo == ZooRef(name=name, seed=seed)
    assert artifact.sha256 is None


@pytest.mark.parametrize(
    "uri",
    [
        "zoo:",
        "zoo:ResNet18",
        "zoo:resnet_18",
        "zoo:-resnet",
        "zoo:resnet-",
        "zoo:/resnet18",
        "zoo:resnet18/",
        "zoo://resnet18",
        "zoo:resnet18?",
        "zoo:resnet18?seed=",
        "zoo:resnet18?seed=-1",
        "zoo:resnet18?seed=01",
        "zoo:resnet18?seed=1.5",
        "zoo:resnet18?seed=1&seed=2",
        "zoo:resnet18?other=1",
        "zoo:resnet18?seed=4294967296",
        "zoo:resnet18 ",
        "zoo:" + "a" * 64,
    ],
)
def test_malformed_zoo_uris_are_rejected(uri: str) -> None:
    with pytest.raises(ValidationError, match="zoo") as info:
        Artifact(uri=uri, format="onnx")
    assert info.value.errors()[0]["loc"] == ("uri",)


def test_other_uris_are_not_zoo_uris() -> None:
    assert parse_zoo_uri("../artifacts/zoo/resnet18.onnx") is None
    assert parse_zoo_uri("s3://zoo/resnet18") is None
    assert Artifact(uri="zoo.onnx", sha256="0" * 64, format="onnx").zoo is None


def test_sha256_is_still_required_for_every_other_uri() -> None:
    for uri in ("../artifacts/m.onnx", "file:///m.onnx", "https://host/m.onnx", "s3://bucket/m.onnx"):
        with pytest.raises(ValidationError, match=r"sha256: required for"):
            Artifact(uri=uri, format="onnx")
    with pytest.raises(ValidationError, match="nothing to pin"):
        Artifact(uri="zoo:resnet18", sha256="0" * 64, format="onnx")
    with pytest.raises(ValidationError, match="archive"):
        Artifact(uri="zoo:resnet18", format="onnx", archive=True)


def test_a_manifest_without_sha256_is_an_error_naming_file_and_field(scratch_assets: Path) -> None:
    manifest = scratch_assets / "models" / "digits-cnn.yaml"
    document = yaml.safe_load(manifest.read_text())
    del document["spec"]["artifacts"][0]["sha256"]
    manifest.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(ManifestError, match="sha256: required") as info:
        load_registry([scratch_assets])
    assert "digits-cnn.yaml" in info.value.message
    assert "spec.artifacts[0]" in info.value.message


# --- building into the cache ------------------------------------------------------------------------------------


class CountingBuilder:
    """A zoo builder that writes a small file and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model: str, destination: Path, *, seed: int) -> Path:
        self.calls += 1
        path = destination / f"{model}.bin"
        path.write_bytes(f"{model} seed {seed}".encode())
        return path


def test_a_zoo_build_is_cached_and_reused(tmp_path: Path) -> None:
    builder = CountingBuilder()
    zoo = ZooRef(name="tiny", seed=3)
    first = build_zoo_artifact(tmp_path, zoo, "onnx", builder=builder)
    folder = zoo_build_dir(tmp_path, zoo, "onnx")
    assert folder == tmp_path / "zoo" / "tiny" / "onnx" / "seed-3"
    assert first.path == folder / "artifact" / "tiny.bin"
    assert first.path.read_bytes() == b"tiny seed 3"
    assert first.sha256 == sha256_of_file(first.path)
    record = json.loads((folder / BUILD_RECORD).read_text())
    assert record["sha256"] == first.sha256 and record["seed"] == 3 and record["format"] == "onnx"
    mtime_ns = first.path.stat().st_mtime_ns

    again = build_zoo_artifact(tmp_path, zoo, "onnx", builder=builder)
    assert again == first
    assert builder.calls == 1
    assert first.path.stat().st_mtime_ns == mtime_ns
    # Another seed or format is another build.
    other = build_zoo_artifact(tmp_path, ZooRef(name="tiny", seed=4), "onnx", builder=builder)
    assert other.path.read_bytes() == b"tiny seed 4"
    assert builder.calls == 2
    assert sorted(p.name for p in folder.parent.iterdir()) == ["seed-3", "seed-4"]


def test_a_folder_artifact_gets_the_sha256_of_its_listing(tmp_path: Path) -> None:
    def folder_builder(model: str, destination: Path, *, seed: int) -> Path:
        (destination / "sub").mkdir()
        (destination / "a.json").write_text("{}")
        (destination / "sub" / "b.params").write_bytes(bytes([seed]))
        return destination

    built = build_zoo_artifact(tmp_path, ZooRef(name="folder"), "mxnet", builder=folder_builder)
    assert built.path.is_dir() and built.path.name == "artifact"
    listing = (
        f"{sha256_of_file(built.path / 'a.json')}  a.json\n"
        f"{sha256_of_file(built.path / 'sub' / 'b.params')}  sub/b.params\n"
    )
    assert built.sha256 == hashlib.sha256(listing.encode()).hexdigest() == tree_sha256(built.path)


def _leftovers(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) if cache.exists() else []


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()

    def failing(model: str, destination: Path, *, seed: int) -> Path:
        (destination / "half-written.onnx").write_bytes(b"partial")
        raise RuntimeError("exporter crashed")

    with pytest.raises(ArtifactError, match="exporter crashed") as info:
        build_zoo_artifact(cache, ZooRef(name="resnet18"), "onnx", builder=failing)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "zoo:resnet18" in info.value.message and info.value.hint
    assert _leftovers(cache) == []

    def unknown(model: str, destination: Path, *, seed: int) -> Path:
        raise ModelLoadError(f"the model zoo has no model '{model}'", hint="use resnet18")

    with pytest.raises(ModelLoadError, match="no model 'nope'"):  # the builder's own error, unchanged
        build_zoo_artifact(cache, ZooRef(name="nope"), "onnx", builder=unknown)
    assert _leftovers(cache) == []

    def escaping(model: str, destination: Path, *, seed: int) -> Path:
        return tmp_path / "elsewhere.onnx"

    with pytest.raises(ArtifactError, match="not a file or folder inside its destination"):
        build_zoo_artifact(cache, ZooRef(name="resnet18"), "onnx", builder=escaping)
    assert _leftovers(cache) == []


def test_concurrent_builders_do_not_corrupt_the_build(tmp_path: Path) -> None:
    """Both build at once (a barrier holds them mid-build); one rename wins and both get its artifact."""
    barrier = threading.Barrier(2, timeout=30)
    calls: list[int] = []

    def slow(model: str, destination: Path, *, seed: int) -> Path:
        calls.append(1)
        path = destination / "model.onnx"
        path.write_bytes(b"x" * 100_000)
        barrier.wait()
        return path

    results: list[FetchedArtifact] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(build_zoo_artifact(tmp_path, ZooRef(name="resnet18"), "onnx", builder=slow))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(calls) == 2 and len(results) == 2
    assert results[0] == results[1]
    assert results[0].path.read_bytes() == b"x" * 100_000
    assert _leftovers(tmp_path) == [
        "zoo",
        "zoo/resnet18",
        "zoo/resnet18/onnx",
        "zoo/resnet18/onnx/seed-0",
        "zoo/resnet18/onnx/seed-0/artifact",
        "zoo/resnet18/onnx/seed-0/artifact/model.onnx",
        "zoo/resnet18/onnx/seed-0/build.json",
    ]


def test_a_damaged_cached_build_is_a_clear_error(tmp_path: Path) -> None:
    built = build_zoo_artifact(tmp_path, ZooRef(name="tiny"), "onnx", builder=CountingBuilder())
    folder = zoo_build_dir(tmp_path, ZooRef(name="tiny"), "onnx")
    built.path.unlink()
    with pytest.raises(ArtifactError, match=r"lacks artifact/tiny\.bin") as info:
        build_zoo_artifact(tmp_path, ZooRef(name="tiny"), "onnx", builder=CountingBuilder())
    assert f"Delete {folder}" in info.value.hint
    (folder / BUILD_RECORD).write_text("not json")
    with pytest.raises(ArtifactError, match=r"no readable build\.json"):
        build_zoo_artifact(tmp_path, ZooRef(name="tiny"), "onnx", builder=CountingBuilder())


def test_a_format_without_a_builder_is_a_clear_error(tmp_path: Path) -> None:
    assert {"onnx", "torchscript", "torch_export"} <= set(available_builders())
    assert "savedmodel" not in available_builders()
    with pytest.raises(FrameworkUnavailableError, match="no zoo builder for artifact format 'savedmodel'") as info:
        load_zoo_builder("savedmodel")
    assert "pip install" in info.value.hint
    store = ArtifactStore(tmp_path / "cache")
    with pytest.raises(FrameworkUnavailableError, match="savedmodel"):
        fetch_artifact(store, Artifact(uri="zoo:resnet18", format="savedmodel"), base_dir=tmp_path)
    assert _leftovers(tmp_path / "cache") == []


def test_fetch_artifact_still_fetches_pinned_files(tmp_path: Path) -> None:
    registry = load_registry([ASSETS])
    artifact = registry.resolve("digits-cnn", "onnxruntime").artifact
    fetched = fetch_artifact(ArtifactStore(tmp_path / "cache"), artifact, base_dir=ASSETS / "models")
    assert fetched.sha256 == artifact.sha256 == sha256_of_file(fetched.path)
    assert fetched.path.is_relative_to(tmp_path / "cache" / "sha256")


# --- the PyTorch builders -----------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")
torch_models = pytest.importorskip("mlmodelscope.agent.zoo.torch_models")


@pytest.fixture(scope="module")
def zoo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module, so each model is built once per format."""
    return tmp_path_factory.mktemp("zoo-cache")


def _built(cache: Path, model: str, artifact_format: str) -> Path:
    """Built through the entry point, as an evaluation does."""
    return build_zoo_artifact(cache, ZooRef(name=model), artifact_format).path


def _run(cache: Path, model: str, framework: str, artifact_format: str, batch: np.ndarray) -> np.ndarray:
    spec = load_registry([ASSETS]).model(model).spec
    with load_predictor_class(framework)(spec, PredictorOptions(intra_op_threads=2)) as predictor:
        predictor.load(_built(cache, model, artifact_format))
        (logits,) = predictor.predict([batch])
    return np.asarray(logits)


def _batch(model: str, size: int, seed: int = 5) -> np.ndarray:
    return np.ascontiguousarray(torch_models.example_input(model, size, seed=seed).numpy())


@pytest.mark.parametrize("artifact_format", ["torchscript", "onnx"])
@pytest.mark.parametrize("model", _zoo_params(ZOO_MODELS))
def test_zoo_models_run_with_the_declared_io(zoo_cache: Path, model: str, artifact_format: str) -> None:
    framework = "onnxruntime" if artifact_format == "onnx" else "pytorch"
    classes = 2 if model == "transformer-encoder" else 1000
    batch = _batch(model, 3)
    assert batch.dtype == (np.int64 if model == "transformer-encoder" else np.float32)
    logits = _run(zoo_cache, model, framework, artifact_format, batch)
    assert logits.shape == (3, classes)
    assert logits.dtype == np.float32
    assert np.isfinite(logits).all()
    # Relative to the logits' scale: MobileNetV2's initialisation (torchvision's) gives logits of about 1e-9.
    scale = float(np.abs(logits).max())
    assert scale > 0
    assert np.abs(logits[0] - logits[1]).max() > 1e-3 * scale  # the output depends on the input
    single = _run(zoo_cache, model, framework, artifact_format, batch[:1])  # the batch axis is dynamic
    np.testing.assert_allclose(single, logits[:1], atol=1e-5 * scale, rtol=0)


@pytest.mark.parametrize("model", ["resnet18", "transformer-encoder"])
def test_onnx_torchscript_and_torch_export_agree(zoo_cache: Path, model: str) -> None:
    """The same seeded weights in every format: logits within 1e-4."""
    batch = _batch(model, 4, seed=9)
    scripted = _run(zoo_cache, model, "pytorch", "torchscript", batch)
    onnx = _run(zoo_cache, model, "onnxruntime", "onnx", batch)
    exported = _run(zoo_cache, model, "pytorch", "torch_export", batch)
    np.testing.assert_allclose(onnx, scripted, atol=1e-4, rtol=0)
    np.testing.assert_allclose(exported, scripted, atol=1e-4, rtol=0)
    with torch.inference_mode():
        eager = torch_models.zoo_model(model, seed=0)(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(scripted, eager, atol=1e-5, rtol=0)


def test_weights_depend_on_the_seed_only() -> None:
    a, b, c = (torch_models.zoo_model("resnet18", seed=s).state_dict() for s in (0, 0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])
    state = torch.random.get_rng_state()
    torch_models.zoo_model("transformer-encoder", seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is untouched
    layers = torch_models.zoo_model("transformer-encoder", seed=0).encoder.layers
    assert not torch.equal(layers[0].linear1.weight, layers[1].linear1.weight)  # each layer has its own weights


def test_an_unknown_zoo_model_lists_the_known_ones(tmp_path: Path) -> None:
    for build in (torch_models.build_onnx, torch_models.build_torchscript, torch_models.build_torch_export):
        with pytest.raises(ModelLoadError, match="no model 'resnet19'") as info:
            build("resnet19", tmp_path, seed=0)
        assert all(name in info.value.message for name in ZOO_MODELS)
    assert list(tmp_path.iterdir()) == []


def test_a_cached_torch_build_is_reused(zoo_cache: Path) -> None:
    path = _built(zoo_cache, "transformer-encoder", "torchscript")
    mtime_ns = path.stat().st_mtime_ns
    assert _built(zoo_cache, "transformer-encoder", "torchscript") == path
    assert path.stat().st_mtime_ns == mtime_ns


# --- synthetic datasets -----------------------------------------------------------------------------------------


def _dataset(name: str) -> Dataset:
    return load_registry([ASSETS]).dataset(name)


def test_synthetic_datasets_are_deterministic_and_as_declared(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "cache")
    images = open_reader(_dataset("synthetic-imagenet"), store, ASSETS / "datasets")
    again = open_reader(_dataset("synthetic-imagenet"), store, ASSETS / "datasets")
    np.testing.assert_array_equal(images.samples, again.samples)
    np.testing.assert_array_equal(images.truth.labels, again.truth.labels)
    assert images.samples.shape == (64, 3, 224, 224) and images.samples.dtype == np.float32
    assert abs(float(images.samples.mean())) < 0.01 and abs(float(images.samples.std()) - 1.0) < 0.01
    labels = images.truth.labels
    assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() < 1000
    assert len(np.unique(labels)) > 30
    tokens = open_reader(_dataset("synthetic-tokens"), store, ASSETS / "datasets")
    assert tokens.samples.shape == (64, 128) and tokens.samples.dtype == np.int64
    assert tokens.samples.min() >= 0 and tokens.samples.max() < 8192 and tokens.samples.max() > 8000
    assert set(np.unique(tokens.truth.labels)) == {0, 1}
    assert not (tmp_path / "cache").exists()  # nothing was fetched
    assert dataset_source_sha256(_dataset("synthetic-tokens")) == {}
    assert list(dataset_source_sha256(_dataset("digits")).values()) == [_dataset("digits").spec.source.sha256]


def test_synthetic_data_is_pinned_by_sha256(tmp_path: Path) -> None:
    """The same bytes in every runtime (numpy 1.23 in .venv-mxnet gives these too): frameworks see one dataset."""
    pinned = {
        "synthetic-imagenet": (
            "731fdf6e5b4f67cd60ecac8a2ce656f4f9bfabfdab57acfe55dabf41e2032fb0",
            "885f295179d4bf1b0a93ce58ec802efe8dff88ab9579ee1f8a44d55eb68233a0",
        ),
        "synthetic-tokens": (
            "736d878c02477d4e453962155a411eba99eb2ba46926a9478b3b0b22259a601e",
            "598acacd412cb79037bd4e9de979b1dc1ea89cbece9eac2b38db15fb6567e89f",
        ),
    }
    for name, (samples_sha256, labels_sha256) in pinned.items():
        data = open_reader(_dataset(name), ArtifactStore(tmp_path), tmp_path)
        assert hashlib.sha256(data.samples.tobytes()).hexdigest() == samples_sha256, name
        assert hashlib.sha256(data.truth.labels.tobytes()).hexdigest() == labels_sha256, name


def test_the_seed_changes_synthetic_data(tmp_path: Path) -> None:
    dataset = _dataset("synthetic-tokens")
    reseeded = dataset.model_copy(
        update={"spec": dataset.spec.model_copy(update={"source": dataset.spec.source.model_copy(update={"seed": 1})})}
    )
    store = ArtifactStore(tmp_path)
    a = open_reader(dataset, store, tmp_path).samples
    b = open_reader(reseeded, store, tmp_path).samples
    assert a.shape == b.shape and not np.array_equal(a, b)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "synthetic", "shape": [4], "dtype": "float32", "classes": 2, "uri": "x.npz"}, "uri: not a field"),
        ({"kind": "synthetic", "shape": [4], "dtype": "float32"}, "classes: required"),
        ({"kind": "synthetic", "dtype": "float32", "classes": 2}, "shape: required"),
        ({"kind": "synthetic", "shape": [4], "dtype": "int64", "classes": 2, "distribution": "normal"}, "float"),
        ({"kind": "synthetic", "shape": [4], "dtype": "int64", "classes": 2, "low": 0, "high": 0.5}, "whole"),
        ({"kind": "synthetic", "shape": [4], "dtype": "float32", "classes": 2, "low": 1, "high": 1}, "low < high"),
        ({"kind": "npz", "uri": "x.npz"}, "sha256: required"),
        ({"kind": "npz", "uri": "x.npz", "sha256": "0" * 64, "seed": 3}, "seed: not a field of kind 'npz'"),
    ],
)
def test_dataset_sources_accept_only_their_own_fields(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DatasetSource.model_validate(fields)


@pytest.mark.parametrize(
    ("model", "dataset"), [("resnet18", "synthetic-imagenet"), ("transformer-encoder", "synthetic-tokens")]
)
def test_synthetic_samples_pass_unchanged_through_an_empty_preprocess_list(
    tmp_path: Path, model: str, dataset: str
) -> None:
    registry = load_registry([ASSETS])
    data = open_reader(registry.dataset(dataset), ArtifactStore(tmp_path), tmp_path)
    library = SampleLibrary(data, registry.model(model).spec)
    library.load(range(data.size))
    (tensor,) = library.contiguous(0, data.size)
    assert tensor.dtype == data.samples.dtype
    np.testing.assert_array_equal(tensor, data.samples)


def test_every_zoo_manifest_loads_and_says_its_weights_are_random() -> None:
    registry = load_registry([ASSETS])
    for name in ZOO_MODELS:
        spec = registry.model(name).spec
        assert spec.attributes.weights == "random"
        assert "accuracy is meaningless" in spec.description
        assert {a.format for a in spec.artifacts} == {"onnx", "torchscript", "keras", "mxnet"}
        assert all(a.zoo == ZooRef(name=name) and not a.archive for a in spec.artifacts)
        assert registry.dataset(spec.dataset or "").spec.source.kind == "synthetic"
    assert registry.resolve("resnet18", "onnxruntime").artifact.format == "onnx"
    assert registry.resolve("resnet18", "pytorch").artifact.format == "torchscript"


# --- real evaluations ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_resnet18_on_onnxruntime_is_valid(tmp_path: Path) -> None:
    """`mlmodelscope evaluate` builds the zoo model into the cache and gets a VALID performance verdict."""
    output = tmp_path / "r.json"
    cache = tmp_path / "cache"
    run = run_cli(
        "--cache-dir",
        str(cache),
        "evaluate",
        "--model",
        "resnet18",
        "--framework",
        "onnxruntime",
        "--mode",
        "performance",
        "--min-duration",
        "1s",
        "--output",
        str(output),
        cwd=REPO,
        timeout_s=600,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(output.read_text())
    assert result["performance"]["verdict"]["valid"] is True, result["performance"]["verdict"]
    assert result["dataset"]["name"] == "synthetic-imagenet"
    built = cache / "zoo" / "resnet18" / "onnx" / "seed-0" / "artifact" / "resnet18.onnx"
    assert result["environment"]["artifact_sha256"] == {"zoo:resnet18": sha256_of_file(built)}
    assert "VALID" in run.stdout


@pytest.mark.slow
def test_the_transformer_evaluates_on_pytorch_with_int64_tokens(tmp_path: Path) -> None:
    request = RunRequest(
        model="transformer-encoder",
        framework="pytorch",
        dataset=None,
        settings=EvaluationSettings(mode="both", min_duration_s=0.2, min_query_count=64, warmup_queries=2),
        output_dir=tmp_path / "out",
        intra_op_threads=2,
    )
    result = execute_run(load_registry([ASSETS]), ArtifactStore(tmp_path / "cache"), request)
    assert result.accuracy is not None and result.accuracy.count == 64
    assert 0.2 < result.accuracy.top1 < 0.8  # random weights on random labels: chance level, as documented
    assert result.accuracy.top5 == 1.0  # two classes: both are in the top 5
    assert result.performance is not None and result.performance.verdict.valid, result.performance
    assert list(result.environment.artifact_sha256) == ["zoo:transformer-encoder"]
