"""ONNX models with external data (``model.onnx`` plus its ``model.onnx.data``; mandatory above 2 GB), in both
shapes a Model manifest can declare them: an archive with an ``entrypoint``, and a file with ``sidecars``.

The model is real and small: ``y = x @ W + b`` with W and b stored in the external data file, built with the
onnx package in a temporary folder. It is loaded through the real store and the real ONNX Runtime predictor, and
evaluated end to end on a dataset whose labels are argmax(x @ W + b), so top-1 is 1.0 only if the weights were
really read from the data file.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError

from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.artifacts.zoo import fetch_artifact
from mlmodelscope.core.errors import ArtifactError, ModelLoadError
from mlmodelscope.core.evaluation.runner import RunRequest, execute_run
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.manifests.artifact_spec import Artifact
from mlmodelscope.core.manifests.resources import Model
from mlmodelscope.core.predictor import PredictorOptions, load_predictor_class
from tests.support.paths import ASSETS

FEATURES, CLASSES, SAMPLES = 6, 4, 64
RNG = np.random.default_rng(7)
WEIGHTS = RNG.normal(size=(FEATURES, CLASSES)).astype(np.float32)
BIAS = RNG.normal(size=(CLASSES,)).astype(np.float32)
DATA_NAME = "model.onnx.data"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_external_data_model(folder: Path) -> tuple[Path, Path]:
    """``folder/model.onnx`` whose initializers all live in ``folder/model.onnx.data``."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, CLASSES])],
        [numpy_helper.from_array(WEIGHTS, "W"), numpy_helper.from_array(BIAS, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=DATA_NAME, size_threshold=0
    )
    data = folder / DATA_NAME
    assert data.stat().st_size >= WEIGHTS.nbytes + BIAS.nbytes  # the weights really are outside the .onnx
    assert WEIGHTS.tobytes() not in path.read_bytes()
    return path, data


@dataclass
class Assets:
    root: Path
    models: Path
    model_file: Path
    data_file: Path


@pytest.fixture
def assets(tmp_path: Path) -> Assets:
    """An assets folder with the onnxruntime Framework and a dataset labelled by the model's own argmax."""
    root = tmp_path / "assets"
    for kind in ("models", "frameworks", "datasets"):
        (root / kind).mkdir(parents=True)
    (root / "frameworks" / "onnxruntime.yaml").write_bytes((ASSETS / "frameworks" / "onnxruntime.yaml").read_bytes())
    model_file, data_file = build_external_data_model(tmp_path / "built")
    x = RNG.normal(size=(SAMPLES, FEATURES)).astype(np.float32)
    labels = np.argmax(x @ WEIGHTS + BIAS, axis=1).astype(np.int64)
    np.savez(root / "datasets" / "linear.npz", images=x, labels=labels)
    dataset = {
        "apiVersion": "mlmodelscope.org/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "linear"},
        "spec": {
            "task": "raw",
            "size": SAMPLES,
            "source": {"kind": "npz", "uri": "linear.npz", "sha256": sha(root / "datasets" / "linear.npz")},
        },
    }
    (root / "datasets" / "linear.yaml").write_text(json.dumps(dataset), encoding="utf-8")
    return Assets(root=root, models=root / "models", model_file=model_file, data_file=data_file)


def write_model(assets: Assets, artifact: dict[str, object]) -> Model:
    document = {
        "apiVersion": "mlmodelscope.org/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "linear-external"},
        "spec": {
            "task": "raw",
            "framework": {"name": "onnxruntime"},
            "artifacts": [{"format": "onnx", **artifact}],
            "inputs": [{"name": "x", "shape": [FEATURES]}],
            "outputs": [{"name": "y", "shape": [CLASSES], "postprocess": [{"top_k": {"k": 1}}]}],
            "dataset": "linear",
        },
    }
    (assets.models / "linear-external.yaml").write_text(json.dumps(document), encoding="utf-8")
    return Model.model_validate(document)


def archive_artifact(assets: Assets, *, inner: str = "", entrypoint: str | None = "model.onnx") -> dict[str, object]:
    archive = assets.models / "linear.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in (assets.model_file, assets.data_file):
            tar.add(path, arcname=f"{inner}{path.name}")
    artifact: dict[str, object] = {"uri": archive.name, "sha256": sha(archive), "archive": True}
    if entrypoint is not None:
        artifact["entrypoint"] = entrypoint
    return artifact


def sidecar_artifact(assets: Assets, *, data_uri_name: str = DATA_NAME, name: str | None = None) -> dict[str, object]:
    """The model and its data as two separate files in different folders, as they would be on a web server."""
    (assets.models / "onnx").mkdir(exist_ok=True)
    (assets.models / "weights").mkdir(exist_ok=True)
    model = assets.models / "onnx" / "model.onnx"
    data = assets.models / "weights" / data_uri_name
    model.write_bytes(assets.model_file.read_bytes())
    data.write_bytes(assets.data_file.read_bytes())
    sidecar: dict[str, object] = {"uri": f"weights/{data_uri_name}", "sha256": sha(data)}
    if name is not None:
        sidecar["name"] = name
    return {"uri": "onnx/model.onnx", "sha256": sha(model), "sidecars": [sidecar]}


def predict_through_the_predictor(model: Model, assets: Assets, cache: Path) -> np.ndarray:
    fetched = fetch_artifact(ArtifactStore(cache), model.spec.artifacts[0], base_dir=assets.models)
    predictor = load_predictor_class("onnxruntime")(model.spec, PredictorOptions(intra_op_threads=1))
    predictor.load(fetched.path)
    with predictor:
        x = RNG.normal(size=(5, FEATURES)).astype(np.float32)
        (y,) = predictor.predict([x])
    np.testing.assert_allclose(y, x @ WEIGHTS + BIAS, rtol=1e-5, atol=1e-5)
    return y


SHAPES = {
    "archive+entrypoint": lambda a: archive_artifact(a),
    "archive+entrypoint-in-a-folder": lambda a: archive_artifact(a, inner="linear/", entrypoint="linear/model.onnx"),
    "archive, its one .onnx file": lambda a: archive_artifact(a, entrypoint=None),
    "file+sidecar": lambda a: sidecar_artifact(a),
    "file+sidecar named as the model records it": lambda a: sidecar_artifact(
        a, data_uri_name="w-v1.bin", name=DATA_NAME
    ),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_external_data_model_loads_and_predicts(shape: str, assets: Assets, tmp_path: Path) -> None:
    model = write_model(assets, SHAPES[shape](assets))
    first = predict_through_the_predictor(model, assets, tmp_path / "cache")
    again = predict_through_the_predictor(model, assets, tmp_path / "cache")  # from the cache
    assert first.shape == again.shape


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["archive+entrypoint", "file+sidecar"])
def test_external_data_model_evaluates_end_to_end(shape: str, assets: Assets, tmp_path: Path) -> None:
    write_model(assets, SHAPES[shape](assets))
    request = RunRequest(
        model="linear-external",
        framework="onnxruntime",
        dataset=None,
        settings=EvaluationSettings(mode="accuracy", min_duration_s=0.1, min_query_count=8, warmup_queries=1),
        output_dir=tmp_path / "out",
    )
    result = execute_run(load_registry([assets.root]), ArtifactStore(tmp_path / "cache"), request)
    assert result.accuracy is not None and result.accuracy.count == SAMPLES
    assert result.accuracy.top1 == 1.0  # labels are the model's own argmax: wrong or zero weights cannot score it


def test_sidecars_lie_beside_the_model_in_the_cache(assets: Assets, tmp_path: Path) -> None:
    model = write_model(assets, sidecar_artifact(assets, data_uri_name="w-v1.bin", name=DATA_NAME))
    fetched = fetch_artifact(ArtifactStore(tmp_path / "cache"), model.spec.artifacts[0], base_dir=assets.models)
    assert fetched.path.name == "model.onnx"
    assert (fetched.path.parent / DATA_NAME).read_bytes() == assets.data_file.read_bytes()
    assert fetched.path.parent.parent == tmp_path / "cache" / "bundles"
    assert fetched.sha256 == sha(fetched.path)


def test_a_missing_sidecar_names_the_missing_file(assets: Assets, tmp_path: Path) -> None:
    """Only the .onnx declared: the error names the data file and how to declare it, not a protobuf failure."""
    artifact = sidecar_artifact(assets)
    del artifact["sidecars"]
    model = write_model(assets, artifact)
    with pytest.raises(ModelLoadError) as info:
        predict_through_the_predictor(model, assets, tmp_path / "cache")
    assert f"'{DATA_NAME}'" in info.value.message and "missing" in info.value.message
    assert "Protobuf" not in info.value.message
    assert "sidecars" in info.value.hint and "entrypoint" in info.value.hint


def test_a_sidecar_under_the_wrong_name_names_the_name_the_model_wants(assets: Assets, tmp_path: Path) -> None:
    model = write_model(assets, sidecar_artifact(assets, data_uri_name="w-v1.bin"))  # lands as w-v1.bin
    with pytest.raises(ModelLoadError) as info:
        predict_through_the_predictor(model, assets, tmp_path / "cache")
    assert f"'{DATA_NAME}'" in info.value.message and "name:" in info.value.hint


def test_an_archive_missing_its_entrypoint_lists_what_it_holds(assets: Assets, tmp_path: Path) -> None:
    model = write_model(assets, archive_artifact(assets, entrypoint="resnet.onnx"))
    with pytest.raises(ArtifactError) as info:
        fetch_artifact(ArtifactStore(tmp_path / "cache"), model.spec.artifacts[0], base_dir=assets.models)
    assert "'resnet.onnx'" in info.value.message
    assert "model.onnx" in info.value.message and DATA_NAME in info.value.message


def test_an_archive_with_several_models_and_no_entrypoint_asks_for_one(assets: Assets, tmp_path: Path) -> None:
    archive = assets.models / "two.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(assets.model_file, arcname="a.onnx")
        tar.add(assets.model_file, arcname="b.onnx")
    model = write_model(assets, {"uri": archive.name, "sha256": sha(archive), "archive": True})
    with pytest.raises(ModelLoadError) as info:
        predict_through_the_predictor(model, assets, tmp_path / "cache")
    assert "a.onnx, b.onnx" in info.value.message and "Protobuf" not in info.value.message
    assert "entrypoint" in info.value.hint


DIGEST = "0" * 64


@pytest.mark.parametrize(
    ("artifact", "needle"),
    [
        ({"uri": "m.onnx", "sha256": DIGEST, "entrypoint": "m.onnx"}, "archive: true"),
        ({"uri": "m.tgz", "sha256": DIGEST, "archive": True, "sidecars": [{"uri": "d", "sha256": DIGEST}]}, "archive"),
        ({"uri": "m.tgz", "sha256": DIGEST, "archive": True, "entrypoint": "../m.onnx"}, "'..'"),
        ({"uri": "m.tgz", "sha256": DIGEST, "archive": True, "entrypoint": "/m.onnx"}, "absolute"),
        ({"uri": "m.onnx", "sha256": DIGEST, "sidecars": [{"uri": "d", "sha256": DIGEST, "name": "../d"}]}, "'..'"),
        ({"uri": "m.onnx", "sha256": DIGEST, "sidecars": [{"uri": "d"}]}, "sha256"),
        ({"uri": "zoo:resnet18", "sidecars": [{"uri": "d", "sha256": DIGEST}]}, "zoo"),
    ],
)
def test_artifact_fields_are_checked(artifact: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        Artifact.model_validate({"format": "onnx", **artifact})
    assert needle in str(info.value)
