"""Launching evaluations in a cluster: the collector creates an ``Evaluation`` resource through the Kubernetes API.

Configured by settings (``kube_api_url``, ``kube_namespace``, and a bearer token: ``kube_token`` or
``kube_token_file``, e.g. the pod's service-account token; ``kube_ca_file`` for the API server's CA). Only the
HTTP API is used (``POST /apis/mlmodelscope.org/v1alpha1/namespaces/<ns>/evaluations``), no client library: the
operator (``mlmodelscope.operator``) takes it from there, and the runs report to this collector like any other,
under the evaluation id ``<namespace>/<name>``. The spec written here uses the Evaluation resource's fields
(models, frameworks, targets [{arch, accelerator}], dataset, scenario, mode, batch_sizes, min_duration_s,
trace_level). The collector's service account needs ``create`` on ``evaluations.mlmodelscope.org``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from mlmodelscope.collector.analysis_models import LaunchRequest, LaunchResponse
from mlmodelscope.collector.errors import KubernetesApiError, LaunchError, LaunchNotConfiguredError
from mlmodelscope.collector.settings import CollectorSettings

GROUP_VERSION = "mlmodelscope.org/v1alpha1"
_TIMEOUT_S = 10.0


def evaluation_document(request: LaunchRequest, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "models": [request.model],
        "frameworks": list(dict.fromkeys(request.frameworks)),
        "targets": [{"arch": request.arch, "accelerator": request.device}],
        "scenario": request.scenario,
        "mode": request.mode,
        "batch_sizes": sorted(set(request.batch_sizes)),
        "min_duration_s": request.min_duration_s,
        "trace_level": request.trace_level,
    }
    if request.dataset is not None:
        spec["dataset"] = request.dataset
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Evaluation",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/created-by": "mlmodelscope-collector"}},
        "spec": spec,
    }


class KubeLauncher:
    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings

    def _token(self) -> str:
        if self.settings.kube_token is not None:
            return self.settings.kube_token.get_secret_value()
        if self.settings.kube_token_file:
            try:
                return Path(self.settings.kube_token_file).read_text(encoding="utf-8").strip()
            except OSError as e:
                raise LaunchNotConfiguredError(
                    f"cannot read the Kubernetes token file {self.settings.kube_token_file}: {e.strerror}"
                ) from e
        raise LaunchNotConfiguredError(
            "the collector has a Kubernetes API URL but no token",
            hint="Set MLMODELSCOPE_COLLECTOR_KUBE_TOKEN or MLMODELSCOPE_COLLECTOR_KUBE_TOKEN_FILE.",
        )

    async def launch(self, request: LaunchRequest) -> LaunchResponse:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        name = f"{request.model[:40].rstrip('-.')}-{stamp}-{uuid.uuid4().hex[:6]}"
        namespace = self.settings.kube_namespace
        url = f"{self.settings.kube_api_url.rstrip('/')}/apis/{GROUP_VERSION}/namespaces/{namespace}/evaluations"
        verify: bool | str = self.settings.kube_ca_file or True
        headers = {"Authorization": f"Bearer {self._token()}"}
        try:
            async with httpx.AsyncClient(timeout=_TIMEOUT_S, verify=verify) as client:
                response = await client.post(url, json=evaluation_document(request, name), headers=headers)
        except httpx.HTTPError as e:
            raise KubernetesApiError(f"the Kubernetes API at {self.settings.kube_api_url} did not answer: {e}") from e
        if response.status_code in (200, 201, 202):
            return LaunchResponse(evaluation_id=f"{namespace}/{name}", run_ids=[])
        message = _status_message(response)
        if response.status_code in (400, 409, 422):
            raise LaunchError(f"the Kubernetes API refused the Evaluation {namespace}/{name}: {message}")
        raise KubernetesApiError(
            f"the Kubernetes API answered {response.status_code} creating Evaluation {namespace}/{name}: {message}",
            hint="Check the collector's Kubernetes token, namespace and RBAC (create on evaluations).",
        )


def _status_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return str(body.get("message") or body)[:300] if isinstance(body, dict) else str(body)[:300]
