"""``mlmodelscope sandbox up --runtime podman``: the sandbox's kubelet runs each Job as its real image.

The smoke images are built (or found in the layer cache) by the ``built`` fixture (tests/deploy/conftest.py); the
sandbox runs from the repository root with the storage scripts/build_images.py fills. The minimal example
Evaluation (digits-cnn on ONNX Runtime, shorter) must end Succeeded with top-1 in its status, and the agent must
have run in a container of the Framework's image: podman's record of the exited container (image, exit code 0,
the Pod's ``containerID``), with the image's PATH, the Job's env and none of this machine's, uid 1000 and a
read-only root. Deleting a running Job removes its container; on SIGTERM the sandbox removes all of its
containers. Skipped, saying why, where podman/buildah or the real kubectl are absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlmodelscope.cli.sandbox.kubelet import LABEL_POD, LABEL_SANDBOX
from mlmodelscope.operator.jobs import LABEL_EVALUATION
from scripts.build_images import CONTAINERS, containers_env
from tests.support.container_images import needs_podman
from tests.support.paths import CLI, REPO
from tests.support.sandbox_process import KUBECTL, Sandbox

pytestmark = [
    pytest.mark.slow,
    needs_podman,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not KUBECTL.is_file(), reason="the real kubectl is at /usr/bin/kubectl on these machines"),
]


class PodmanSandbox(Sandbox):
    """The sandbox with ``--runtime podman`` (tests/support/sandbox_process.Sandbox starts the process runtime)."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, "--runtime", "podman")


def podman(*args: str) -> str:
    done = subprocess.run(
        ["podman", *args], env=containers_env(), cwd=CONTAINERS, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def podman_containers(label: str) -> list[dict[str, Any]]:
    return list(json.loads(podman("ps", "-a", "--filter", f"label={label}", "--format", "json") or "[]"))


def wait_for_running_pod(sandbox: Sandbox, evaluation: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        for pod in sandbox.get("/api/v1/namespaces/default/pods")["items"]:
            evaluation_label = pod["metadata"]["labels"].get(LABEL_EVALUATION)
            statuses = pod.get("status", {}).get("containerStatuses") or [{}]
            if evaluation_label == evaluation and "running" in statuses[0].get("state", {}):
                return dict(pod)
        assert time.monotonic() < deadline, f"no running pod of {evaluation} in {timeout_s} s:\n{sandbox.output()}"
        time.sleep(0.5)


def test_the_sandbox_runs_the_job_as_the_frameworks_image_under_podman(built: dict[str, str], tmp_path: Path):
    evaluation = yaml.safe_load((REPO / "assets/examples/evaluation-minimal.yaml").read_text(encoding="utf-8"))
    assert evaluation["spec"]["frameworks"] == ["onnxruntime"]
    evaluation["spec"]["min_duration_s"] = 0.5
    sandbox = PodmanSandbox(tmp_path)
    try:
        assert "runtime:     podman" in sandbox.output()
        sandbox.apply(evaluation)
        status = sandbox.wait_finished(evaluation["metadata"]["name"])
        assert status["phase"] == "Succeeded", (status, sandbox.output())
        [run] = status["runs"]
        assert run["state"] == "Succeeded" and run["result"]["valid"] is True
        assert run["result"]["top1"] == pytest.approx(0.9889, abs=0.01)

        [pod] = sandbox.get("/api/v1/namespaces/default/pods")["items"]
        [container_status] = pod["status"]["containerStatuses"]
        assert container_status["state"]["terminated"]["exitCode"] == 0
        pod_name = pod["metadata"]["name"]
        [container] = podman_containers(f"{LABEL_POD}={pod_name}")
        assert container["Image"] == built["agent-onnxruntime"] == pod["spec"]["containers"][0]["image"]
        assert container["ExitCode"] == 0 and container["Exited"] is True
        assert container_status["containerID"] == f"podman://{container['Id']}"
        # The image's environment (its PATH) plus the Job's env, none of this machine's; the Job's security context.
        [inspected] = json.loads(podman("inspect", container["Id"]))
        environment = dict(entry.split("=", 1) for entry in inspected["Config"]["Env"])
        assert "/opt/mlmodelscope/bin" in environment["PATH"].split(":"), environment["PATH"]
        assert environment["MLMODELSCOPE_RUN_ID"] == run["run_id"]
        assert "PYTEST_CURRENT_TEST" in os.environ and "PYTEST_CURRENT_TEST" not in environment
        assert inspected["Config"]["User"] == "1000:1000" and inspected["HostConfig"]["ReadonlyRootfs"] is True
        sandbox_label = container["Labels"][LABEL_SANDBOX]

        # A deleted Job's running container is stopped and removed (as its Pod's would be).
        spec = {**evaluation["spec"], "min_duration_s": 300}
        sandbox.apply({**evaluation, "metadata": {"name": "digits-long"}, "spec": spec})
        running = wait_for_running_pod(sandbox, "digits-long")
        assert podman_containers(f"{LABEL_POD}={running['metadata']['name']}")[0]["State"] == "running"
        sandbox.kubectl("delete", "job", running["metadata"]["labels"]["job-name"], "--wait=false")
        deadline = time.monotonic() + 60
        while podman_containers(f"{LABEL_POD}={running['metadata']['name']}"):
            assert time.monotonic() < deadline, "the deleted Job's container is still there after 60 s"
            time.sleep(1)
    finally:
        assert sandbox.stop() == 0, sandbox.output()
    assert podman_containers(f"{LABEL_SANDBOX}={sandbox_label}") == [], "the sandbox removes its containers on exit"


def test_without_built_images_the_sandbox_fails_fast_naming_make_images(tmp_path: Path):
    kubeconfig = tmp_path / "kubeconfig"
    command = [str(CLI), "sandbox", "up", "--kubeconfig", str(kubeconfig), "--runtime", "podman",
               "--image-storage", str(tmp_path / "never-built")]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "make images" in done.stderr and str(tmp_path / "never-built") in done.stderr, done.stderr
    assert not kubeconfig.exists()
