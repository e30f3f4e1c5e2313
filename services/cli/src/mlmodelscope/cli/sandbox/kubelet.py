"""The kubelet and the Job controller of the sandbox: each Job's container runs as a local process or, with the
``podman`` runtime, as its real image under podman.

For every Job in the watched namespaces (unless suspended) it creates a Pod object (labels ``job-name``,
``controller-uid`` and the template's labels, owned by the Job), runs the first container's command and args with
the container's env (``value``, ``valueFrom.secretKeyRef`` read from the emulator's Secrets, ``envFrom``
secretRef) in a fresh, empty work folder, and records the outcome in the Pod's and the Job's status as the Job
controller would (active/succeeded/failed, ``Complete`` or ``Failed`` conditions, retries up to ``backoffLimit``).
A deleted Job's process is killed (its whole process group) and its Pods are deleted (KMock has no garbage
collector). ``python`` in a command means this interpreter, and this interpreter's folder comes first on PATH,
so ``mlmodelscope`` is the CLI installed next to it. One machine is one node: ``max_running`` containers at a time
(default 1, so that benchmarks do not share the CPUs); the other Pods stay Pending.
With the process runtime, container images, volumes and resources are not emulated. With the podman runtime the
container is ``podman create``d from its image (never pulled: a missing image leaves the Pod Pending with
``ErrImageNeverPull``) with the Job's env only, its security context, a tmpfs per emptyDir and its memory limit
(``sandbox.podman``), on the host's network (NATS and the artifact server listen on 127.0.0.1); the Pod's
``containerID`` is ``podman://<id>``. A Pod's container is removed when its Job is deleted and when the kubelet
stops, as Kubernetes removes a deleted Pod's containers. A container's env is resolved by ``container_env``; the Pod
and Job statuses are written by ``pod_status``.
"""

from __future__ import annotations

import asyncio
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

from mlmodelscope.cli.sandbox import podman
from mlmodelscope.cli.sandbox.container_env import ContainerConfigError, ContainerEnv
from mlmodelscope.cli.sandbox.emulator import now_timestamp
from mlmodelscope.cli.sandbox.pod_status import StatusWriter

logger = logging.getLogger("mlmodelscope.sandbox.kubelet")
POLL_S = 0.25
STOP_GRACE_S = 10.0
NODE_NAME = "sandbox"
RUNTIMES = ("process", "podman")
LABEL_SANDBOX = "io.mlmodelscope.sandbox"
LABEL_POD = "io.mlmodelscope.sandbox.pod"
PODMAN_TIMEOUT_S = 120.0


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
    containers: list[str] = field(default_factory=list)  # podman container names


def _local_command(container: dict[str, Any]) -> list[str]:
    command = [*container.get("command", []), *container.get("args", [])]
    if command and command[0] in ("python", "python3"):
        command[0] = sys.executable
    return command


class Kubelet:
    """Runs the Jobs of ``namespaces`` found at ``api_url``; logs and work folders under ``state_dir``."""

    def __init__(
        self,
        api_url: str,
        namespaces: list[str],
        state_dir: Path,
        *,
        max_running: int = 1,
        runtime: str = "process",
        image_storage: Path = podman.DEFAULT_STORAGE,
    ) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
        self.runtime = runtime
        # The podman runtime uses the container storage scripts/build_images.py fills; FileNotFoundError if none.
        self._podman_env = podman.storage_env(image_storage) if runtime == "podman" else {}
        self.instance = uuid.uuid4().hex[:12]  # labels this kubelet's containers
        self._client = httpx.AsyncClient(base_url=api_url, timeout=10)
        self._status = StatusWriter(self._client)
        self._env = ContainerEnv(self._client)
        self._namespaces = namespaces
        self._state_dir = state_dir
        self._jobs: dict[str, _JobState] = {}
        self.log_dir = state_dir / "pods"
        # One machine is one node: by default one container at a time, so benchmarks do not share its CPUs.
        self._slots = asyncio.Semaphore(max_running)

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
        await self._remove_containers(state)
        for pod in state.pods:
            await self._client.delete(f"/api/v1/namespaces/{state.namespace}/pods/{pod}")

    async def stop(self) -> None:
        """Kill every running container (bounded), remove podman's, and close the API client."""
        for state in list(self._jobs.values()):
            if state.task is not None and not state.task.done():
                state.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await state.task
            await self._remove_containers(state)
        await self._client.aclose()

    # -- one Job --------------------------------------------------------------------------------------------
    async def _run_job(self, state: _JobState, job: dict[str, Any]) -> None:
        job_path = f"/apis/batch/v1/namespaces/{state.namespace}/jobs/{state.name}"
        backoff_limit = int(job.get("spec", {}).get("backoffLimit", 6))
        await self._status.patch(job_path, {"active": 1, "startTime": now_timestamp()})
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
                await self._status.patch(job_path, status)
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
                await self._status.patch(job_path, {"active": 0, "failed": state.failed, "conditions": [condition]})
                break
            await self._status.patch(job_path, {"active": 1, "failed": state.failed})
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
            if self.runtime == "podman":
                return await self._run_podman(state, template["spec"], pod_name, pod_path)
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
                await self._status.terminated(pod_path, container, 128, "StartError", str(e))
                return 128, f"cannot start {command[:1]}: {e}"
            state.process = process
            await self._status.running(pod_path, container, {})
            try:
                code = await process.wait()
            except asyncio.CancelledError:
                await _kill_group(process)
                raise
        reason = "Completed" if code == 0 else "Error"
        await self._status.terminated(pod_path, container, code, reason, f"see {log_path}")
        return code, f"exit code {code}"

    async def _wait_for_config(
        self, state: _JobState, container: dict[str, Any], pod_path: str, *, host_env: bool = True
    ) -> dict[str, str]:
        reported = ""
        while True:
            try:
                if host_env:
                    return await self._env.environment(state.namespace, container)
                return await self._env.container_env(state.namespace, container)
            except ContainerConfigError as e:
                if str(e) != reported:
                    reported = str(e)
                    await self._status.waiting(pod_path, container, "CreateContainerConfigError", reported)
            await asyncio.sleep(1.0)

    # -- the podman runtime ---------------------------------------------------------------------------------
    async def _podman(self, *args: str, timeout_s: float = PODMAN_TIMEOUT_S) -> tuple[int, str, str]:
        # conmon writes an ``oom`` marker into its working directory: keep it in the sandbox's state folder.
        process = await asyncio.create_subprocess_exec(
            "podman",
            *args,
            env=self._podman_env,
            cwd=self._state_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
            return 124, "", f"podman {args[0]}: no answer in {timeout_s:g} s"
        return int(process.returncode or 0), out.decode(errors="replace"), err.decode(errors="replace")

    async def image_exists(self, image: str) -> bool:
        code, _, _ = await self._podman("image", "exists", image)
        return code == 0

    async def _wait_for_image(self, container: dict[str, Any], pod_path: str) -> None:
        """Never pulls (the sandbox has no registry): until the image is in the storage, ErrImageNeverPull."""
        reported = False
        while not await self.image_exists(container["image"]):
            if not reported:
                reported = True
                message = (
                    f'Container image "{container["image"]}" is not present in the sandbox\'s container storage '
                    f"and the sandbox never pulls: {podman.BUILD_HINT}"
                )
                logger.warning("kubelet: %s", message)
                await self._status.waiting(pod_path, container, "ErrImageNeverPull", message)
            await asyncio.sleep(2.0)

    async def _run_podman(
        self, state: _JobState, pod_spec: dict[str, Any], pod_name: str, pod_path: str
    ) -> tuple[int, str]:
        container = pod_spec["containers"][0]
        environment = await self._wait_for_config(state, container, pod_path, host_env=False)
        await self._wait_for_image(container, pod_path)
        log_path = self.log_dir / f"{state.namespace}_{pod_name}.log"
        name = f"mlms-sandbox-{self.instance}-{pod_name}"
        with tempfile.TemporaryDirectory(prefix=f"{pod_name}-", dir=self._state_dir) as scratch:
            try:
                env_file = podman.write_env_file(Path(scratch) / "env", environment)
                args = podman.run_args(pod_spec, env_file)
            except podman.UnsupportedPod as e:
                await self._status.terminated(pod_path, container, 128, "StartError", str(e))
                return 128, str(e)
            labels = ["--label", f"{LABEL_SANDBOX}={self.instance}", "--label", f"{LABEL_POD}={pod_name}"]
            state.containers.append(name)  # before create: a Job deleted meanwhile still removes it
            code, out, err = await self._podman(
                "create", "--name", name, "--network", "host", "--pull", "never", *labels, *args
            )
            if code != 0:
                message = f"podman create failed: {err.strip()[-500:]}"
                await self._status.terminated(pod_path, container, 128, "StartError", message)
                return 128, message
            container_id = out.strip().splitlines()[-1]
            with log_path.open("wb") as log:
                process = await asyncio.create_subprocess_exec(
                    "podman", "start", "--attach", name,
                    env=self._podman_env, cwd=self._state_dir, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
                state.process = process
                ids = {"containerID": f"podman://{container_id}", "image": container["image"]}
                await self._status.running(pod_path, container, ids)
                try:
                    await process.wait()
                except asyncio.CancelledError:
                    await self._podman("stop", "-t", f"{STOP_GRACE_S:g}", name, timeout_s=STOP_GRACE_S + 30)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
                    raise
        inspected, out, err = await self._podman("inspect", "--format", "{{.State.ExitCode}}", name)
        code = int(out.strip()) if inspected == 0 and out.strip().lstrip("-").isdigit() else 128
        reason = "Completed" if code == 0 else "Error"
        await self._status.terminated(pod_path, container, code, reason, f"see {log_path}", ids)
        return code, f"exit code {code}"

    async def _remove_containers(self, state: _JobState) -> None:
        if state.containers:
            await self._podman("rm", "--force", "--ignore", "--time", "0", *state.containers)
            state.containers.clear()


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
