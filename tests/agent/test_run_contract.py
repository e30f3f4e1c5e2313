"""The run contract: the agent evaluates exactly the resources its run spec carries, and nothing else.

Each agent run here is the real entrypoint (``python -m mlmodelscope.agent``) in its own process, started in an
empty folder: no ``assets/`` is there to fall back on, so a result that matches the spec's resources (and not the
repository's manifests) shows the spec was used.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlmodelscope.collector.analysis_models import LaunchRequest
from mlmodelscope.collector.catalog import registry_of
from mlmodelscope.collector.launcher import LocalLauncher
from mlmodelscope.collector.settings import CollectorSettings
from mlmodelscope.core.errors import ManifestError
from mlmodelscope.core.evaluation.cpu_quota import container_cpus
from mlmodelscope.core.evaluation.results import RunResult
from mlmodelscope.core.manifests import load_registry
from mlmodelscope.core.run_contract import ResolvedResource, ResolvedResources, RunSpec, spec_sha256
from tests.support.cli import run_cli
from tests.support.paths import ASSETS

ARTIFACTS = ASSETS / "artifacts" / "digits"
RECORDED_TOP1 = 0.9889  # digits-cnn's recorded top-1 with the asset file's preprocessing (445/450)
ACCURACY_ONLY = {"scenario": "offline", "mode": "accuracy", "batch_size": 32}


def _from_assets(framework: str = "onnxruntime") -> ResolvedResources:
    return ResolvedResources.from_registry(load_registry([ASSETS]), "digits-cnn", framework)


def _with_model(resources: ResolvedResources, spec: dict[str, Any], **where: Any) -> ResolvedResources:
    model = ResolvedResource.of("Model", "digits-cnn", spec, **where)
    return resources.model_copy(update={"model": model})


def _run_spec(tmp_path: Path, resources: ResolvedResources, **fields: Any) -> RunSpec:
    values: dict[str, Any] = {
        "run_id": "00000000-0000-4000-8000-0000000000c1",
        "evaluation_id": "run-contract",
        "model": resources.model.name,
        "framework": resources.framework.name,
        "dataset": resources.dataset_name,
        "resources": resources,
        "settings": ACCURACY_ONLY,
        "cache_dir": tmp_path / "cache",
        "output_dir": tmp_path / "out",
    }
    return RunSpec.model_validate({**values, **fields})


def _agent(
    workdir: Path, *args: str, env: dict[str, str] | None = None, timeout_s: float = 240
) -> subprocess.CompletedProcess[str]:
    """The agent's own entrypoint in ``workdir`` (an empty folder: there is no assets/ to read)."""
    workdir.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLMODELSCOPE_")}
    return subprocess.run(
        [sys.executable, "-m", "mlmodelscope.agent", *args],
        cwd=workdir,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _evaluate(tmp_path: Path, spec: RunSpec) -> RunResult:
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec_path = tmp_path / "run.json"
    spec_path.write_text(spec.model_dump_json(), encoding="utf-8")
    completed = _agent(tmp_path / "empty", "--spec", str(spec_path), "--output", str(tmp_path / "result.json"))
    assert completed.returncode == 0, completed.stderr
    return RunResult.model_validate_json((tmp_path / "result.json").read_text(encoding="utf-8"))


@pytest.fixture
def artifact_server() -> Iterator[str]:
    """The digits artifacts over HTTP on 127.0.0.1 (the agent fetches them by absolute URI)."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(ARTIFACTS))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- the contract's own rules, in-process ------------------------------------------------------------------------


def test_an_explicit_default_and_an_omitted_one_digest_alike() -> None:
    """The operator reads cluster objects with defaults filled in; local mode reads files that omit them."""
    assets = _from_assets()
    document = assets.model.document()
    document["spec"]["inputs"][0]["preprocess"][0]["normalize"]["mean"] = 0.0  # the default, written out
    document["spec"]["hidden"] = False
    registry = ResolvedResources(
        model=ResolvedResource.of("Model", "digits-cnn", document["spec"], base_dir=assets.model.base_dir),
        framework=assets.framework,
        dataset=assets.dataset,
    ).registry("cluster.json")
    assert ResolvedResource.from_resource(registry.model("digits-cnn")).sha256 == assets.model.sha256


def test_a_spec_altered_after_it_was_written_is_refused(tmp_path: Path) -> None:
    spec = json.loads(_run_spec(tmp_path, _from_assets()).model_dump_json())
    spec["resources"]["model"]["spec"]["inputs"][0]["preprocess"][0]["normalize"]["scale"] = 255.0
    spec_path = tmp_path / "run.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    completed = _agent(tmp_path / "empty", "--spec", str(spec_path), timeout_s=60)
    assert completed.returncode == 1
    assert f"{spec_path}: invalid run spec: resources.model:" in completed.stderr
    assert "does not match its spec" in completed.stderr
    assert "the run spec was altered after it was written" in completed.stderr


def test_an_invalid_resource_is_named_with_the_run_spec_and_its_field() -> None:
    assets = _from_assets()
    spec = copy.deepcopy(assets.model.spec)
    spec["inputs"][0]["shape"] = "eight by eight"
    with pytest.raises(ManifestError, match=r"^\$RUN: resources\.model: invalid Model: spec\.inputs\[0\]\.shape"):
        _with_model(assets, spec, base_dir=assets.model.base_dir).registry("$RUN")


def test_a_relative_uri_without_a_base_folder_is_refused_before_anything_runs() -> None:
    assets = _from_assets()
    carried = _with_model(assets, assets.model.spec, source="cluster:team-a")  # base_dir left empty
    with pytest.raises(ManifestError) as caught:
        carried.registry("run.json")
    error = caught.value
    assert error.message.startswith("run.json: resources.model: Model 'digits-cnn' has the relative artifact URI")
    assert "spec.artifacts[0].uri" in error.message and "no base folder" in error.message
    assert "absolute URI (https://" in (error.hint or "")


def test_the_registry_of_a_run_spec_reads_no_manifest_file() -> None:
    """Its checksums are the specs' recorded sha256s, keyed by where they came from (no such file exists)."""
    assets = _from_assets()
    model = ResolvedResource.of(
        "Model", "digits-cnn", assets.model.spec, source="cluster:team-a/digits-cnn", base_dir="/nonexistent"
    )
    registry = assets.model_copy(update={"model": model}).registry("run.json")
    checksums = registry.checksums()
    assert checksums["Model/digits-cnn from cluster:team-a/digits-cnn"] == spec_sha256(assets.model.spec)
    framework_file = ASSETS / "frameworks" / "onnxruntime.yaml"
    assert checksums[f"Framework/onnxruntime from {framework_file}"] == assets.framework.sha256
    assert registry.spec_sha256("Model", "digits-cnn") == assets.model.sha256


def test_results_without_spec_checksums_still_load(tmp_path: Path) -> None:
    """Results written before the run contract (no spec_sha256, no thread source) validate as they are."""
    result = _evaluate(tmp_path, _run_spec(tmp_path, _from_assets()))
    old = result.model_dump(mode="json")
    for ref in ("model", "framework", "dataset"):
        del old[ref]["spec_sha256"]
    del old["environment"]["intra_op_threads"], old["environment"]["intra_op_threads_source"]
    loaded = RunResult.model_validate(old)
    assert loaded.model.spec_sha256 == "" and loaded.environment.intra_op_threads_source == ""


# --- the agent evaluates what the spec carries -----------------------------------------------------------------


def test_the_result_follows_the_spec_not_the_asset_files(tmp_path: Path) -> None:
    """The same model name with another normalisation in the spec: another accuracy, and its spec checksum."""
    assets = _from_assets()
    as_files = _evaluate(tmp_path / "files", _run_spec(tmp_path / "files", assets))
    patched_spec = copy.deepcopy(assets.model.spec)
    patched_spec["inputs"][0]["preprocess"][0]["normalize"] = {"mean": 8.0, "scale": 16.0}
    patched = _with_model(assets, patched_spec, source="cluster:team-a", base_dir=assets.model.base_dir)
    as_patched = _evaluate(tmp_path / "patched", _run_spec(tmp_path / "patched", patched))

    assert as_files.accuracy is not None and as_patched.accuracy is not None
    assert as_files.accuracy.top1 == pytest.approx(RECORDED_TOP1, abs=1e-4)
    assert as_patched.accuracy.count == 450
    assert abs(as_patched.accuracy.top1 - as_files.accuracy.top1) > 0.05
    assert as_files.model.spec_sha256 == assets.model.sha256
    assert as_patched.model.spec_sha256 == patched.model.sha256 != assets.model.sha256
    assert as_patched.environment.manifest_sha256["Model/digits-cnn from cluster:team-a"] == patched.model.sha256
    assert assets.dataset is not None and as_patched.dataset.spec_sha256 == assets.dataset.sha256


def test_an_agent_with_no_asset_folder_runs_artifacts_given_by_uri(tmp_path: Path, artifact_server: str) -> None:
    """Every URI absolute (HTTP on 127.0.0.1, an absolute path), no base folder: the run needs no assets/."""
    assets = _from_assets()
    model_spec = copy.deepcopy(assets.model.spec)
    model_spec["artifacts"] = [a for a in model_spec["artifacts"] if a["format"] == "onnx"]
    model_spec["artifacts"][0]["uri"] = f"{artifact_server}/digits_cnn.onnx"
    model_spec["outputs"][0]["labels"]["uri"] = f"{artifact_server}/labels.txt"
    assert assets.dataset is not None
    dataset_spec = copy.deepcopy(assets.dataset.spec)
    dataset_spec["source"]["uri"] = str(ARTIFACTS / "digits_test.npz")
    dataset_spec["labels"]["uri"] = f"{artifact_server}/labels.txt"
    resources = ResolvedResources(
        model=ResolvedResource.of("Model", "digits-cnn", model_spec, source="cluster:team-a"),
        framework=ResolvedResource.of("Framework", "onnxruntime", assets.framework.spec, source="cluster:team-a"),
        dataset=ResolvedResource.of("Dataset", "digits", dataset_spec, source="cluster:team-a"),
    )
    result = _evaluate(tmp_path, _run_spec(tmp_path, resources, intra_op_threads=1))

    assert not (tmp_path / "empty" / "assets").exists()
    assert result.accuracy is not None and result.accuracy.top1 == pytest.approx(RECORDED_TOP1, abs=1e-4)
    assert result.environment.artifact_sha256[f"{artifact_server}/digits_cnn.onnx"] == (
        "a887ee54111c3d39c37e040bbecb86d66f5b16d13b68855ac599899fcc81cee4"
    )
    assert {result.model.spec_sha256, result.framework.spec_sha256, result.dataset.spec_sha256} == set(
        resources.checksums().values()
    )
    assert result.environment.manifest_sha256 == {
        "Model/digits-cnn from cluster:team-a": resources.model.sha256,
        "Framework/onnxruntime from cluster:team-a": resources.framework.sha256,
        "Dataset/digits from cluster:team-a": resources.checksums()["dataset"],
    }
    assert (result.environment.intra_op_threads, result.environment.intra_op_threads_source) == (1, "run spec")


def test_threads_default_to_the_containers_cpu_limit(tmp_path: Path) -> None:
    """No intra_op_threads in the spec: the count the cgroup quota (else the affinity mask) allows, and its source."""
    result = _evaluate(tmp_path, _run_spec(tmp_path, _from_assets()))
    expected = container_cpus()
    assert result.environment.intra_op_threads == expected.cpus
    assert result.environment.intra_op_threads_source == expected.source


# --- the entrypoints -------------------------------------------------------------------------------------------


def test_the_agent_reads_its_spec_from_an_environment_variable(tmp_path: Path) -> None:
    spec = _run_spec(tmp_path, _from_assets())
    completed = _agent(
        tmp_path / "empty",
        "--spec-env",
        "MLMODELSCOPE_RUN_SPEC",
        "--output",
        str(tmp_path / "result.json"),
        env={"MLMODELSCOPE_RUN_SPEC": spec.model_dump_json()},
    )
    assert completed.returncode == 0, completed.stderr
    result = RunResult.model_validate_json((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert result.accuracy is not None and result.accuracy.top1 == pytest.approx(RECORDED_TOP1, abs=1e-4)


def test_a_missing_or_invalid_spec_variable_is_named(tmp_path: Path) -> None:
    missing = _agent(tmp_path, "--spec-env", "MLMODELSCOPE_RUN_SPEC", timeout_s=60)
    assert missing.returncode == 1
    assert "environment variable MLMODELSCOPE_RUN_SPEC is not set" in missing.stderr
    invalid = json.loads(_run_spec(tmp_path, _from_assets()).model_dump_json())
    invalid["framework"] = "pytorch"
    bad = _agent(tmp_path, "--spec-env", "SPEC", env={"SPEC": json.dumps(invalid)}, timeout_s=60)
    assert bad.returncode == 1
    assert "$SPEC: invalid run spec" in bad.stderr
    assert "framework is 'pytorch' but resources.framework is 'onnxruntime'" in bad.stderr
    neither = _agent(tmp_path, timeout_s=60)
    assert neither.returncode == 2 and "one of the arguments --spec --spec-env is required" in neither.stderr


def test_mlmodelscope_agent_run_takes_the_spec_from_the_environment(tmp_path: Path) -> None:
    spec = _run_spec(tmp_path, _from_assets())
    workdir = tmp_path / "empty"
    workdir.mkdir()
    run = run_cli(
        "agent",
        "run",
        "--spec-env",
        "MLMODELSCOPE_RUN_SPEC",
        cwd=workdir,
        env={"MLMODELSCOPE_RUN_SPEC": spec.model_dump_json()},
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stderr.strip().splitlines()[-1]) == {"run_id": spec.run_id, "status": "succeeded"}
    missing = run_cli("agent", "run", "--spec-env", "NOT_SET_ANYWHERE", cwd=workdir)
    assert missing.returncode == 1 and "environment variable NOT_SET_ANYWHERE is not set" in missing.stderr


def test_the_collectors_launcher_writes_the_same_contract(tmp_path: Path) -> None:
    """Web-UI launches carry the asset files' resources (as local mode does) and split the CPUs between agents."""
    settings = CollectorSettings(
        assets=str(ASSETS),
        launch_cache_dir=str(tmp_path / "cache"),
        launch_runs_dir=str(tmp_path / "runs"),
        nats_url="nats://127.0.0.1:4222",
    )
    request = LaunchRequest(model="digits-cnn", frameworks=["onnxruntime", "pytorch"], mode="accuracy")
    specs = LocalLauncher(settings).specs(request, registry_of(settings))
    assert [spec.framework for spec in specs] == ["onnxruntime", "pytorch"]
    for spec in specs:
        assert spec.resources == _from_assets(spec.framework)
        assert spec.dataset == "digits"  # the model's default dataset, resolved when the launch was requested
        assert spec.intra_op_threads == max(1, container_cpus().cpus // 2)
