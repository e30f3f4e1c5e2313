"""A small asynchronous Kubernetes API client for the objects the operator reads and writes.

kopf watches and patches its own resources with its own client, but it has no public API for other requests
(create a Job, read a Framework). The official ``kubernetes`` client is synchronous (a thread per request, which
also blocks an in-process test server's loop) and its 37.x releases conflict with boto's python-dateutil pin, so
the operator speaks plain JSON over httpx here, with the credentials kopf logged in with (``connection_info``):
one source of truth for where the cluster is.

Status codes become the operator's error types: 404 is ``None``, 409 on create is "already there" (the existing
object is returned), 5xx/429/timeouts are ``KubeUnavailableError`` (retry), any other 4xx is ``KubeApiError``.
"""

from __future__ import annotations

import base64
import logging
import ssl
import tempfile
from pathlib import Path
from typing import Any

import httpx
import kopf

from mlmodelscope.operator.errors import KubeApiError, KubeUnavailableError
from mlmodelscope.operator.settings import OperatorSettings

JsonObject = dict[str, Any]
_TRANSIENT = {429, 500, 502, 503, 504}


def connection_info(
    settings: OperatorSettings,
    kopf_settings: kopf.OperatorSettings,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> Any:
    """Where the API server is and how to authenticate: ``settings.server`` when given, else the pod's service
    account, else the kubeconfig (what ``kubectl`` uses). Also the answer of the operator's ``@kopf.on.login``."""
    if settings.server:
        return kopf.ConnectionInfo(
            server=settings.server,
            token=settings.token,
            scheme="Bearer" if settings.token else None,
            insecure=settings.server.startswith("http://") or None,
        )
    info = kopf.login_with_service_account(settings=kopf_settings, logger=logger)
    return info if info is not None else kopf.login_with_kubeconfig(settings=kopf_settings, logger=logger)


def _as_bytes(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        return raw


def _ssl_context(info: Any, scratch: Path) -> ssl.SSLContext | bool:
    if info.insecure and not info.ca_path and not info.ca_data:
        return False
    context = ssl.create_default_context(cafile=info.ca_path)
    if info.ca_data:
        context.load_verify_locations(cadata=_as_bytes(info.ca_data).decode())
    certificate, key = info.certificate_path, info.private_key_path
    if info.certificate_data:
        certificate = scratch / "client.crt"
        certificate.write_bytes(_as_bytes(info.certificate_data))
    if info.private_key_data:
        key = scratch / "client.key"
        key.write_bytes(_as_bytes(info.private_key_data))
    if certificate:
        context.load_cert_chain(certificate, key)
    return context


class KubeClient:
    """JSON requests to one API server; paths are absolute API paths (``/apis/batch/v1/...``)."""

    def __init__(self, info: Any, *, timeout_s: float) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="mlmodelscope-operator-")
        headers = {"Accept": "application/json"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        auth = httpx.BasicAuth(info.username, info.password or "") if info.username else None
        self._client = httpx.AsyncClient(
            base_url=info.server.rstrip("/"),
            headers=headers,
            auth=auth,
            verify=_ssl_context(info, Path(self._scratch.name)),
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=50),
        )

    async def close(self) -> None:
        await self._client.aclose()
        self._scratch.cleanup()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise KubeUnavailableError(f"{method} {path}: the API server did not answer: {e!r}", status=0) from e
        if response.status_code >= 400 and response.status_code not in (404, 409):
            text = response.text[:500]
            kind = KubeUnavailableError if response.status_code in _TRANSIENT else KubeApiError
            raise kind(f"{method} {path}: HTTP {response.status_code}: {text}", status=response.status_code)
        return response

    async def get(self, path: str) -> JsonObject | None:
        response = await self._request("GET", path)
        return None if response.status_code == 404 else _json(response)

    async def list(
        self, path: str, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[JsonObject]:
        selectors = (("labelSelector", label_selector), ("fieldSelector", field_selector))
        params = {k: v for k, v in selectors if v}
        response = await self._request("GET", path, params=params or None)
        if response.status_code == 404:
            return []
        items: list[JsonObject] = _json(response).get("items") or []
        return items

    async def create(self, path: str, body: JsonObject) -> tuple[JsonObject, bool]:
        """Create ``body`` in the collection ``path``: (the object, True), or (the existing one, False) on 409."""
        response = await self._request("POST", path, json=body)
        if response.status_code == 409:
            existing = await self.get(f"{path}/{body['metadata']['name']}")
            if existing is None:  # deleted between the two requests: let the caller try again
                raise KubeUnavailableError(f"POST {path}: conflict, then gone", status=409)
            return existing, False
        if response.status_code == 404:
            raise KubeApiError(f"POST {path}: no such collection (is the namespace there?)", status=404)
        return _json(response), True

    async def merge_patch(self, path: str, body: JsonObject) -> JsonObject | None:
        response = await self._request(
            "PATCH", path, json=body, headers={"Content-Type": "application/merge-patch+json"}
        )
        return None if response.status_code == 404 else _json(response)

    async def delete(self, path: str) -> bool:
        """Delete with background propagation (the Job's pods go too); False when it was already gone."""
        response = await self._request("DELETE", path, json={"propagationPolicy": "Background"})
        return response.status_code != 404


def _json(response: httpx.Response) -> JsonObject:
    document: JsonObject = response.json()
    return document
