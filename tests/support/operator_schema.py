"""Validating custom resources against a generated CRD's openAPIV3Schema, as the API server does at admission.

The CRD schema is OpenAPI 3.0 (``nullable``, boolean ``exclusiveMinimum``); jsonschema speaks Draft 7. This
translation keeps the meaning, and adds ``additionalProperties: false`` wherever properties are declared (and
unknown fields are not preserved), which is what the API server does with ``fieldValidation=Strict`` (kubectl's
default): an unknown field is rejected, not silently pruned.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import yaml

from tests.support.paths import REPO

CRDS = REPO / "crds"


def _dropped(key: str, value: Any) -> bool:
    boolean_bound = key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(value, bool)
    return boolean_bound or key == "nullable" or key.startswith("x-kubernetes-")


def _draft7(node: Any) -> Any:
    if isinstance(node, list):
        return [_draft7(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties",):
            out[key] = {name: _draft7(schema) for name, schema in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _draft7(value)
        elif _dropped(key, value):
            continue
        else:
            out[key] = value
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if node.get(bound) is True:
            out[bound] = out.pop(limit)
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def load_crd(kind: str) -> dict[str, Any]:
    for path in sorted(CRDS.glob("*.yaml")):
        document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        if document["spec"]["names"]["kind"] == kind:
            return document
    raise AssertionError(f"no CRD for kind {kind} in {CRDS}")


def validator(kind: str) -> jsonschema.Draft7Validator:
    schema = load_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(_draft7(schema))


def admission_errors(document: dict[str, Any]) -> list[str]:
    """Why the API server would reject ``document`` (empty when it would admit it)."""
    errors = validator(document["kind"]).iter_errors(document)
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
