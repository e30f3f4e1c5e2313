"""The API paths of what the operator reads and writes: Evaluations, their Jobs, and a namespace's pods and Events.

Written once so that the reconciler, its watch cache and the chart's RBAC test (which looks for these calls in the
operator's source) agree on every path.
"""

from __future__ import annotations

from mlmodelscope.core.manifests.fields import API_VERSION

PLURAL = "evaluations"


def evaluation_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{API_VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


def jobs_path(namespace: str, name: str = "") -> str:
    base = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    return f"{base}/{name}" if name else base


def core_path(namespace: str, plural: str) -> str:
    """A core (v1) collection of a namespace: ``pods``, ``events``."""
    return f"/api/v1/namespaces/{namespace}/{plural}"
