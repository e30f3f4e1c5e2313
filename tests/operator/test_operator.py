"""The real operator (kopf) against KMock: the example Evaluations become the right Jobs, at most ``parallelism``
at a time, unsatisfiable specs end Failed with a message, a restart duplicates nothing, deletion cleans up."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.operator_harness import (
    BIN,
    Api,
    container_environment,
    example,
    kube_api,
    operator,
    operator_settings,
    register_assets,
    scratch_assets,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
CATALOG = {"models": ["digits-cnn"], "frameworks": ["onnxruntime", "pytorch"], "datasets": ["digits"]}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _status(api: Api, name: str) -> dict[str, Any]:
    body = await api.get("evaluations", name)
    assert body is not None
    status: dict[str, Any] = body.get("status") or {}
    return status


async def _jobs(api: Api) -> list[dict[str, Any]]:
    return sorted(await api.list("jobs"), key=lambda j: j["metadata"]["name"])


def _by_key(jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {j["metadata"]["annotations"]["mlmodelscope.org/run-key"]: j for j in jobs}


def test_matrix_example_jobs_are_pinned_and_limited_by_parallelism(tmp_path: Path):
    assets = scratch_assets(tmp_path / "assets")

    async def scenario() -> None:
        async with kube_api() as (_, url):
            api = Api(url)
            await register_assets(api, assets, CATALOG)
            evaluation = await api.create(example("evaluation-matrix.yaml"))
            uid = evaluation["metadata"]["uid"]
            async with operator(operator_settings(url, tmp_path, assets, nats_url="nats://nats.example:4222")):
                jobs = await eventually(lambda: _enough_jobs(api, 4), timeout_s=30, what="4 Jobs")
                status = await eventually(
                    lambda: _runs_listed(api, "digits-matrix", 12), timeout_s=30, what="12 runs in the status"
                )
                await asyncio.sleep(1.5)  # several reconcile passes: still no more than parallelism
                jobs = await _jobs(api)
                assert len(jobs) == 4
                assert status["phase"] == "Running"
                assert status["progress"] == "0/12"
                assert [r["state"] for r in status["runs"]] == ["Pending"] * 12
                suspended = [r for r in status["runs"] if r["message"] == "suspended until Kueue admits the Job"]
                assert len(suspended) == 4

                # Finish two Jobs (as the Job controller would): two more start, never more than 4 unfinished.
                for job in jobs[:2]:
                    await api.patch_status(
                        "jobs",
                        job["metadata"]["name"],
                        {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
                    )
                await eventually(lambda: _enough_jobs(api, 6), timeout_s=30, what="6 Jobs")
                await asyncio.sleep(1.0)
                jobs = await _jobs(api)
                assert len(jobs) == 6
                await api.client.aclose()

            by_key = _by_key(jobs)
            keys = {r["name"] for r in status["runs"]}
            assert set(by_key) <= keys
            assert len(keys) == 12  # 1 model x 2 frameworks x 3 targets x 2 batch sizes
            for key, job in by_key.items():
                _assert_job(job, key, uid)

    async def _enough_jobs(api: Api, count: int) -> list[dict[str, Any]] | None:
        jobs = await _jobs(api)
        return jobs if len(jobs) >= count else None

    async def _runs_listed(api: Api, name: str, count: int) -> dict[str, Any] | None:
        status = await _status(api, name)
        return status if len(status.get("runs", [])) == count else None

    run(scenario())


def _assert_job(job: dict[str, Any], key: str, uid: str) -> None:
    model, framework, target, batch = key.split("/")
    arch, accelerator = target.split("-")
    metadata, spec = job["metadata"], job["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "mlmodelscope.org/v1alpha1",
            "kind": "Evaluation",
            "name": "digits-matrix",
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert metadata["labels"]["mlmodelscope.org/evaluation"] == "digits-matrix"
    assert metadata["labels"]["kueue.x-k8s.io/queue-name"] == "mlmodelscope"
    assert spec["suspend"] is True  # Kueue admits it
    assert spec["backoffLimit"] == 2 and spec["activeDeadlineSeconds"] == 1800
    assert pod["nodeSelector"] == {"kubernetes.io/arch": arch}
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True  # writable: the work and /tmp emptyDirs
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}
    suffix = "-cuda" if accelerator == "gpu" else ""
    assert container["image"] == f"ghcr.io/mlmodelscope/agent-{framework}:0.1.0{suffix}"
    resources = container["resources"]
    if accelerator == "gpu":
        assert resources["limits"] == {"cpu": "4", "memory": "4Gi", "nvidia.com/gpu": "1"}
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    else:
        assert resources["limits"] == {"cpu": "4", "memory": "4Gi"}
        assert pod["tolerations"] == []
    assert resources["requests"]["cpu"] == "2"
    assert container["command"] == ["python", "-m", "mlmodelscope.agent"]
    assert container["args"] == ["--spec-env", "MLMODELSCOPE_RUN_SPEC"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLMODELSCOPE_NATS_URL"] == "nats://nats.example:4222"
    assert env["MLMODELSCOPE_EVALUATION"] == "default/digits-matrix"
    spec_json = json.loads(env["MLMODELSCOPE_RUN_SPEC"])
    assert spec_json["run_id"] == env["MLMODELSCOPE_RUN_ID"] == metadata["annotations"]["mlmodelscope.org/run-id"]
    assert (spec_json["model"], spec_json["framework"], spec_json["device"]) == (model, framework, accelerator)
    assert spec_json["settings"]["batch_size"] == int(batch.removeprefix("b"))
    assert spec_json["settings"]["scenario"] == "offline" and spec_json["nats_url"] == "nats://nats.example:4222"


def test_the_cli_runs_the_operator_with_options_and_environment(tmp_path: Path):
    """`mlmodelscope operator run` in its own process: options and MLMODELSCOPE_OPERATOR_* reach the Jobs, and
    SIGTERM stops it cleanly."""
    assets = scratch_assets(tmp_path / "assets")
    cli = BIN / "mlmodelscope"

    async def scenario() -> None:
        async with kube_api() as (_, url):
            api = Api(url)
            await register_assets(api, assets, {**CATALOG, "frameworks": ["onnxruntime"]})
            await api.create(example("evaluation-minimal.yaml"))
            environment = container_environment({})
            environment.update(
                MLMODELSCOPE_OPERATOR_AGENT_ASSETS_DIR=str(assets),
                MLMODELSCOPE_OPERATOR_RUN_AS_USER="2000",
                MLMODELSCOPE_OPERATOR_IMAGE_PULL_SECRETS="registry-a,registry-b",
                MLMODELSCOPE_OPERATOR_AGENT_COMMAND="python,-m,mlmodelscope.cli.main,agent,run",
            )
            log = tmp_path / "operator.log"
            with log.open("wb") as out:
                process = await asyncio.create_subprocess_exec(
                    str(cli), "operator", "run", "--server", url, "--namespace", "default",
                    "--nats-url", "nats://nats.cluster.local:4222", env=environment,
                    stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
                try:
                    jobs = await eventually(lambda: _some_jobs(api), timeout_s=60, what=f"a Job\n{log.read_text()}")
                finally:
                    process.terminate()
                    code = await asyncio.wait_for(process.wait(), timeout=30)
            await api.close()
        [job] = jobs
        pod = job["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["command"] == ["python", "-m", "mlmodelscope.cli.main", "agent", "run"]
        assert pod["securityContext"]["runAsUser"] == 2000
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["MLMODELSCOPE_NATS_URL"] == "nats://nats.cluster.local:4222"
        carried = json.loads(env["MLMODELSCOPE_RUN_SPEC"])["resources"]["model"]
        assert (carried["base_dir"], carried["source"]) == (f"{assets}/models", "cluster:default")
        assert pod["imagePullSecrets"] == [{"name": "registry-a"}, {"name": "registry-b"}]
        assert code == 0, log.read_text()

    async def _some_jobs(api: Api) -> list[dict[str, Any]] | None:
        return await api.list("jobs") or None

    run(scenario())
