"""The Pod and Job statuses the sandbox's kubelet writes, as a kubelet and the Job controller would.

Each is a merge patch of the object's ``status`` subresource on the emulated API: a container waiting (with the
reason Kubernetes gives: ``CreateContainerConfigError``, ``ErrImageNeverPull``), running, or terminated with its
exit code; a missing object (a Job deleted meanwhile) is not an error.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from mlmodelscope.cli.sandbox.emulator import now_timestamp

logger = logging.getLogger("mlmodelscope.sandbox.kubelet")


class StatusWriter:
    """Writes statuses through ``client`` (the kubelet's API client)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def patch(self, path: str, status: dict[str, Any]) -> None:
        response = await self._client.patch(
            f"{path}/status", json={"status": status}, headers={"Content-Type": "application/merge-patch+json"}
        )
        if response.status_code not in (200, 201, 404):
            logger.warning("PATCH %s/status: %s %s", path, response.status_code, response.text[:200])

    async def running(self, pod_path: str, container: dict[str, Any], ids: dict[str, str]) -> None:
        started = now_timestamp()
        running = {"name": container["name"], "ready": True, "state": {"running": {"startedAt": started}}, **ids}
        await self.patch(pod_path, {"phase": "Running", "startTime": started, "containerStatuses": [running]})

    async def waiting(self, pod_path: str, container: dict[str, Any], reason: str, message: str) -> None:
        waiting = {"reason": reason, "message": message}
        await self.patch(
            pod_path,
            {
                "phase": "Pending",
                "containerStatuses": [{"name": container["name"], "ready": False, "state": {"waiting": waiting}}],
            },
        )

    async def terminated(
        self,
        pod_path: str,
        container: dict[str, Any],
        code: int,
        reason: str,
        message: str,
        ids: dict[str, str] | None = None,
    ) -> None:
        terminated = {"exitCode": code, "reason": reason, "message": message, "finishedAt": now_timestamp()}
        status = {"name": container["name"], "ready": False, "state": {"terminated": terminated}, **(ids or {})}
        await self.patch(pod_path, {"phase": "Succeeded" if code == 0 else "Failed", "containerStatuses": [status]})
