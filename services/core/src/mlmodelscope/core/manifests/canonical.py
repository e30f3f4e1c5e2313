"""The one canonical form of a resource's spec, and its sha256: what the run contract carries and results record.

Every writer of a run spec (local mode from manifest files, the collector's launcher, the operator from cluster
objects) validates a resource with the same pydantic classes and digests ``canonical_spec`` of it, so the same spec
gives the same sha256 however it was written: an explicit default and an omitted one digest alike, and the form
validates back to the same spec (a plain ``model_dump`` does not: a Dataset source refuses the fields of its other
kind). It lives beside the resources, not in the run contract, so that the registry can digest what it holds.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mlmodelscope.core.manifests.resources import Resource


def canonical_spec(resource: Resource) -> dict[str, Any]:
    """The spec of a validated resource as JSON-ready data, defaults left out."""
    return resource.spec.model_dump(mode="json", exclude_defaults=True)


def spec_sha256(spec: dict[str, Any]) -> str:
    """sha256 of a resource's spec in canonical JSON (sorted keys, no whitespace): equal specs, equal digests,
    however they were written (YAML file, kubectl apply, the API server's re-serialisation)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


__all__ = ["canonical_spec", "spec_sha256"]
