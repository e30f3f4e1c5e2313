"""End to end: kubectl applies the assets and the example Evaluations to KMock, the real operator creates the Jobs,
the test plays the kubelet by running each Job's own container command (the real agent, publishing to a real
NATS server, stored by the real collector), and the Evaluation's status ends with the collector's results and
``ResultValid``, read back with kubectl."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlmodelscope.cli.nats_server import EmbeddedNatsServer
from tests.operator_fixtures import (
    EXAMPLES,
    KUBECTL,
    Api,
    eventually,
    example,
    kube_api,
    kubectl,
    operator,
    operator_settings,
    play_kubelet,
    register_assets,
    scratch_assets,
    write_kubeconfig,
)
from tests.pipeline_processes import CollectorProcess, ProcessReaper

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[tuple[EmbeddedNatsServer, CollectorProcess]]:
    reaper = ProcessReaper()
    nats = EmbeddedNatsServer(tmp_path / "nats")
    nats.start()
    collector = CollectorProcess(tmp_path / "collector", nats.url, reaper)
    try:
        collector.start()
        yield nats, collector
    finally:
        collector.stop()
        nats.stop()
        reaper.reap()


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == kind)


@pytest.mark.skipif(not KUBECTL.is_file(), reason="the real kubectl is at /usr/bin/kubectl on these machines")
def test_examples_run_to_results_with_kubectl_and_the_real_pipeline(tmp_path: Path, pipeline):
    nats, collector = pipeline
    assets = scratch_assets(tmp_path / "assets")
    workdir = tmp_path / "kubelet"
    workdir.mkdir()

    async def scenario() -> dict[str, Any]:
        async with kube_api() as (_, url):
            api = Api(url)
            config = write_kubeconfig(tmp_path / "kubeconfig", url)
            manifests = [
                assets / "models/digits-cnn.yaml",
                assets / "frameworks/onnxruntime.yaml",
                assets / "datasets/digits.yaml",
                EXAMPLES / "evaluation-minimal.yaml",
                EXAMPLES / "evaluation-server.yaml",
            ]
            code, out, err = await kubectl(config, "apply", "--validate=false", *(f"-f={p}" for p in manifests))
            assert code == 0, err
            assert "evaluation.mlmodelscope.org/digits-minimal created" in out
            settings = operator_settings(url, tmp_path, assets, nats_url=nats.url, collector_url=collector.base_url)
            async with operator(settings):
                jobs = await eventually(lambda: _jobs(api, 2), timeout_s=30, what="one Job per Evaluation")
                for job in jobs:
                    assert await play_kubelet(api, job, workdir) == 0
                await eventually(
                    lambda: _finished(api, ["digits-minimal", "digits-server"]),
                    timeout_s=60,
                    what="both Evaluations finished",
                )
                code, out, err = await kubectl(config, "get", "evaluations", "-o", "json")
                assert code == 0, err
                events = (await api.client.get("/api/v1/namespaces/default/events")).json()["items"]
                reasons = {(e["involvedObject"]["name"], e["reason"]) for e in events}
                for name in ("digits-minimal", "digits-server"):
                    for reason in ("JobCreated", "RunSucceeded", "EvaluationSucceeded"):
                        assert (name, reason) in reasons, (name, reason, reasons)
                await api.close()
                return {item["metadata"]["name"]: item for item in json.loads(out)["items"]}

    async def _jobs(api: Api, count: int) -> list[dict[str, Any]] | None:
        jobs = await api.list("jobs")
        return jobs if len(jobs) >= count else None

    async def _finished(api: Api, names: list[str]) -> bool:
        for name in names:
            body = await api.get("evaluations", name)
            if body is None or (body.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                return False
        return True

    evaluations = asyncio.run(scenario())
    minimal = evaluations["digits-minimal"]["status"]
    assert minimal["phase"] == "Succeeded", minimal
    assert _condition(minimal, "Ready")["status"] == "True"
    assert (_condition(minimal, "Succeeded")["status"], _condition(minimal, "Failed")["status"]) == ("True", "False")
    assert minimal["startTime"] <= minimal["completionTime"]
    assert _condition(minimal, "ResultValid") | {"lastTransitionTime": ""} == {
        "type": "ResultValid",
        "status": "True",
        "reason": "AllRunsValid",
        "message": "LoadGen judged all 1 runs VALID",
        "observedGeneration": 1,
        "lastTransitionTime": "",
    }
    assert (minimal["progress"], minimal["valid"]) == ("1/1", "1/1")
    regressed = _condition(minimal, "Regressed")  # the collector checked it: no baseline was marked
    assert (regressed["status"], regressed["reason"]) == ("False", "NoRegression"), regressed
    assert minimal["runs"][0]["result"]["regression"] == "no baseline"
    [run] = minimal["runs"]
    assert run["name"] == "digits-cnn/onnxruntime/amd64-cpu/b1" and run["state"] == "Succeeded"
    assert run["attempts"] == 1
    result = run["result"]
    assert 0 < result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"] < 1000
    assert result["throughput_samples_per_s"] > 0
    assert result["top1"] == pytest.approx(0.9889, abs=0.01)
    assert result["valid"] is True

    # The figures are the collector's, not the operator's own.
    stored = collector.get_json(f"/api/v1/runs/{run['run_id']}/result")
    assert stored["performance"]["latency"]["p99_ns"] / 1e6 == pytest.approx(result["p99_ms"])
    assert stored["accuracy"]["top1"] == result["top1"]
    assert stored["requested_settings"]["min_duration_s"] == 1.0

    server = evaluations["digits-server"]["status"]
    assert server["phase"] == "Succeeded", server
    assert _condition(server, "ResultValid")["status"] == "True"
    [run] = server["runs"]
    assert run["result"]["valid"] is True and run["result"]["top1"] is None  # performance mode only
    stored = collector.get_json(f"/api/v1/runs/{run['run_id']}/result")
    assert stored["requested_settings"]["scenario"] == "server"
    assert stored["requested_settings"]["target_qps"] == 200


def _onnxruntime_can_use_a_gpu() -> bool:
    """Whether ONNX Runtime here has a GPU execution provider (then the GPU run below would not fail)."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(onnxruntime.get_available_providers()))


@pytest.mark.skipif(
    _onnxruntime_can_use_a_gpu(),
    reason="ONNX Runtime can use a GPU here: this test plays a GPU run failing on a machine without one",
)
def test_a_run_whose_agent_fails_ends_the_evaluation_failed_with_the_agents_error(tmp_path: Path, pipeline):
    """A GPU run played on this GPU-less machine: the agent publishes the failure and exits 1, the Job fails, and
    the status names both the Job's failure and the agent's error as the collector stored it."""
    nats, collector = pipeline
    assets = scratch_assets(tmp_path / "assets")
    workdir = tmp_path / "kubelet"
    workdir.mkdir()

    async def scenario() -> dict[str, Any]:
        async with kube_api() as (_, url):
            api = Api(url)
            await register_assets(
                api, assets, {"models": ["digits-cnn"], "frameworks": ["onnxruntime"], "datasets": ["digits"]}
            )
            document = example("evaluation-minimal.yaml")
            document["metadata"]["name"] = "gpu-here"
            document["spec"].update(targets=[{"arch": "amd64", "accelerator": "gpu"}], retries=0)
            await api.create(document)
            settings = operator_settings(url, tmp_path, assets, nats_url=nats.url, collector_url=collector.base_url)
            async with operator(settings):
                [job] = await eventually(lambda: _jobs(api, 1), timeout_s=30, what="the Job")
                assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
                assert await play_kubelet(api, job, workdir, expect_success=False) == 1
                status = await eventually(lambda: _failed(api, "gpu-here"), timeout_s=60, what="Failed")
                await api.close()
                return status

    async def _jobs(api: Api, count: int) -> list[dict[str, Any]] | None:
        jobs = await api.list("jobs")
        return jobs if len(jobs) >= count else None

    async def _failed(api: Api, name: str) -> dict[str, Any] | None:
        body = await api.get("evaluations", name)
        status = (body or {}).get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = asyncio.run(scenario())
    [run] = status["runs"]
    assert run["state"] == "Failed" and run["result"] is None
    assert run["message"].startswith("Job failed (BackoffLimitExceeded: exit code 1); agent: ")
    assert "ONNX Runtime" in run["message"]  # the agent's own DeviceUnavailableError, via the collector
    assert status["lastError"] == run["message"]
    ready = _condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RunsFailed")
    assert _condition(status, "ResultValid")["status"] == "False"
    stored = collector.get_json(f"/api/v1/runs/{run['run_id']}")
    assert stored["status"] == "failed" and stored["accelerator"] == "gpu"
