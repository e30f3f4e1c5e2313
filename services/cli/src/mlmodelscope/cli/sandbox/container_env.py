"""A sandbox container's environment: its ``env`` and ``envFrom``, with the Secrets they name read from the API.

As the kubelet does, a Secret or key that is missing (and not ``optional``) keeps the container from starting
(``ContainerConfigError``: the Pod waits with that message) until it appears. The process runtime starts from this
machine's environment (no ``MLMODELSCOPE_*`` variables, this interpreter first on PATH); podman containers get the
container's own env only.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Any

import httpx


class ContainerConfigError(Exception):
    """The container cannot start (a Secret or key it names is missing): the Pod stays Pending with this message."""


class ContainerEnv:
    """Resolves containers' env against the Secrets at ``client`` (the kubelet's API client)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

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
        environment.update(await self.container_env(namespace, container))
        return environment

    async def container_env(self, namespace: str, container: dict[str, Any]) -> dict[str, str]:
        """The container's own env (``envFrom`` secretRef, then ``env``), Secrets resolved; ContainerConfigError
        when a Secret or key is missing."""
        environment: dict[str, str] = {}
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
