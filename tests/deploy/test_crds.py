"""The CRDs in crds/ are generated from the pydantic resources, are structural, and admit exactly the valid
documents: every asset and example is admitted, and specs that violate required fields, enums or bounds are not."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.operator_schema import CRDS, admission_errors, load_crd
from tests.support.paths import CLI, REPO

ASSET_FILES = sorted(
    p for sub in ("models", "frameworks", "datasets", "examples") for p in (REPO / "assets" / sub).glob("*.yaml")
)


def test_the_cli_writes_the_same_crds(tmp_path: Path):
    completed = subprocess.run(
        [str(CLI), "operator", "crds", str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in CRDS.glob("*.yaml"))
    for path in tmp_path.iterdir():
        assert path.read_text(encoding="utf-8") == (CRDS / path.name).read_text(encoding="utf-8")


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for key in ("properties",):
            for name, child in node.get(key, {}).items():
                found.extend(_walk(child, f"{path}.{name}"))
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                found.extend(_walk(node[key], f"{path}[{key}]"))
    return found


@pytest.mark.parametrize("kind", ["Evaluation", "Model", "Framework", "Dataset"])
def test_schemas_are_structural(kind: str):
    schema = load_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(schema)
    for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "propertyNames", "const:"):
        assert forbidden not in text, f"{kind}: {forbidden} is not allowed in a structural schema"
    for path, node in _walk(schema):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{kind}{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), f"{kind}{path}"


def test_evaluation_crd_has_status_subresource_and_printer_columns():
    version = load_crd("Evaluation")["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: (c["jsonPath"], c.get("priority", 0)) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": (".status.phase", 0),
        "Runs": (".status.progress", 0),
        "Valid": (".status.valid", 0),
        "Ready": ('.status.conditions[?(@.type=="Ready")].reason', 0),
        "Age": (".metadata.creationTimestamp", 0),
        # kubectl get -o wide only
        "Models": (".spec.models", 1),
        "Frameworks": (".spec.frameworks", 1),
        "Targets": (".spec.targets[*].accelerator", 1),
        "Arch": (".spec.targets[*].arch", 1),
    }
    assert load_crd("Evaluation")["spec"]["scope"] == "Namespaced"


def _properties(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every named property under ``node`` (through list items and map values), with its dotted path."""
    found = []
    for name, child in (node.get("properties") or {}).items():
        found.append((f"{path}.{name}", child))
        found.extend(_properties(child, f"{path}.{name}"))
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found.extend(_properties(node[key], f"{path}[]"))
    return found


@pytest.mark.parametrize("kind", ["Evaluation", "Model", "Framework", "Dataset"])
def test_every_field_has_a_description_for_kubectl_explain(kind: str):
    schema = load_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema.get("description"), f"{kind} has no description"
    properties = _properties(schema)
    assert len(properties) > 10
    missing = [path for path, node in properties if not str(node.get("description") or "").strip()]
    assert missing == [], f"{kind}: fields without a description (kubectl explain shows nothing): {missing}"


def test_free_form_objects_are_preserved_not_pruned():
    """A target's affinity and tolerations are Kubernetes objects the operator copies into the Job: without
    x-kubernetes-preserve-unknown-fields the API server would prune them to {} before the operator saw them."""
    target = load_crd("Evaluation")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    fields = target["properties"]["targets"]["items"]["properties"]
    assert fields["affinity"].get("x-kubernetes-preserve-unknown-fields") is True
    assert fields["tolerations"]["items"].get("x-kubernetes-preserve-unknown-fields") is True
    for path, node in _properties(load_crd("Evaluation")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]):
        assert node.get("additionalProperties") is not True, path


def test_conditions_are_a_list_map_keyed_by_type_with_generation_and_time():
    status = load_crd("Evaluation")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert "type" in item["required"]
    assert item["properties"]["observedGeneration"]["type"] == "integer"
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"
    for field in ("startTime", "completionTime"):
        assert status["properties"][field]["format"] == "date-time"
    assert "Suspended" in status["properties"]["phase"]["enum"]
    run = status["properties"]["runs"]["items"]["properties"]
    assert run["spec_sha256"]["additionalProperties"] == {"type": "string"}


@pytest.mark.parametrize("path", ASSET_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_asset_and_example_is_admitted(path: Path):
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        assert admission_errors(document) == []


def _minimal() -> dict[str, Any]:
    return yaml.safe_load((REPO / "assets/examples/evaluation-minimal.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.pop("models"), "spec: 'models' is a required property"),
        (lambda s: s.update(models=[]), "spec.models: [] should be non-empty"),
        (lambda s: s.update(targets=[{"arch": "x86_64"}]), "spec.targets.0.arch: 'x86_64' is not one of"),
        (lambda s: s.update(targets=[{"arch": "amd64", "accelerator": "tpu"}]), "'tpu' is not one of"),
        (lambda s: s.update(batch_sizes=[0]), "spec.batch_sizes.0: 0 is less than the minimum of 1"),
        (lambda s: s.update(parallelism=0), "spec.parallelism: 0 is less than the minimum of 1"),
        (lambda s: s.update(target_qps=0), "spec.target_qps: 0 is less than or equal to the minimum of 0"),
        (lambda s: s.update(scenario="burst"), "spec.scenario: 'burst' is not one of"),
        (lambda s: s.update(models=["Digits_CNN"]), "spec.models.0: 'Digits_CNN' does not match"),
        (lambda s: s.update(retries=11), "spec.retries: 11 is greater than the maximum of 10"),
        (lambda s: s.update(resources={"requests": {"cpu": "lots"}}), "spec.resources.requests.cpu: 'lots'"),
        (lambda s: s.update(batchsize=8), "spec: Additional properties are not allowed ('batchsize' was unexpected)"),
    ],
)
def test_invalid_evaluations_are_rejected(change, expected: str):
    document = _minimal()
    change(document["spec"])
    errors = admission_errors(document)
    assert any(expected in e for e in errors), errors


def test_invalid_framework_container_is_rejected():
    framework = yaml.safe_load((REPO / "assets/frameworks/onnxruntime.yaml").read_text(encoding="utf-8"))
    framework["spec"]["containers"] = [{"arch": "riscv64", "accelerator": "cpu", "image": "x"}]
    assert any("'riscv64' is not one of" in e for e in admission_errors(framework))
    framework["spec"]["containers"] = [{"arch": "amd64", "accelerator": "cpu"}]
    assert any("'image' is a required property" in e for e in admission_errors(framework))
