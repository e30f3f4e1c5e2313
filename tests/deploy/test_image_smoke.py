"""The images built and run for real (``make images-test``; part of ``make test``): the collector, operator,
agent-null and agent-onnxruntime images are built with scripts/build_images.py (buildah, layer cache kept in
.cache/containers between runs), then the collector container consumes a real NATS server and an agent container
evaluates digits-cnn with exactly the command, args, env and security context of the Job the operator's
``build_job`` makes for that run (translated to podman by the sandbox's ``sandbox.podman.run_args``: uid 1000,
read-only root, every capability dropped, no privilege escalation, tmpfs where the Job has emptyDirs). The
collector must store the run's result and every span.

Skipped, saying why, only where buildah/podman are absent (``make images-test`` installs Debian's first)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlmodelscope.cli.nats_server import EmbeddedNatsServer, free_port
from mlmodelscope.cli.sandbox import podman as sandbox_podman
from mlmodelscope.core.manifests.resources import Dataset, Framework, Model
from mlmodelscope.operator import jobs, planning
from mlmodelscope.operator.evaluation import EvaluationSpec
from mlmodelscope.operator.settings import OperatorSettings
from scripts.build_images import CONTAINERS, containers_env
from tests.support.container_images import needs_podman
from tests.support.paths import REPO

RUN_TIMEOUT_S = 600

pytestmark = [pytest.mark.slow, needs_podman]


def podman(*args: str, timeout_s: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    # cwd: conmon leaves an ``oom`` marker in its working directory.
    result = subprocess.run(
        ["podman", *args], env=containers_env(), cwd=CONTAINERS, capture_output=True, text=True, timeout=timeout_s
    )
    if check:
        assert result.returncode == 0, f"podman {' '.join(args[:3])}...: {result.stderr[-3000:]}"
    return result


def _load(cls: Any, path: Path) -> Any:
    return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def operator_job(nats_url: str, name: str) -> dict[str, Any]:
    """The Job the operator creates for digits-cnn on onnxruntime (amd64, cpu), as its reconciler builds it."""
    assets = REPO / "assets"
    catalog = planning.ResourceCatalog.of(
        "team-a",
        models=[_load(Model, assets / "models/digits-cnn.yaml")],
        frameworks=[_load(Framework, assets / "frameworks/onnxruntime.yaml")],
        datasets=[_load(Dataset, assets / "datasets/digits.yaml")],
    )
    spec = EvaluationSpec.model_validate(
        {"models": ["digits-cnn"], "frameworks": ["onnxruntime"], "min_duration_s": 2, "trace_level": "framework"}
    )
    settings = OperatorSettings(nats_url=nats_url)
    [run] = planning.plan(name, str(uuid.uuid4()), spec, catalog, settings)
    spec_json = jobs.run_spec(run, f"team-a/{name}", spec, settings).model_dump_json()
    return jobs.build_job(
        run, evaluation=name, namespace="team-a", uid="uid", spec=spec, settings=settings, run_spec_json=spec_json
    )


def podman_run_args(pod: dict[str, Any], env_file: Path) -> list[str]:
    """``podman run`` arguments for the pod's single container, translated as the sandbox's kubelet translates it
    (``sandbox.podman.run_args``); its env (literal values only here: no API server resolves Secrets) goes to
    ``env_file``. What podman cannot express fails the test rather than being dropped."""
    (container,) = pod["containers"]
    try:
        sandbox_podman.write_env_file(env_file, sandbox_podman.literal_env(container))
        return sandbox_podman.run_args(pod, env_file)
    except sandbox_podman.UnsupportedPod as e:
        pytest.fail(f"the Job cannot be run as the kubelet would: {e}")


@pytest.fixture
def collector(built: dict[str, str], nats_server: EmbeddedNatsServer, tmp_path: Path) -> Iterator[str]:
    """The collector image, run like the chart's Deployment (uid 1000, read-only root, no capabilities), storing
    into SQLite on a host folder; yields its URL."""
    data = tmp_path / "collector-data"
    data.mkdir()
    os.chown(data, 1000, 1000)
    port = free_port()
    name = f"mlms-smoke-collector-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, "--network", "host", "--user", "1000:1000", "--read-only",
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--tmpfs", "/tmp:rw,mode=1777",
           "-v", f"{data}:/data", "-e", f"MLMODELSCOPE_COLLECTOR_NATS_URL={nats_server.url}",
           "-e", "MLMODELSCOPE_COLLECTOR_DATABASE_URL=sqlite:////data/collector.db",
           "-e", "MLMODELSCOPE_COLLECTOR_HOST=127.0.0.1", "-e", f"MLMODELSCOPE_COLLECTOR_PORT={port}",
           "-e", "MLMODELSCOPE_COLLECTOR_ASSETS=/opt/mlmodelscope/assets", built["collector"])  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            running = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            assert running == "true", "the collector container exited: " + podman("logs", name, check=False).stderr
            assert time.monotonic() < deadline, "the collector did not become ready in 120 s"
            time.sleep(0.5)
        yield url
    finally:
        podman("rm", "-f", "-t", "5", name, check=False)


def test_the_agent_image_runs_the_operators_job_and_the_collector_stores_everything(
    collector: str, nats_server: EmbeddedNatsServer, built: dict[str, str], tmp_path: Path
) -> None:
    job = operator_job(nats_server.url, "smoke")
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == built["agent-onnxruntime"], "the Framework resource names the image"
    started = time.monotonic()
    args = podman_run_args(pod, tmp_path / "env")
    result = podman("run", "--rm", "--network", "host", *args, timeout_s=RUN_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    run_id = job["metadata"]["annotations"][jobs.ANNOTATION_RUN_ID]
    deadline = started + RUN_TIMEOUT_S
    while True:
        detail = httpx.get(f"{collector}/api/v1/runs/{run_id}", timeout=10)
        if detail.status_code == 200 and detail.json()["complete"] is not None:
            break
        assert time.monotonic() < deadline, f"the collector did not finish run {run_id}: {detail.text[:500]}"
        time.sleep(1)
    run = detail.json()
    assert run["complete"] is True, run
    assert run["expected_span_count"] > 0
    assert run["received_span_count"] == run["expected_span_count"]
    assert run["received_query_count"] == run["expected_query_count"] > 0
    stored = httpx.get(f"{collector}/api/v1/runs/{run_id}/result", timeout=10)
    assert stored.status_code == 200
    document = stored.json()
    assert (document["model"]["name"], document["framework"]["name"]) == ("digits-cnn", "onnxruntime")
    assert document["trace_level"] == "framework"
    assert document["accuracy"]["top1"] > 0.9, "the model evaluated in the image classifies the digits"
    assert document["performance"] is not None


def test_the_agent_null_and_operator_images_carry_only_their_distributions(built: dict[str, str]) -> None:
    """Each image imports its own entrypoint under the Job's constraints, and lacks the CLI, the other services'
    stacks, the local-mode NATS server and pip."""
    hardened = ["run", "--rm", "--network", "none", "--user", "1000:1000", "--read-only", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges", "--tmpfs", "/tmp:rw,mode=1777",
                "--entrypoint", "python"]  # fmt: skip
    probe = (
        "import importlib.util, shutil, sys; mod, *absent = sys.argv[1:]; __import__(mod);"
        "present = [m for m in absent if importlib.util.find_spec(m)];"
        "present += ['nats-server'] if shutil.which('nats-server') else [];"
        "sys.exit(f'present: {present}' if present else 0)"
    )
    cases = {
        "agent-null": ("mlmodelscope.agent.__main__", "mlmodelscope.cli", "mlmodelscope.collector", "fastapi",
                       "kopf", "onnxruntime", "pip", "setuptools"),
        "operator": ("mlmodelscope.operator.main", "mlmodelscope.cli", "mlmodelscope.agent", "fastapi", "pip"),
        "collector": ("mlmodelscope.collector.main", "mlmodelscope.cli", "mlmodelscope.agent", "kopf", "pip"),
    }  # fmt: skip
    for key, (module, *absent) in cases.items():
        result = podman(*hardened, built[key], "-c", probe, module, *absent, check=False)
        assert result.returncode == 0, f"{key}: {result.stderr[-2000:]}"
