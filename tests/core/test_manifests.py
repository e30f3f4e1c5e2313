"""Asset resources: the repository's manifests load, and every kind of bad manifest gets a precise error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from mlmodelscope.core.artifacts.digests import sha256_of_file
from mlmodelscope.core.artifacts.store import ArtifactStore
from mlmodelscope.core.datasets.opening import open_reader
from mlmodelscope.core.errors import IncompatibleFrameworkError, ManifestError, UnknownResourceError
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.manifests.loading import format_location, load_file
from mlmodelscope.core.manifests.registry import asset_roots
from tests.support.paths import ASSETS


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


def test_duplicate_keys_name_the_key_both_lines_and_the_file(scratch_assets: Path) -> None:
    """YAML keeps the last of two equal keys: a second sha256 would silently change what is verified."""
    path = scratch_assets / "datasets" / "digits.yaml"
    lines = path.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip().startswith("sha256:")) + 1
    lines.insert(first, "    sha256: " + "0" * 64)  # the same key again, in the same mapping (spec.source)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError) as info:
        load_file(path)
    message = info.value.message
    assert message.startswith(str(path)), message
    assert f"duplicate key 'sha256' at line {first + 1} (first at line {first})" in message
    with pytest.raises(ManifestError, match="duplicate key 'sha256'"):
        load_registry([scratch_assets])


def test_duplicate_keys_in_a_later_document_and_at_the_top_level(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(
        "apiVersion: mlmodelscope.org/v1alpha1\nkind: Framework\n---\n"  # document 1 is fine as YAML
        "apiVersion: mlmodelscope.org/v1alpha1\nkind: Dataset\nkind: Model\n"
    )
    with pytest.raises(ManifestError, match=r"two.yaml: duplicate key 'kind' at line 6 \(first at line 5\)"):
        load_file(path)


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    """``<<: *defaults`` then an explicit key is YAML's way to override, not a duplicate."""
    source = (ASSETS / "datasets" / "digits.yaml").read_text()
    path = tmp_path / "datasets" / "digits.yaml"
    path.parent.mkdir()
    text = source.replace("metadata:\n  name: digits\n", "metadata:\n  <<: &named {name: other}\n  name: digits\n")
    assert text != source
    path.write_text(text)
    (loaded,) = load_file(path)
    assert loaded.resource.metadata.name == "digits"


def _digits_from(scratch_assets: Path, uri: str) -> ManifestError:
    """The error of loading the digits dataset with its npz source pointed at ``uri`` (pinned to what is there)."""
    target = scratch_assets / "datasets" / uri
    pinned = sha256_of_file(target) if target.is_file() else "0" * 64
    _edit(scratch_assets / "datasets" / "digits.yaml", lambda d: d["spec"]["source"].update(uri=uri, sha256=pinned))
    dataset = load_registry([scratch_assets]).dataset("digits")
    with pytest.raises(ManifestError) as info:
        open_reader(dataset, ArtifactStore(scratch_assets.parent / "cache"), scratch_assets / "datasets")
    return info.value


def test_npz_source_pointing_at_a_folder_does_not_suggest_an_archive_field(scratch_assets: Path) -> None:
    error = _digits_from(scratch_assets, "../artifacts/digits")
    assert "spec.source.uri '../artifacts/digits' is a folder" in error.message
    assert "archive" not in error.message + error.hint  # datasets have no archive field
    assert "numpy.savez" in error.hint


@pytest.mark.parametrize(
    ("file_name", "content", "fragment"),
    [
        ("labels.txt", b"0\n1\n2\n", "is not an .npz file"),
        ("images.npy", None, "is a single .npy array, not an .npz file"),
    ],
)
def test_a_file_that_is_no_npz_does_not_suggest_allow_pickle(
    scratch_assets: Path, file_name: str, content: bytes | None, fragment: str
) -> None:
    path = scratch_assets / "artifacts" / file_name
    if content is None:
        np.save(path, np.zeros((450, 8, 8, 1), dtype=np.float32))
    else:
        path.write_bytes(content)
    error = _digits_from(scratch_assets, f"../artifacts/{file_name}")
    assert fragment in error.message
    assert "pickle" not in error.message + error.hint


def test_an_npz_of_python_objects_is_refused_without_unpickling_advice(scratch_assets: Path) -> None:
    path = scratch_assets / "artifacts" / "objects.npz"
    np.savez(path, images=np.array([{"pixel": 1}] * 450, dtype=object), labels=np.zeros(450, dtype=np.int64))
    error = _digits_from(scratch_assets, "../artifacts/objects.npz")
    assert "array 'images' cannot be read: it holds Python objects" in error.message
    assert "allow_pickle" not in error.message + error.hint
