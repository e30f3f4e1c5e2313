"""What the Kubernetes API server would say about a resource: its CRD's structural OpenAPI v3 schema, checked here.

``mlmodelscope validate`` answers "would ``kubectl apply -f`` accept this file?" without a cluster. The schema is
the one the CRDs in ``crds/`` carry, generated in-process by ``mlmodelscope.operator.crds`` from the installed
pydantic models (``tests/deploy/test_generated_files.py`` keeps the committed files equal to it), so the check needs no
repository checkout. jsonschema is not a dependency of the CLI, and the generated schemas use a small, fixed set of
keywords, so they are checked here directly, as the API server does with ``fieldValidation=Strict`` (kubectl's
default): an unknown field is rejected unless its object preserves unknown fields.

The API server enforces only the schema; pydantic (run first) enforces more. The schema still catches what
pydantic's lax parsing lets through: ``count: "2"`` (a string where the schema says integer), ``1.0`` for an
integer, a status field spelled in snake_case instead of its Kubernetes alias.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from mlmodelscope.core.manifests.loading import format_location

_MAX_VALUE_CHARS = 60


@cache
def crd_schema(kind: str) -> dict[str, Any] | None:
    """The openAPIV3Schema of ``kind``'s CRD, or None when ``kind`` has no CRD."""
    from mlmodelscope.operator.crds import KINDS, openapi_schema  # only when validate runs

    for crd_kind in KINDS:
        if crd_kind.kind == kind:
            return openapi_schema(crd_kind.model)
    return None


def crd_name(kind: str) -> str:
    from mlmodelscope.operator.crds import KINDS  # only when validate runs

    return next(k.name for k in KINDS if k.kind == kind)


def admission_problems(document: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Why the API server would refuse ``document`` (``spec.x: expected ...; found ...``); empty when it would not."""
    problems: list[str] = []
    _check(document, schema, (), problems)
    return problems


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _type_matches(value: Any, expected: str) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _check(value: Any, schema: dict[str, Any], loc: tuple[int | str, ...], problems: list[str]) -> None:
    where = format_location(loc)
    if value is None:
        return  # the API server prunes a null where the schema is not nullable; pydantic has had its say on it
    expected = schema.get("type")
    if isinstance(expected, str) and not _type_matches(value, expected):
        problems.append(f"{where}: expected {expected}; found {_describe(value)}")
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        problems.append(f"{where}: expected one of {allowed}; found {_describe(value)}")
    if isinstance(value, str):
        _check_string(value, schema, where, problems)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(value, schema, where, problems)
    elif isinstance(value, list):
        _check_array(value, schema, loc, problems)
    elif isinstance(value, dict):
        _check_object(value, schema, loc, problems)


def _check_string(value: str, schema: dict[str, Any], where: str, problems: list[str]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append(f"{where}: should be at least {schema['minLength']} characters; found {_describe(value)}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(f"{where}: should be at most {schema['maxLength']} characters; found {_describe(value)}")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        problems.append(f"{where}: should match {schema['pattern']!r}; found {_describe(value)}")


def _check_number(value: float, schema: dict[str, Any], where: str, problems: list[str]) -> None:
    if "minimum" in schema:
        low = schema["minimum"]
        if value < low or (schema.get("exclusiveMinimum") is True and value == low):
            relation = ">" if schema.get("exclusiveMinimum") is True else ">="
            problems.append(f"{where}: should be {relation} {low}; found {_describe(value)}")
    if "maximum" in schema:
        high = schema["maximum"]
        if value > high or (schema.get("exclusiveMaximum") is True and value == high):
            relation = "<" if schema.get("exclusiveMaximum") is True else "<="
            problems.append(f"{where}: should be {relation} {high}; found {_describe(value)}")


def _check_array(value: list[Any], schema: dict[str, Any], loc: tuple[int | str, ...], problems: list[str]) -> None:
    where = format_location(loc)
    if "minItems" in schema and len(value) < schema["minItems"]:
        problems.append(f"{where}: should have at least {schema['minItems']} items; found {len(value)}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append(f"{where}: should have at most {schema['maxItems']} items; found {len(value)}")
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            _check(item, items, (*loc, index), problems)


def _check_object(
    value: dict[str, Any], schema: dict[str, Any], loc: tuple[int | str, ...], problems: list[str]
) -> None:
    where = format_location(loc)
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        problems.append(f"{where}: should have at least {schema['minProperties']} entries; found {len(value)}")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        problems.append(f"{where}: should have at most {schema['maxProperties']} entries; found {len(value)}")
    for name in schema.get("required", []):
        if name not in value:
            problems.append(f"{format_location((*loc, name))}: required field is missing")
    properties: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
    for name, item in value.items():
        item_loc = (*loc, str(name))
        if name in properties:
            _check(item, properties[name], item_loc, problems)
        elif isinstance(extra, dict):
            _check(item, extra, item_loc, problems)
        elif properties and not preserve:
            problems.append(f"{format_location(item_loc)}: unknown field (remove it or check its spelling)")
