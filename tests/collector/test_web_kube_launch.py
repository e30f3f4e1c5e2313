"""Launching in a cluster: with ``kube_api_url`` set, the API and the launch form create an Evaluation resource
through the Kubernetes API (KMock, the emulator the operator's tests use), with the collector's bearer token, and
the document is a valid Evaluation for the operator's own model."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mlmodelscope.cli.nats_server import free_port
from tests.support import collector as fixtures

pytestmark = pytest.mark.anyio
TOKEN = "ui-token"
KUBE_TOKEN = "kube-service-account-token"
GROUP_VERSION = "mlmodelscope.org/v1alpha1"


@contextlib.asynccontextmanager
async def kube_api() -> AsyncIterator[tuple[Any, str]]:
    """KMock serving Evaluations, remembering the Authorization header of every create."""
    kmock = pytest.importorskip("kmock", reason="the cluster launch test needs kmock (the operator tests' emulator)")

    class RecordingEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
        authorizations: list[str]

        async def _handle(self, request: Any) -> Any:
            if request.action == kmock.action.CREATE:
                self.authorizations.append(request.headers.get("Authorization", ""))
            return await super()._handle(request)

    async with RecordingEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.authorizations = []
        verbs = {"list", "watch", "get", "create", "patch", "update", "delete"}
        emulator.resources[f"{GROUP_VERSION}/evaluations"] = kmock.ResourceInfo(
            kind="Evaluation", namespaced=True, verbs=verbs, subresources={"status"}
        )
        yield emulator, str(server.url).rstrip("/")


async def stored_evaluation(url: str, namespace: str, name: str) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get(f"/apis/{GROUP_VERSION}/namespaces/{namespace}/evaluations/{name}")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


async def test_launching_in_a_cluster_creates_an_evaluation_resource(sqlite_url: str) -> None:
    async with kube_api() as (emulator, url):
        settings = fixtures.settings_for(
            sqlite_url, api_token=TOKEN, kube_api_url=url, kube_token=KUBE_TOKEN, kube_namespace="bench"
        )
        async with fixtures.running_app(settings) as app:
            request = {
                "model": "digits-cnn",
                "frameworks": ["onnxruntime", "pytorch"],
                "batch_sizes": [4, 1],
                "min_duration_s": 2,
                "arch": "arm64",
                "trace_level": "framework",
            }
            response = await app.client.post(
                "/api/v1/evaluations", json=request, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert response.status_code == 202, response.text
            namespace, name = response.json()["evaluation_id"].split("/")
            assert namespace == "bench" and name.startswith("digits-cnn-")
            document = await stored_evaluation(url, namespace, name)
            assert emulator.authorizations == [f"Bearer {KUBE_TOKEN}"]
            assert document["kind"] == "Evaluation"
            assert document["spec"] == {
                "models": ["digits-cnn"],
                "frameworks": ["onnxruntime", "pytorch"],
                "targets": [{"arch": "arm64", "accelerator": "cpu"}],
                "scenario": "single-stream",
                "mode": "both",
                "batch_sizes": [1, 4],
                "min_duration_s": 2.0,
                "trace_level": "framework",
            }
            evaluation = pytest.importorskip("mlmodelscope.operator.evaluation")
            evaluation.EvaluationSpec.model_validate(document["spec"])  # what the operator (and its CRD) accepts

            # the form: token field, redirect to the evaluation's page, which waits for the operator's runs
            form = await app.client.post(
                "/ui/launch",
                content=f"model=digits-cnn&frameworks=onnxruntime&batch_sizes=1&arch=amd64&token={TOKEN}",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert form.status_code == 303, form.text
            location = form.headers["location"]
            assert location.startswith("/ui/evaluations/bench/digits-cnn-") and location.endswith("?cluster=1")
            page = await app.client.get(location)
            assert page.status_code == 200 and 'data-testid="cluster-pending"' in page.text
            created = location.removeprefix("/ui/evaluations/bench/").removesuffix("?cluster=1")
            assert (await stored_evaluation(url, "bench", created))["spec"]["targets"] == [
                {"arch": "amd64", "accelerator": "cpu"}
            ]


async def test_an_unreachable_kubernetes_api_is_a_502_with_its_address(sqlite_url: str) -> None:
    settings = fixtures.settings_for(
        sqlite_url, api_token=TOKEN, kube_api_url=f"http://127.0.0.1:{free_port()}", kube_token=KUBE_TOKEN
    )
    async with fixtures.running_app(settings) as app:
        response = await app.client.post(
            "/api/v1/evaluations",
            json={"model": "digits-cnn", "frameworks": ["onnxruntime"]},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert response.status_code == 502
        assert "did not answer" in response.json()["detail"] and "127.0.0.1" in response.json()["detail"]
