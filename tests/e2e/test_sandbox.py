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
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlmodelscope.core.manifests.canonical import spec_sha256
from tests.support.paths import REPO
from tests.support.sandbox_process import KUBECTL, alive, descendants

DIGITS = REPO / "assets" / "artifacts" / "digits"

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

    children = descendants(sandbox.process.pid)
    assert children, "the sandbox runs NATS and the collector as child processes"
    assert sandbox.stop() == 0, sandbox.output()
    assert not sandbox.kubeconfig.exists()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if alive(pid)], sandbox.output()
