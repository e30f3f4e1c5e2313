"""The kubelet and the Job controller of the sandbox: each Job's container command runs as a local process.

For every Job in the watched namespaces (unless suspended) it creates a Pod object (labels ``job-name``,
``controller-uid`` and the template's labels, owned by the Job), runs the first container's command and args with
the container's env (``value``, ``valueFrom.secretKeyRef`` read from the emulator's Secrets, ``envFrom``
secretRef) in a fresh, empty work folder, and records the outcome in the Pod's and the Job's status as the Job
controller would (active/succeeded/failed, ``Complete`` or ``Failed`` conditions, retries up to ``backoffLimit``).
A deleted Job's process is killed (its whole process group) and its Pods are deleted (KMock has no garbage
collector). ``python`` in a command means this interpreter, and this interpreter's folder comes first on PATH,
so ``mlmodelscope`` is the CLI installed next to it. One machine is one node: ``max_running`` containers at a time
(default 1, so that benchmarks do not share the CPUs); the other Pods stay Pending.
Container images, volumes and resources are not emulated.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mlmodelscope.cli.sandbox.emulator import now_timestamp

logger = logging.getLogger("mlmodelscope.sandbox.kubelet")
POLL_S = 0.25
STOP_GRACE_S = 10.0
NODE_NAME = "sandbox"


class ContainerConfigError(Exception):
    """The container cannot start (a Secret or key it names is missing): the Pod stays Pending with this message."""


@dataclass
class _JobState:
    uid: str
    namespace: str
    name: str
    failed: int = 0
    done: bool = False
    task: asyncio.Task[None] | None = None
    process: asyncio.subprocess.Process | None = None
    pods: list[str] = field(default_factory=list)


def _local_command(container: dict[str, Any]) -> list[str]:
    command = [*container.get("command", []), *container.get("args", [])]
    if command and command[0] in ("python", "python3"):
        command[0] = sys.executable
    return command


class Kubelet:
    """Runs the Jobs of ``namespaces`` found at ``api_url``; logs and work folders under ``state_dir``."""

    def __init__(self, api_url: str, namespaces: list[str], state_dir: Path, *, max_running: int = 1) -> None:
        self._client = httpx.AsyncClient(base_url=api_url, timeout=10)
        self._namespaces = namespaces
        self._state_dir = state_dir
        self._jobs: dict[str, _JobState] = {}
        self.log_dir = state_dir / "pods"
        # One machine is one node: by default one container at a time, so benchmarks do not share its CPUs.
        self._slots = asyncio.Semaphore(max_running)

    # -- API helpers ----------------------------------------------------------------------------------------
    async def _patch_status(self, path: str, status: dict[str, Any]) -> None:
        response = await self._client.patch(
            f"{path}/status", json={"status": status}, headers={"Content-Type": "application/merge-patch+json"}
        )
        if response.status_code not in (200, 201, 404):
            logger.warning("PATCH %s/status: %s %s", path, response.status_code, response.text[:200])

    async def _secret(self, namespace: str, name: str) -> dict[str, str]:
        response = await self._client.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        if response.status_code == 404:
            raise ContainerConfigError(f'secret "{name}" not found')
        response.raise_for_status()
        body = response.json()
        values = {k: base64.b64decode(v).decode() for k, v in (body.get("data") or {}).items()}
        values.update(body.get("stringData") or {})
        return values

    async def environment(self, namespace: str, container: dict[str, Any]) -> dict[str, str]:
        """This machine's environment (no MLMODELSCOPE_* variables, this interpreter first on PATH) with the
        container's env on top, Secrets resolved; ContainerConfigError when a Secret or key is missing."""
        environment = {k: v for k, v in os.environ.items() if not k.startswith("MLMODELSCOPE_")}
        environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
        environment.update({"NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
        for source in container.get("envFrom", []):
            reference = source.get("secretRef")
            if reference:
                try:
                    values = await self._secret(namespace, reference["name"])
                except ContainerConfigError:
                    if reference.get("optional"):
                        continue
                    raise
                environment.update({source.get("prefix", "") + k: v for k, v in values.items()})
        for variable in container.get("env", []):
            if "value" in variable:
                environment[variable["name"]] = str(variable["value"])
                continue
            reference = (variable.get("valueFrom") or {}).get("secretKeyRef")
            if reference is None:
                continue
            try:
                values = await self._secret(namespace, reference["name"])
                if reference["key"] not in values:
                    raise ContainerConfigError(f"couldn't find key {reference['key']} in Secret {reference['name']}")
            except ContainerConfigError:
                if reference.get("optional"):
                    continue
                raise
            environment[variable["name"]] = values[reference["key"]]
        return environment

    # -- the loop -------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: start new Jobs, kill deleted ones."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        while not stop.is_set():
            try:
                await self._sync()
            except httpx.HTTPError as e:
                logger.warning("kubelet: the API did not answer: %s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=POLL_S)

    async def _sync(self) -> None:
        seen: set[str] = set()
        for namespace in self._namespaces:
            response = await self._client.get(f"/apis/batch/v1/namespaces/{namespace}/jobs")
            response.raise_for_status()
            for job in response.json().get("items", []):
                uid = job["metadata"].get("uid") or f"{namespace}/{job['metadata']['name']}"
                seen.add(uid)
                state = self._jobs.get(uid)
                if state is None and not job.get("spec", {}).get("suspend"):
                    state = _JobState(uid, namespace, job["metadata"]["name"])
                    self._jobs[uid] = state
                    state.task = asyncio.create_task(self._run_job(state, job))
        for uid in [uid for uid in self._jobs if uid not in seen]:
            await self._job_deleted(self._jobs.pop(uid))

    async def _job_deleted(self, state: _JobState) -> None:
        if state.task is not None and not state.task.done():
            state.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await state.task
        for pod in state.pods:
            await self._client.delete(f"/api/v1/namespaces/{state.namespace}/pods/{pod}")

    async def stop(self) -> None:
        """Kill every running container (bounded) and close the API client."""
        for state in list(self._jobs.values()):
            if state.task is not None and not state.task.done():
                state.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await state.task
        await self._client.aclose()

    # -- one Job --------------------------------------------------------------------------------------------
    async def _run_job(self, state: _JobState, job: dict[str, Any]) -> None:
        job_path = f"/apis/batch/v1/namespaces/{state.namespace}/jobs/{state.name}"
        backoff_limit = int(job.get("spec", {}).get("backoffLimit", 6))
        await self._patch_status(job_path, {"active": 1, "startTime": now_timestamp()})
        while True:
            code, reason = await self._run_pod(state, job)
            if code == 0:
                status = {
                    "active": 0,
                    "succeeded": 1,
                    "failed": state.failed,
                    "completionTime": now_timestamp(),
                    "conditions": [
                        {"type": "Complete", "status": "True", "lastTransitionTime": now_timestamp()},
                    ],
                }
                await self._patch_status(job_path, status)
                break
            state.failed += 1
            if state.failed > backoff_limit:
                condition = {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": f"Job has reached the specified backoff limit ({reason})",
                    "lastTransitionTime": now_timestamp(),
                }
                await self._patch_status(job_path, {"active": 0, "failed": state.failed, "conditions": [condition]})
                break
            await self._patch_status(job_path, {"active": 1, "failed": state.failed})
        state.done = True

    async def _run_pod(self, state: _JobState, job: dict[str, Any]) -> tuple[int, str]:
        template = job["spec"]["template"]
        container = template["spec"]["containers"][0]
        pod_name = f"{state.name[:56]}-{uuid.uuid4().hex[:5]}"
        labels = {**(template.get("metadata", {}).get("labels") or {}), "job-name": state.name}
        labels["controller-uid"] = state.uid
        labels["batch.kubernetes.io/job-name"] = state.name
        labels["batch.kubernetes.io/controller-uid"] = state.uid
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": state.namespace,
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": state.name,
                        "uid": state.uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {**template["spec"], "nodeName": NODE_NAME},
            "status": {"phase": "Pending"},
        }
        pod_path = f"/api/v1/namespaces/{state.namespace}/pods/{pod_name}"
        response = await self._client.post(f"/api/v1/namespaces/{state.namespace}/pods", json=pod)
        response.raise_for_status()
        state.pods.append(pod_name)
        async with self._slots:
            return await self._run_container(state, container, pod_name, pod_path)

    async def _run_container(
        self, state: _JobState, container: dict[str, Any], pod_name: str, pod_path: str
    ) -> tuple[int, str]:
        environment = await self._wait_for_config(state, container, pod_path)
        command = _local_command(container)
        log_path = self.log_dir / f"{state.namespace}_{pod_name}.log"
        with (
            tempfile.TemporaryDirectory(prefix=f"{pod_name}-", dir=self._state_dir) as workdir,
            log_path.open("wb") as log,
        ):
            try:
                process = await asyncio.create_subprocess_exec(
                    *command,
                    env=environment,
                    cwd=workdir,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as e:
                await self._terminated(pod_path, container, 128, "StartError", str(e))
                return 128, f"cannot start {command[:1]}: {e}"
            state.process = process
            started = now_timestamp()
            await self._patch_status(
                pod_path,
                {
                    "phase": "Running",
                    "startTime": started,
                    "containerStatuses": [
                        {"name": container["name"], "ready": True, "state": {"running": {"startedAt": started}}}
                    ],
                },
            )
            try:
                code = await process.wait()
            except asyncio.CancelledError:
                await _kill_group(process)
                raise
        reason = "Completed" if code == 0 else "Error"
        await self._terminated(pod_path, container, code, reason, f"see {log_path}")
        return code, f"exit code {code}"

    async def _wait_for_config(self, state: _JobState, container: dict[str, Any], pod_path: str) -> dict[str, str]:
        reported = ""
        while True:
            try:
                return await self.environment(state.namespace, container)
            except ContainerConfigError as e:
                if str(e) != reported:
                    reported = str(e)
                    waiting = {"reason": "CreateContainerConfigError", "message": reported}
                    await self._patch_status(
                        pod_path,
                        {
                            "phase": "Pending",
                            "containerStatuses": [
                                {"name": container["name"], "ready": False, "state": {"waiting": waiting}}
                            ],
                        },
                    )
            await asyncio.sleep(1.0)

    async def _terminated(self, pod_path: str, container: dict[str, Any], code: int, reason: str, message: str) -> None:
        terminated = {"exitCode": code, "reason": reason, "message": message, "finishedAt": now_timestamp()}
        await self._patch_status(
            pod_path,
            {
                "phase": "Succeeded" if code == 0 else "Failed",
                "containerStatuses": [{"name": container["name"], "ready": False, "state": {"terminated": terminated}}],
            },
        )


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the container's process group, SIGKILL it after ``STOP_GRACE_S``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout=STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
