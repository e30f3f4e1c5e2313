"""``mlmodelscope sandbox up`` as a user runs it: a subprocess, the real kubectl against its kubeconfig.

A Model that is not in assets/ (its artifacts served over HTTP on 127.0.0.1 by the test, with their sha256) runs
in two frameworks and the Evaluation ends Succeeded with top-1 in its status, the agents having no asset folder;
the cluster's Model is patched (pixel scale 16 -> 8) and a new Evaluation shows the changed top-1 and the new
spec checksum; SIGTERM stops everything the sandbox started and removes the kubeconfig.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlmodelscope.core.manifests.canonical import spec_sha256

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "assets" / "artifacts" / "digits"
CLI = Path(sys.executable).parent / "mlmodelscope"
KUBECTL = Path("/usr/bin/kubectl")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not KUBECTL.is_file(), reason="the real kubectl is at /usr/bin/kubectl on these machines"),
]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@contextlib.contextmanager
def http_folder(folder: Path) -> Iterator[str]:
    """``folder`` served over HTTP on 127.0.0.1; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Sandbox:
    def __init__(self, tmp_path: Path) -> None:
        self.kubeconfig = tmp_path / "kubeconfig"
        self.state = tmp_path / "state"
        self.log = tmp_path / "sandbox.log"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MLMODELSCOPE_")}
        environment.update({"NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(CLI), "sandbox", "up", "--kubeconfig", str(self.kubeconfig), "--state-dir", str(self.state)],
                cwd=REPO,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while not self.kubeconfig.exists():
            assert self.process.poll() is None, f"the sandbox exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"no kubeconfig within 120 s:\n{self.output()}"
            time.sleep(0.2)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-5000:]

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(KUBECTL), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def apply(self, document: dict[str, Any]) -> None:
        self.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(document))

    def get(self, path: str) -> Any:
        return json.loads(self.kubectl("get", "--raw", path))

    def wait_finished(self, name: str, timeout_s: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            status = json.loads(self.kubectl("get", "evaluation", name, "-o", "json")).get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed"):
                return status
            assert time.monotonic() < deadline, f"{name} not finished in {timeout_s} s: {status}\n{self.output()}"
            time.sleep(1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    running = Sandbox(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _http_model(base_url: str, scale: float) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "assets/models/digits-cnn.yaml").read_text(encoding="utf-8"))
    document["metadata"] = {"name": "digits-cnn-http", "labels": document["metadata"]["labels"]}
    spec = document["spec"]
    spec["artifacts"] = [
        {"uri": f"{base_url}/digits_cnn.onnx", "sha256": _sha256(DIGITS / "digits_cnn.onnx"), "format": "onnx"},
        {
            "uri": f"{base_url}/digits_cnn.torchscript.pt",
            "sha256": _sha256(DIGITS / "digits_cnn.torchscript.pt"),
            "format": "torchscript",
        },
    ]
    spec["outputs"][0]["labels"] = {"uri": f"{base_url}/labels.txt", "sha256": _sha256(DIGITS / "labels.txt")}
    spec["inputs"][0]["preprocess"][0] = {"normalize": {"mean": 0.0, "scale": scale}}
    return document


def _evaluation(name: str, frameworks: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "mlmodelscope.org/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": name},
        "spec": {
            "models": ["digits-cnn-http"],
            "frameworks": frameworks,
            "targets": [{"arch": "amd64"}],
            "min_duration_s": 0.5,
        },
    }


def test_a_new_model_served_over_http_runs_then_a_patched_model_changes_the_result(tmp_path: Path, sandbox):
    served = tmp_path / "served"
    served.mkdir()
    for name in ("digits_cnn.onnx", "digits_cnn.torchscript.pt", "labels.txt"):
        shutil.copy(DIGITS / name, served / name)
    with http_folder(served) as base_url:
        model = _http_model(base_url, scale=16.0)
        sandbox.apply(model)
        sandbox.apply(_evaluation("http-two", ["onnxruntime", "pytorch"]))
        status = sandbox.wait_finished("http-two")
        assert status["phase"] == "Succeeded", (status, sandbox.output())
        runs = {run["framework"]: run for run in status["runs"]}
        assert set(runs) == {"onnxruntime", "pytorch"}
        for run in runs.values():
            assert run["state"] == "Succeeded" and run["result"]["valid"] is True
            assert run["result"]["top1"] == pytest.approx(0.9889, abs=0.01)

        # The agents had no asset folder at all: their run spec carries the resources; the folder its relative
        # URIs would resolve against does not exist.
        jobs = sandbox.get("/apis/batch/v1/namespaces/default/jobs")["items"]
        assert len(jobs) == 2
        for job in jobs:
            container = job["spec"]["template"]["spec"]["containers"][0]
            spec = json.loads(next(e["value"] for e in container["env"] if e["name"] == "MLMODELSCOPE_RUN_SPEC"))
            assert "assets" not in spec
            model_spec = spec["resources"]["model"]
            assert model_spec["sha256"] == spec_sha256(model_spec["spec"])  # the checksum of what the agent ran
            [run] = [r for r in runs.values() if r["job_name"] == job["metadata"]["name"]]
            assert run["spec_sha256"]["model"] == model_spec["sha256"]
            assert spec["resources"]["model"]["spec"]["artifacts"][0]["uri"].startswith(base_url)
            for resource in spec["resources"].values():
                base_dir = resource.get("base_dir")
                assert base_dir is None or not Path(base_dir).exists(), base_dir
        # The kubelet stand-in made a Pod per Job, labelled and owned as the Job controller does.
        pods = sandbox.get("/api/v1/namespaces/default/pods")["items"]
        by_job = {pod["metadata"]["labels"]["job-name"]: pod for pod in pods}
        assert set(by_job) == {job["metadata"]["name"] for job in jobs}
        for job in jobs:
            pod = by_job[job["metadata"]["name"]]
            assert pod["metadata"]["labels"]["controller-uid"] == job["metadata"]["uid"]
            assert pod["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
            assert pod["status"]["phase"] == "Succeeded"

        patched = _http_model(base_url, scale=8.0)
        sandbox.kubectl(
            "patch", "model", "digits-cnn-http", "--type=merge", "-p", json.dumps({"spec": patched["spec"]})
        )
        sandbox.apply(_evaluation("http-patched", ["onnxruntime"]))
        status = sandbox.wait_finished("http-patched")
        jobs_after = sandbox.get("/apis/batch/v1/namespaces/default/jobs")["items"]
    assert status["phase"] == "Succeeded", status
    [run] = status["runs"]
    assert run["result"]["top1"] < runs["onnxruntime"]["result"]["top1"] - 0.01  # pixels twice as bright: 0.96
    assert run["spec_sha256"]["model"] != runs["onnxruntime"]["spec_sha256"]["model"]
    [job] = [j for j in jobs_after if j["metadata"]["name"] == run["job_name"]]
    container = job["spec"]["template"]["spec"]["containers"][0]
    spec = json.loads(next(e["value"] for e in container["env"] if e["name"] == "MLMODELSCOPE_RUN_SPEC"))
    model_spec = spec["resources"]["model"]
    assert model_spec["spec"]["inputs"][0]["preprocess"][0]["normalize"]["scale"] == 8.0
    assert run["spec_sha256"]["model"] == model_spec["sha256"] == spec_sha256(model_spec["spec"])

    children = _descendants(sandbox.process.pid)
    assert children, "the sandbox runs NATS and the collector as child processes"
    assert sandbox.stop() == 0, sandbox.output()
    assert not sandbox.kubeconfig.exists()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)], sandbox.output()
