"""The Evaluation CRD's CEL rules (``x-kubernetes-validations``) refuse at admission what the pydantic models refuse.

KMock does not evaluate CEL, so admission is reproduced here as the API server does it: the object is defaulted
from the structural schema, converted to CEL values by the schema's types (a ``number`` is a double even when
written as 10), and every rule of the generated CRD in crds/ runs with ``self`` bound to the object it is declared
on (each list item for a rule on the items). The interpreter is cel-python, a CEL implementation independent of
ours. Every case is also given to the pydantic model, which must refuse exactly the same specs, so that local
mode, the operator and the API server agree.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import celpy
import pytest
import yaml
from celpy import celtypes
from pydantic import ValidationError

from mlmodelscope.operator.evaluation import MAX_MATRIX_RUNS, Evaluation
from tests.support.operator_schema import admission_errors, load_crd
from tests.support.paths import REPO

_ENV = celpy.Environment()


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = load_crd("Evaluation")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _defaulted(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` with the schema's defaults filled in, as the API server does before validating."""
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for name, child in schema["properties"].items():
            if name not in out and "default" in child:
                out[name] = copy.deepcopy(child["default"])
            if name in out:
                out[name] = _defaulted(out[name], child)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_defaulted(item, schema["items"]) for item in value]
    return value


def _cel(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` as the CEL value the API server binds, typed by the schema."""
    if value is None:
        return None
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return celpy.json_to_cel(value)
    kind = schema.get("type")
    if kind == "object":
        fields = schema.get("properties") or {}
        values = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else {}
        return celtypes.MapType(
            {celtypes.StringType(k): _cel(v, fields.get(k, values or {})) for k, v in value.items()}
        )
    if kind == "array":
        return celtypes.ListType([_cel(item, schema.get("items") or {}) for item in value])
    if kind == "number":
        return celtypes.DoubleType(value)
    if kind == "integer":
        return celtypes.IntType(value)
    if kind == "boolean":
        return celtypes.BoolType(value)
    if kind == "string":
        return celtypes.StringType(value)
    return celpy.json_to_cel(value)


def _evaluate(expression: str, bound: Any) -> Any:
    return _ENV.program(_ENV.compile(expression)).evaluate({"self": bound})


def _rule_errors(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    for rule in schema.get("x-kubernetes-validations") or []:
        outcome = _evaluate(rule["rule"], _cel(value, schema))
        assert isinstance(outcome, celtypes.BoolType), f"{path}: {rule['rule']} gave {outcome!r}, not a bool"
        if not outcome:
            message = rule["message"]
            if "messageExpression" in rule:
                message = str(_evaluate(rule["messageExpression"], _cel(value, schema)))
            errors.append(f"{path}: {message}")
    if isinstance(value, dict):
        for name, child in (schema.get("properties") or {}).items():
            if value.get(name) is not None:
                errors.extend(_rule_errors(value[name], child, f"{path}.{name}"))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors.extend(_rule_errors(item, schema["items"], f"{path}[{i}]"))
    return errors


def cel_admission_errors(document: dict[str, Any]) -> list[str]:
    """What the CRD's CEL rules say about ``document`` once defaulted (empty: admitted)."""
    schema = _schema()
    return _rule_errors(_defaulted(document, schema), schema, "")


def _refused_by_pydantic(document: dict[str, Any]) -> str | None:
    try:
        Evaluation.model_validate(document)
    except ValidationError as e:
        return str(e)
    return None


def _minimal() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(
        (REPO / "assets/examples/evaluation-minimal.yaml").read_text(encoding="utf-8")
    )
    return document


def test_the_crd_declares_the_cross_field_rules():
    schema = _schema()
    spec = schema["properties"]["spec"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert len(rules) == 4 and any("target_qps" in r for r in rules)
    target = spec["properties"]["targets"]["items"]
    assert [r["rule"] for r in target["x-kubernetes-validations"]] == ["self.accelerator != 'cpu' || self.count == 1"]
    for rule in [*spec["x-kubernetes-validations"], *target["x-kubernetes-validations"]]:
        assert set(rule) <= {"rule", "message", "messageExpression"}, rule  # what Kubernetes 1.27 (the chart's) knows
        assert rule["message"]


EXAMPLES = sorted((REPO / "assets" / "examples").glob("evaluation*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_evaluation_passes_the_rules(path):
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        assert cel_admission_errors(document) == []
        assert _refused_by_pydantic(document) is None


Change = Callable[[dict[str, Any]], None]
REFUSED: list[tuple[str, Change, str]] = [
    (
        "server without target_qps",
        lambda s: s.update(scenario="server"),
        ".spec: the server scenario needs target_qps",
    ),
    (
        "cpu target with two devices",
        lambda s: s.update(targets=[{"arch": "amd64", "count": 2}]),
        ".spec.targets[0]: count is the number of devices per run",
    ),
    (
        "explicit cpu target with two devices, second target",
        lambda s: s.update(targets=[{"arch": "amd64", "accelerator": "gpu"}, {"arch": "arm64", "count": 3}]),
        ".spec.targets[1]: count is the number of devices per run",
    ),
    (
        "max_duration_s below the default min_duration_s",
        lambda s: (s.pop("min_duration_s"), s.update(max_duration_s=5)),  # the default, 10, applies
        ".spec: max_duration_s must be at least min_duration_s",
    ),
    (
        "max_duration_s below min_duration_s",
        lambda s: s.update(min_duration_s=60, max_duration_s=30.5),
        ".spec: max_duration_s must be at least min_duration_s",
    ),
    (
        "max_query_count below min_query_count",
        lambda s: s.update(min_query_count=500, max_query_count=100),
        ".spec: max_query_count must be at least min_query_count",
    ),
    (
        "a matrix over the bound",
        lambda s: s.update(
            models=[f"m{i}" for i in range(50)], frameworks=[f"f{i}" for i in range(5)], batch_sizes=[1, 2, 4, 8, 16]
        ),
        f".spec: the matrix models x frameworks x targets x batch_sizes has 1250 runs; at most {MAX_MATRIX_RUNS} "
        "are allowed",
    ),
]


@pytest.mark.parametrize(("change", "expected"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_cross_field_violations_are_refused_at_admission_and_by_pydantic(change: Change, expected: str):
    document = _minimal()
    change(document["spec"])
    assert admission_errors(document) == []  # the per-field schema admits it: only the CEL rule catches it
    errors = cel_admission_errors(document)
    assert len(errors) == 1 and errors[0].startswith(expected), errors
    assert _refused_by_pydantic(document) is not None


ADMITTED: list[tuple[str, Change]] = [
    ("server with target_qps", lambda s: s.update(scenario="server", target_qps=50)),
    ("server accuracy-only run needs no rate", lambda s: s.update(scenario="server", mode="accuracy")),
    ("gpu target with two devices", lambda s: s.update(targets=[{"arch": "amd64", "accelerator": "gpu", "count": 2}])),
    ("cpu target repeated", lambda s: s.update(targets=[{"arch": "amd64", "repeats": 5}])),
    ("max_duration_s equal to min_duration_s", lambda s: s.update(min_duration_s=30, max_duration_s=30)),
    ("max_query_count above min_query_count", lambda s: s.update(max_query_count=1000)),
    (
        "a matrix exactly at the bound",
        lambda s: s.update(
            models=[f"m{i}" for i in range(50)],
            frameworks=[f"f{i}" for i in range(5)],
            targets=[{"arch": "amd64"}, {"arch": "arm64"}],
            batch_sizes=[1, 2],
        ),
    ),
]


@pytest.mark.parametrize("change", [c[1] for c in ADMITTED], ids=[c[0] for c in ADMITTED])
def test_consistent_specs_are_admitted_by_both(change: Change):
    document = _minimal()
    change(document["spec"])
    assert admission_errors(document) == []
    assert cel_admission_errors(document) == []
    assert _refused_by_pydantic(document) is None
