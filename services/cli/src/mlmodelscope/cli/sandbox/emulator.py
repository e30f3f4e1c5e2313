"""KMock (kopf's recommended Kubernetes API emulator) with what a real API server does and KMock does not.

Used by the sandbox and by the operator tests. Workarounds, as documented in
/work/shared/reference/dependencies-tried.md section 4:

* resources are declared in ``emulator.resources`` (a POSTed CRD does not make them discoverable), including
  ``v1/namespaces``, ``v1/events``, ``v1/pods``, ``v1/secrets`` and the CRD resource kopf's backbone looks for;
* its core-group discovery says ``groupVersion: /v1`` (kubectl then knows no pods): ``Emulator`` says ``v1``;
* KMock assigns no ``uid``, ``generation`` or ``creationTimestamp``, and its lists carry no ``kind``: ``Emulator``
  adds them (owner references need the uid; kubectl needs the kind);
* KMock has no controllers and no garbage collector: the sandbox's kubelet stand-in plays the Job controller.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import kmock

GROUP_VERSION = "mlmodelscope.org/v1alpha1"
_VERBS = {"list", "watch", "get", "create", "patch", "update", "delete"}


def _changes_spec(data: Any) -> bool:
    return isinstance(data, dict) and "spec" in data


def now_timestamp() -> str:
    """The API server's timestamp format (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Emulator(kmock.KubernetesEmulator):
    """KMock's emulator plus what the API server does and KMock does not: set uid, generation and creation time on
    create (and a name from ``generateName``), bump the generation when the spec changes, and put a ``kind`` on
    list responses."""

    async def _handle(self, request: Any) -> Any:
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            metadata = request.data.setdefault("metadata", {})
            if "name" not in metadata and "generateName" in metadata:  # kopf's Events
                metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:8]
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("generation", 1)
            metadata.setdefault("creationTimestamp", now_timestamp())
            if request.namespace and "namespace" not in metadata:
                metadata["namespace"] = request.namespace
        elif request.action == kmock.action.UPDATE and request.subresource is None and _changes_spec(request.data):
            stored = self.objects[request.resource, request.namespace, request.name]
            generation = int(stored.get("metadata", {}).get("generation", 1)) + 1
            request.data.setdefault("metadata", {})["generation"] = generation
        return await super()._handle(request)

    async def _serve_version(self, request: Any) -> Any:
        served: Any = await super()._serve_version(request)
        if isinstance(served, dict) and str(served.get("groupVersion", "")).startswith("/"):
            served["groupVersion"] = served["groupVersion"][1:]  # the core group is "v1", not "/v1" (kubectl)
        return served

    async def _serve_list(self, request: Any) -> Any:
        listed: Any = await super()._serve_list(request)
        return {"apiVersion": "v1", "kind": "List", **listed}


def declare_resources(emulator: kmock.KubernetesEmulator) -> None:
    """Make the built-in resources the operator and kubectl use, and the mlmodelscope CRDs, discoverable."""
    info = kmock.ResourceInfo
    verbs = _VERBS
    emulator.resources["v1/namespaces"] = info(kind="Namespace", singular="namespace", namespaced=False, verbs=verbs)
    emulator.resources["v1/events"] = info(kind="Event", singular="event", namespaced=True, verbs=verbs)
    emulator.resources["v1/pods"] = info(
        kind="Pod", singular="pod", namespaced=True, verbs=verbs, subresources={"status"}
    )
    emulator.resources["v1/secrets"] = info(kind="Secret", singular="secret", namespaced=True, verbs=verbs)
    emulator.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = info(
        kind="CustomResourceDefinition", namespaced=False, verbs=verbs
    )
    emulator.resources["batch/v1/jobs"] = info(
        kind="Job", singular="job", namespaced=True, verbs=verbs, subresources={"status"}
    )
    emulator.resources[f"{GROUP_VERSION}/evaluations"] = info(
        kind="Evaluation",
        singular="evaluation",
        namespaced=True,
        verbs=verbs,
        subresources={"status"},
        shortnames={"mlev"},
    )
    for plural, kind in (("models", "Model"), ("frameworks", "Framework"), ("datasets", "Dataset")):
        emulator.resources[f"{GROUP_VERSION}/{plural}"] = info(
            kind=kind, singular=kind.lower(), namespaced=True, verbs=verbs
        )
