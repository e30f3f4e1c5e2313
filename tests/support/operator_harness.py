"""The real operator (kopf) against KMock as the Kubernetes API, and the test playing the kubelet.

KMock (kopf's recommended API emulator) runs in the test's event loop, so everything that talks to it from the
test is asynchronous: httpx.AsyncClient for API requests, ``asyncio.create_subprocess_exec`` for kubectl and for
the Jobs' containers (a blocking call would freeze the loop that serves KMock). Workarounds, as documented in
/work/shared/reference/dependencies-tried.md section 4:

* resources are declared in ``kmock.resources`` (a POSTed CRD does not make them discoverable), including
  ``v1/namespaces``, ``v1/events`` and the CRD resource that kopf's backbone looks for;
* the operator runs with kopf's cluster scanning disabled (``GET /api/v1/namespaces`` breaks KMock);
* KMock assigns no ``uid``, ``generation`` or ``creationTimestamp``, and its lists carry no ``kind``: the
  ``Emulator`` below adds them (owner references need the uid; kubectl needs the kind);
* KMock has no controllers: the test plays the kubelet and the Job controller (``play_kubelet``) and,
  having no garbage collector either, relies on the operator's own cleanup of a deleted Evaluation's Jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

kmock = pytest.importorskip("kmock", reason="kmock (Kubernetes API emulator) is not installed: requirements-dev.txt")

from mlmodelscope.cli.sandbox.emulator import Emulator, declare_resources  # noqa: E402
from mlmodelscope.operator.main import run_operator  # noqa: E402
from mlmodelscope.operator.reconcile import Reconciler  # noqa: E402
from mlmodelscope.operator.settings import OperatorSettings  # noqa: E402
from tests.support.cli import clean_environment  # noqa: E402
from tests.support.operator_catalog import CONTAINERS  # noqa: E402
from tests.support.paths import REPO  # noqa: E402

EXAMPLES = REPO / "assets" / "examples"
NAMESPACE = "default"
GROUP_VERSION = "mlmodelscope.org/v1alpha1"
BIN = Path(sys.executable).parent
KUBECTL = Path("/usr/bin/kubectl")


@contextlib.asynccontextmanager
async def kube_api(cls: type[Emulator] = Emulator) -> AsyncIterator[tuple[Emulator, str]]:
    """A running KMock Kubernetes emulator and its URL."""
    async with cls() as emulator, kmock.Server(emulator) as server:
        declare_resources(emulator)
        yield emulator, str(server.url).rstrip("/")


def collection(kind_plural: str, namespace: str = NAMESPACE) -> str:
    if kind_plural == "jobs":
        return f"/apis/batch/v1/namespaces/{namespace}/jobs"
    if kind_plural in ("pods", "events"):
        return f"/api/v1/namespaces/{namespace}/{kind_plural}"
    return f"/apis/{GROUP_VERSION}/namespaces/{namespace}/{kind_plural}"


PLURALS = {
    "Evaluation": "evaluations",
    "Model": "models",
    "Framework": "frameworks",
    "Dataset": "datasets",
    "Pod": "pods",
    "Event": "events",
}


class Api:
    """The test's own API client (asynchronous, so KMock keeps serving)."""

    def __init__(self, url: str) -> None:
        self.client = httpx.AsyncClient(base_url=url, timeout=10)

    async def close(self) -> None:
        await self.client.aclose()

    async def create(self, document: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(collection(PLURALS[document["kind"]]), json=document)
        assert response.status_code in (200, 201), response.text
        created: dict[str, Any] = response.json()
        return created

    async def get(self, plural: str, name: str) -> dict[str, Any] | None:
        response = await self.client.get(f"{collection(plural)}/{name}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    async def list(self, plural: str) -> list[dict[str, Any]]:
        response = await self.client.get(collection(plural))
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def patch(self, plural: str, name: str, patch: dict[str, Any]) -> None:
        response = await self.client.patch(
            f"{collection(plural)}/{name}", json=patch, headers={"Content-Type": "application/merge-patch+json"}
        )
        response.raise_for_status()

    async def delete(self, plural: str, name: str) -> None:
        response = await self.client.delete(f"{collection(plural)}/{name}")
        assert response.status_code in (200, 202), response.text

    async def patch_status(self, plural: str, name: str, status: dict[str, Any]) -> None:
        response = await self.client.patch(
            f"{collection(plural)}/{name}/status",
            json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        response.raise_for_status()


def scratch_assets(target: Path) -> Path:
    """A copy of the repository's assets with container images in the Framework manifests."""
    shutil.copytree(REPO / "assets", target, ignore=shutil.ignore_patterns("examples"))
    for name, containers in CONTAINERS.items():
        path = target / "frameworks" / f"{name}.yaml"
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        document["spec"]["containers"] = containers
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return target


async def register_assets(api: Api, assets: Path, names: dict[str, list[str]]) -> None:
    """Create the named Model/Framework/Dataset manifests of ``assets`` in the cluster."""
    for folder, wanted in names.items():
        for name in wanted:
            document = yaml.safe_load((assets / folder / f"{name}.yaml").read_text(encoding="utf-8"))
            await api.create(document)


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    return document


def operator_settings(url: str, workdir: Path, assets: Path, **overrides: Any) -> OperatorSettings:
    values: dict[str, Any] = {
        "namespaces": [NAMESPACE],
        "server": url,
        "nats_url": "nats://127.0.0.1:1",
        "collector_url": "http://127.0.0.1:1",
        "collector_timeout_s": 2.0,
        "agent_assets_dir": str(assets),
        "agent_work_dir": str(workdir / "agent"),
        "reconcile_interval_s": 0.5,
        "retry_delay_s": 0.5,
    }
    values.update(overrides)
    return OperatorSettings(**values)


@dataclass
class RunningOperator:
    task: asyncio.Task[None]
    stop_flag: asyncio.Event
    reconciler: Reconciler

    async def stop(self) -> None:
        self.stop_flag.set()
        await asyncio.wait_for(self.task, timeout=30)


async def start_operator(settings: OperatorSettings) -> RunningOperator:
    stop_flag, ready_flag = asyncio.Event(), asyncio.Event()
    reconciler: asyncio.Future[Reconciler] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_operator(settings, stop_flag=stop_flag, ready_flag=ready_flag, reconciler_ready=reconciler)
    )
    done, _ = await asyncio.wait(
        {task, asyncio.ensure_future(ready_flag.wait())}, timeout=30, return_when=asyncio.FIRST_COMPLETED
    )
    if task in done:
        task.result()
    assert ready_flag.is_set(), "the operator did not become ready within 30 s"
    return RunningOperator(task, stop_flag, await reconciler)


@contextlib.asynccontextmanager
async def operator(settings: OperatorSettings) -> AsyncIterator[RunningOperator]:
    running = await start_operator(settings)
    try:
        yield running
    finally:
        await running.stop()


def container_environment(container: dict[str, Any]) -> dict[str, str]:
    """The container's env on top of a clean local environment (this virtualenv first on PATH)."""
    environment = clean_environment(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    environment.update({e["name"]: e["value"] for e in container.get("env", [])})
    return environment


async def play_kubelet(
    api: Api, job: dict[str, Any], workdir: Path, *, timeout_s: float = 240, expect_success: bool = True
) -> int:
    """Run the Job's container command and args locally, then record the outcome in the Job's status as the
    Job controller would (Complete, or Failed after the pod failed), and in the status of a Pod of the Job, as
    the kubelet would (Running, then Succeeded or Failed). Returns the container's exit code."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    name = job["metadata"]["name"]
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    running = {"name": container.get("name", "agent"), "ready": True, "state": {"running": {"startedAt": started}}}
    pod = await api.create(
        job_pod(job, {"phase": "Running", "containerStatuses": [running]}, suffix=uuid.uuid4().hex[:5])
    )
    await api.patch_status("jobs", name, {"active": 1, "startTime": started})
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *container["command"],
            *container["args"],
            env=container_environment(container),
            cwd=workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            code = await asyncio.wait_for(process.wait(), timeout=timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"Job {name} ran over {timeout_s} s:\n{log.read_text()[-3000:]}") from None
    assert (code == 0) == expect_success, f"Job {name} exited with {code}:\n{log.read_text()[-3000:]}"
    terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
    stopped = {"name": running["name"], "ready": False, "state": {"terminated": terminated}}
    pod_phase = "Succeeded" if code == 0 else "Failed"
    await api.patch_status("pods", pod["metadata"]["name"], {"phase": pod_phase, "containerStatuses": [stopped]})
    condition = (
        {"type": "Complete", "status": "True"}
        if code == 0
        else {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": f"exit code {code}"}
    )
    await api.patch_status(
        "jobs", name, {"active": 0, "succeeded": int(code == 0), "failed": int(code != 0), "conditions": [condition]}
    )
    return code


def job_pod(job: dict[str, Any], status: dict[str, Any], *, suffix: str = "x1y2z") -> dict[str, Any]:
    """The Pod the Job controller would create for ``job`` (its template's labels plus the controller's, owned by
    the Job), with the given ``status`` as the scheduler or kubelet would report it."""
    metadata = job["metadata"]
    template = job["spec"]["template"]
    name, uid = metadata["name"], metadata["uid"]
    labels = {
        **(template.get("metadata") or {}).get("labels", {}),
        "job-name": name,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "batch.kubernetes.io/controller-uid": uid,
    }
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid, "controller": True}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-{suffix}", "namespace": NAMESPACE, "labels": labels, "ownerReferences": [owner]},
        "spec": template["spec"],
        "status": status,
    }


async def kubectl(kubeconfig: Path, *args: str, timeout_s: float = 60) -> tuple[int, str, str]:
    """Run the real kubectl against the emulator without blocking the loop that serves it."""
    process = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        f"--kubeconfig={kubeconfig}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    return int(process.returncode or 0), out.decode(), err.decode()


def write_kubeconfig(path: Path, url: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": "x"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester", "namespace": NAMESPACE}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
