"""Every generated file is committed as its generator writes it (``make generate`` is the fix when not), and the
editors' JSON Schemas accept every committed asset and example and refuse what pydantic refuses."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.paths import REPO


def _load_generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", REPO / "scripts" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _load_generate()


def test_committed_generated_files_equal_a_fresh_generation(tmp_path: Path) -> None:
    problems = generate.stale(tmp_path / "fresh")
    assert not problems, "stale generated files (run `make generate`):\n" + "\n".join(problems)
    written = {p.relative_to(tmp_path / "fresh").parts[0] for p in (tmp_path / "fresh").rglob("*") if p.is_file()}
    assert written == {"crds", "charts", "assets", "services"}


def test_a_stale_missing_or_orphaned_file_is_named(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for folder in ("assets/models", "assets/frameworks", "assets/datasets"):
        shutil.copytree(REPO / folder, repo / folder)
    generate.write(repo, repo)
    assert generate.stale(tmp_path / "a", repo) == []
    dashboard = repo / generate.CHART / "dashboards" / "mlmodelscope-overview.json"
    dashboard.write_text(dashboard.read_text(encoding="utf-8").replace('"10s"', '"30s"'), encoding="utf-8")
    (repo / "assets" / "schemas" / "model.schema.json").unlink()
    (repo / "crds" / "old.mlmodelscope.org.yaml").write_text("kind: Old\n", encoding="utf-8")
    assert generate.stale(tmp_path / "b", repo) == [
        "assets/schemas/model.schema.json: missing (a generator writes it)",
        "charts/mlmodelscope/dashboards/mlmodelscope-overview.json: differs from a fresh generation",
        "crds/old.mlmodelscope.org.yaml: no generator writes it",
    ]
    generate.write(repo, repo)
    assert generate.stale(tmp_path / "c", repo) == []
    assert not (repo / "crds" / "old.mlmodelscope.org.yaml").exists()


def _check(repo: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REPO / "scripts" / "generate.py"), "--check", "--repo", str(repo)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_the_check_command_names_the_stale_file_and_the_fix(tmp_path: Path) -> None:
    committed = _check(REPO)
    assert committed.returncode == 0, committed.stderr
    for folder in ("assets/models", "assets/frameworks", "assets/datasets"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    generate.write(tmp_path, tmp_path)
    (tmp_path / "crds" / "models.mlmodelscope.org.yaml").write_text("# edited by hand\n", encoding="utf-8")
    edited = _check(tmp_path)
    assert edited.returncode == 1
    assert edited.stderr == (
        "stale: crds/models.mlmodelscope.org.yaml: differs from a fresh generation (run `make generate`)\n"
    )


def test_a_schema_change_without_its_migration_is_stale_and_make_generate_writes_it(tmp_path: Path) -> None:
    """The span_batches migration taken away stands for a schema.py change nobody migrated: --check names the file
    a generator would write, and writing it gives the same operations as the committed one."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / generate.MIGRATIONS_DIR, repo / generate.MIGRATIONS_DIR)
    generate.write(repo, repo)
    ingest = repo / generate.MIGRATIONS_DIR / "ingest"
    committed = ingest / "0004_span_batches.json"
    committed_operations = json.loads(committed.read_text(encoding="utf-8"))["operations"]
    committed.unlink()
    written = generate.MIGRATIONS_DIR / "ingest" / "0004_create_table_span_batches.json"
    assert generate.stale(tmp_path / "a", repo) == [f"{written}: missing (a generator writes it)"]
    assert generate.write(repo, repo) == [written]
    document = json.loads((repo / written).read_text(encoding="utf-8"))
    assert (document["version"], document["description"]) == (4, "create table span_batches")
    assert document["operations"] == committed_operations
    assert generate.stale(tmp_path / "b", repo) == []


def test_a_hand_edited_migration_file_is_named_and_a_broken_one_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO / generate.MIGRATIONS_DIR, repo / generate.MIGRATIONS_DIR)
    generate.write(repo, repo)
    relative = generate.MIGRATIONS_DIR / "analysis" / "0001_baselines.json"
    path = repo / relative
    path.write_text(json.dumps(json.loads(path.read_text(encoding="utf-8"))), encoding="utf-8")  # one line
    assert generate.stale(tmp_path / "a", repo) == [f"{relative}: differs from a fresh generation"]
    path.write_text(path.read_text(encoding="utf-8").replace('"create_table"', '"create_tabel"'), encoding="utf-8")
    refused = _check(repo)
    assert refused.returncode == 1
    assert f"migration file {path} cannot be read" in refused.stderr
    assert "create_tabel" in refused.stderr and "Traceback" not in refused.stderr


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((REPO / "assets" / "schemas" / f"{name}.schema.json").read_text("utf-8"))
    return schema


@pytest.mark.parametrize("name", sorted(generate.SCHEMA_MODELS))
def test_schemas_are_valid_and_marked_generated(name: str) -> None:
    schema = _schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$comment"].startswith("GENERATED by `make generate`")
    assert schema["additionalProperties"] is False


KIND_FOLDERS = {"model": "models", "framework": "frameworks", "dataset": "datasets", "evaluation": "examples"}


@pytest.mark.parametrize("name", sorted(KIND_FOLDERS))
def test_every_committed_document_passes_its_schema(name: str) -> None:
    validator = jsonschema.Draft202012Validator(_schema(name))
    files = sorted((REPO / "assets" / KIND_FOLDERS[name]).glob("*.yaml"))
    documents = [doc for path in files for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]
    assert documents
    for doc in documents:
        assert doc["kind"].lower() == name
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, f"{doc['metadata']['name']}: {errors}"


def test_the_schema_flags_a_typo_and_a_wrong_type() -> None:
    validator = jsonschema.Draft202012Validator(_schema("model"))
    doc = yaml.safe_load((REPO / "assets" / "models" / "digits-cnn.yaml").read_text("utf-8"))
    doc["spec"]["inputs"][0]["shapez"] = doc["spec"]["inputs"][0].pop("shape")
    doc["metadata"]["name"] = "Not_A_DNS_Label"
    messages = sorted(e.message for e in validator.iter_errors(doc))
    assert any("'shapez' was unexpected" in m for m in messages), messages
    assert any("'shape' is a required property" in m for m in messages), messages
    assert any("does not match" in m and "Not_A_DNS_Label" in m for m in messages), messages
