"""``mlmodelscope validate``: files checked against the pydantic models and the CRD schemas; nothing is started."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlmodelscope.cli.admission import admission_problems, crd_schema
from mlmodelscope.cli.validate import check_file
from mlmodelscope.core.errors import ManifestError
from mlmodelscope.operator.evaluation import Evaluation
from tests.support.cli import run_cli
from tests.support.operator_schema import admission_errors
from tests.support.paths import ASSETS

RESOURCE_FILES = sorted(
    p for folder in ("models", "frameworks", "datasets", "examples") for p in (ASSETS / folder).glob("*.yaml")
)
MINIMAL_EVALUATION = ASSETS / "examples" / "evaluation-minimal.yaml"


def _evaluation(**spec: Any) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(MINIMAL_EVALUATION.read_text())
    document["spec"].update(spec)
    return document


def _write(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def test_every_repository_file_is_valid_and_nothing_is_started(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run = run_cli("validate", *map(str, RESOURCE_FILES), cwd=tmp_path, data_dir=data)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines == [f"OK {p}: {yaml.safe_load(p.read_text())['kind']} {_name(p)}" for p in RESOURCE_FILES]
    assert "OK " + str(MINIMAL_EVALUATION) + ": Evaluation digits-minimal" in lines
    assert not data.exists() or not any(data.iterdir())  # no NATS, no collector database, no agent


def _name(path: Path) -> str:
    return str(yaml.safe_load(path.read_text())["metadata"]["name"])


def test_the_first_invalid_file_ends_it_with_exit_1(tmp_path: Path) -> None:
    good = _write(tmp_path / "good.yaml", _evaluation())
    bad = _write(tmp_path / "bad.yaml", _evaluation(trace_level="everything"))
    later = _write(tmp_path / "later.yaml", _evaluation(models=[]))
    run = run_cli("validate", str(good), str(bad), str(later), cwd=tmp_path)
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    assert run.stdout.splitlines() == [f"OK {good}: Evaluation digits-minimal"]
    assert run.stderr.startswith(f"error: {bad}: invalid Evaluation: spec.trace_level: Input should be"), run.stderr
    assert "'everything'" in run.stderr
    assert "later.yaml" not in run.stderr


def test_a_string_where_the_crd_says_integer_is_refused_though_pydantic_coerces_it(tmp_path: Path) -> None:
    document = _evaluation(targets=[{"arch": "amd64", "repeats": "2"}], batch_sizes=[1, "8"])
    Evaluation.model_validate(document)  # pydantic's lax mode accepts "2": only the CRD schema catches it
    with pytest.raises(ManifestError) as info:
        check_file(_write(tmp_path / "quoted.yaml", document))
    message = info.value.message
    assert "the cluster would refuse this Evaluation (schema of CRD evaluations.mlmodelscope.org)" in message
    assert "spec.targets[0].repeats: expected integer; found '2'" in message
    assert "spec.batch_sizes[1]: expected integer; found '8'" in message


def test_multi_document_files_name_the_document(tmp_path: Path) -> None:
    model = yaml.safe_load((ASSETS / "models" / "digits-cnn.yaml").read_text())
    broken = copy.deepcopy(model)
    broken["metadata"]["name"] = "Digits_CNN"
    path = _write(tmp_path / "both.yaml", model, broken)
    with pytest.raises(ManifestError) as info:
        check_file(path)
    assert info.value.message.startswith(f"{path} (document 2): invalid Model: metadata.name: String should match")
    assert check_file(_write(tmp_path / "one.yaml", model, _evaluation())) == [
        "Model digits-cnn",
        "Evaluation digits-minimal",
    ]


def test_duplicate_keys_unknown_kinds_and_empty_files(tmp_path: Path) -> None:
    duplicated = tmp_path / "duplicated.yaml"
    duplicated.write_text(MINIMAL_EVALUATION.read_text() + "  min_duration_s: 5\n")
    with pytest.raises(ManifestError, match=r"duplicate key 'min_duration_s' at line \d+ \(first at line \d+\)"):
        check_file(duplicated)
    with pytest.raises(ManifestError, match="kind: expected one of Model, Framework, Dataset, Evaluation; found 'Job'"):
        check_file(_write(tmp_path / "job.yaml", {**_evaluation(), "kind": "Job"}))
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    with pytest.raises(ManifestError, match="no resource in the file"):
        check_file(empty)


MUTATIONS = [
    pytest.param({}, id="valid"),
    pytest.param({"min_duration_s": -1}, id="below-minimum"),
    pytest.param({"max_duration_s": 0}, id="exclusive-minimum"),
    pytest.param({"batch_sizes": []}, id="min-items"),
    pytest.param({"batch_sizes": [1] * 21}, id="max-items"),
    pytest.param({"models": ["Not_A_Name"]}, id="pattern"),
    pytest.param({"scenario": "sideways"}, id="enum"),
    pytest.param({"threads": "4"}, id="string-for-integer"),
    pytest.param({"min_duration_s": True}, id="boolean-for-number"),
    pytest.param({"colour": "red"}, id="unknown-field"),
    pytest.param({"targets": [{"accelerator": "gpu"}]}, id="required-missing"),
    pytest.param({"resources": {"requests": {"cpu": "lots"}}}, id="additional-properties-pattern"),
    pytest.param({"queue_name": ""}, id="min-length"),
    pytest.param({"dataset": None}, id="null"),
]


@pytest.mark.parametrize("spec", MUTATIONS)
def test_admission_agrees_with_jsonschema_on_the_committed_crd(spec: dict[str, Any]) -> None:
    """The CLI's schema check (no jsonschema at run time) says what jsonschema says about crds/*.yaml."""
    document = _evaluation(**spec)
    schema = crd_schema("Evaluation")
    assert schema is not None
    ours = admission_problems(document, schema)
    theirs = admission_errors(document)
    assert bool(ours) == bool(theirs), (ours, theirs)
