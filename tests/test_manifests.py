"""Asset resources: the repository's manifests load, and every kind of bad manifest gets a precise error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlmodelscope.core.errors import IncompatibleFrameworkError, ManifestError, UnknownResourceError
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.manifests.loading import format_location, load_file
from mlmodelscope.core.manifests.registry import asset_roots
from tests.conftest import ASSETS


def _edit(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def test_repository_assets_load() -> None:
    registry = load_registry([ASSETS])
    assert "digits-cnn" in registry.models
    assert {"onnxruntime", "null"} <= set(registry.frameworks)
    assert "digits" in registry.datasets
    model = registry.model("digits-cnn")
    assert model.spec.attributes.top1 is not None and model.spec.attributes.top1 >= 0.90
    resolution = registry.resolve("digits-cnn", "onnxruntime")
    assert resolution.artifact.format == "onnx"


def test_null_framework_runs_any_model() -> None:
    registry = load_registry([ASSETS])
    assert registry.resolve("digits-cnn", "null").framework.spec.predictor == "null"


def test_malformed_yaml_names_file_and_line(scratch_assets: Path) -> None:
    path = scratch_assets / "models" / "digits-cnn.yaml"
    path.write_text("apiVersion: mlmodelscope.org/v1alpha1\nkind: Model\nmetadata: {name: x\n")
    with pytest.raises(ManifestError) as info:
        load_file(path)
    assert str(path) in info.value.message
    assert "malformed YAML" in info.value.message
    assert "line" in info.value.message


def test_unknown_field_is_an_error_with_its_path(scratch_assets: Path) -> None:
    path = scratch_assets / "models" / "digits-cnn.yaml"
    _edit(path, lambda d: d["spec"]["inputs"][0].update({"shapez": [1, 8, 8]}))
    with pytest.raises(ManifestError) as info:
        load_file(path)
    assert "spec.inputs[0].shapez: unknown field" in info.value.message
    assert str(path) in info.value.message


def test_wrong_type_names_field_expected_and_found(scratch_assets: Path) -> None:
    path = scratch_assets / "models" / "digits-cnn.yaml"
    _edit(path, lambda d: d["spec"]["inputs"][0].update({"shape": ["eight", 8]}))
    with pytest.raises(ManifestError) as info:
        load_file(path)
    message = info.value.message
    assert "spec.inputs[0].shape[0]" in message
    assert "integer" in message
    assert "'eight'" in message


def test_all_problems_of_a_document_are_reported_together(scratch_assets: Path) -> None:
    path = scratch_assets / "datasets" / "digits.yaml"
    _edit(path, lambda d: d["spec"].update({"size": -1, "colour": "red"}))
    with pytest.raises(ManifestError) as info:
        load_file(path)
    assert "spec.size" in info.value.message
    assert "spec.colour: unknown field" in info.value.message


def test_bad_sha256_and_bad_version_specifier(scratch_assets: Path) -> None:
    path = scratch_assets / "models" / "digits-cnn.yaml"

    def change(document: dict) -> None:  # type: ignore[type-arg]
        document["spec"]["artifacts"][0]["sha256"] = "abc"
        document["spec"]["framework"]["version"] = "newest please"

    _edit(path, change)
    with pytest.raises(ManifestError) as info:
        load_file(path)
    assert "spec.artifacts[0].sha256" in info.value.message
    assert "spec.framework.version" in info.value.message
    assert "PEP 440" in info.value.message


def test_wrong_api_version_and_kind(scratch_assets: Path) -> None:
    path = scratch_assets / "models" / "digits-cnn.yaml"
    _edit(path, lambda d: d.update({"apiVersion": "v1"}))
    with pytest.raises(ManifestError, match=r"apiVersion: expected 'mlmodelscope.org/v1alpha1'; found 'v1'"):
        load_file(path)
    _edit(path, lambda d: d.update({"apiVersion": "mlmodelscope.org/v1alpha1", "kind": "Modle"}))
    with pytest.raises(ManifestError, match="kind: expected one of Model, Framework, Dataset; found 'Modle'"):
        load_file(path)


def test_duplicate_names_across_folders_are_refused(scratch_assets: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    (extra / "models").mkdir(parents=True)
    (extra / "models" / "copy.yaml").write_text((scratch_assets / "models" / "digits-cnn.yaml").read_text())
    with pytest.raises(ManifestError, match="already defined in"):
        load_registry([scratch_assets, extra])


def test_unknown_resources_suggest_close_names() -> None:
    registry = load_registry([ASSETS])
    with pytest.raises(UnknownResourceError) as info:
        registry.framework("onnxruntim")
    assert "Did you mean 'onnxruntime'?" in info.value.message
    assert "mlmodelscope frameworks list" in info.value.hint
    with pytest.raises(UnknownResourceError):
        registry.model("resnet-9000")


def test_framework_version_outside_the_constraint(scratch_assets: Path) -> None:
    path = scratch_assets / "models" / "digits-cnn.yaml"
    _edit(path, lambda d: d["spec"]["framework"].update({"version": ">=99"}))
    registry = load_registry([scratch_assets])
    with pytest.raises(IncompatibleFrameworkError) as info:
        registry.resolve("digits-cnn", "onnxruntime")
    assert "does not satisfy" in info.value.message
    assert ">=99" in info.value.message


def test_no_artifact_in_a_supported_format(scratch_assets: Path) -> None:
    path = scratch_assets / "frameworks" / "onnxruntime.yaml"
    _edit(path, lambda d: d["spec"].update({"formats": ["torch_export"]}))
    registry = load_registry([scratch_assets])
    with pytest.raises(
        IncompatibleFrameworkError, match="has artifacts in onnx, torchscript, keras, savedmodel, mxnet"
    ):
        registry.resolve("digits-cnn", "onnxruntime")


def test_asset_roots_combine_default_env_and_flags(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in "abc")
    for folder in (a, b, c):
        folder.mkdir()
    assert asset_roots([a], f"{b}:{a}", [c]) == [a, b, c]


def test_format_location() -> None:
    assert format_location(("spec", "inputs", 0, "shape")) == "spec.inputs[0].shape"
    assert format_location(()) == "(document)"


def test_any_framework_supporting_an_artifact_format_may_run_the_model(scratch_assets: Path) -> None:
    """The version constraint binds only the framework the model names; format decides for the others."""
    path = scratch_assets / "frameworks" / "onnxruntime.yaml"
    document = yaml.safe_load(path.read_text())
    document["metadata"]["name"] = "ort-nightly"
    document["spec"]["version"] = "0.1"  # would fail '>=1.17', but the constraint names onnxruntime
    (scratch_assets / "frameworks" / "ort-nightly.yaml").write_text(yaml.safe_dump(document))
    registry = load_registry([scratch_assets])
    assert registry.resolve("digits-cnn", "ort-nightly").artifact.format == "onnx"
