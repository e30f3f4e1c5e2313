"""Per-layer time: the top layers of a run and the time by operator type, from its FRAMEWORK-level spans.

A layer span is a FRAMEWORK-level span that names an operator (attribute ``op_type``) and is not the framework's
whole call (``kind`` session/call/function) or a kernel; its layer name is the ``node`` attribute (ONNX Runtime's
node name) or else the span's name. This is MLModelScope's layer analysis (``layer latency`` / ``aggre_latency``):
per layer the number of calls, total and mean time, and the share of all layer time.

Op types are grouped by the canonical ``op_type`` (``core.tracing.op_types``: ``Conv2D`` whether TensorFlow ran
``_MklNativeFusedConv2D`` or ``_FusedConv2D`` and whether ONNX Runtime said ``Conv``), so breakdowns compare across
CPUs and frameworks. Spans recorded before op types were canonical (no ``framework_op`` attribute) are mapped when
read. Only the ops the model itself called count (``depth`` 0 or absent): PyTorch also reports the ops each op
calls (``aten::conv2d`` > ``aten::convolution`` > ...), and counting those would count the same time again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.tracing.op_types import canonical_op
from mlmodelscope.core.tracing.spans import Span, TraceLevel

DEFAULT_TOP = 10
WHOLE_CALL_KINDS = frozenset({"session", "call", "function", "kernel"})


class LayerRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    op_type: str
    calls: int
    total_ns: int
    mean_ns: float
    share: float = Field(description="Of all layer time in the run (0..1).")


class OpTypeRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    op_type: str
    calls: int
    total_ns: int
    share: float


class LayerBreakdown(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    layer_spans: int = Field(description="FRAMEWORK-level operator spans found (0: not traced at that level).")
    total_ns: int
    layer_count: int = Field(description="Distinct layers.")
    top_layers: list[LayerRow]
    op_types: list[OpTypeRow]


def is_layer(span: Span) -> bool:
    return (
        span.level == TraceLevel.FRAMEWORK
        and "op_type" in span.attributes
        and str(span.attributes.get("kind", "")) not in WHOLE_CALL_KINDS
    )


def counts_in_breakdown(op_type: object, kind: object, depth: object) -> bool:
    """Whether an operator span with these attributes is a layer of the breakdown (see the module docstring)."""
    if op_type is None or str(kind or "") in WHOLE_CALL_KINDS:
        return False
    try:
        return not depth or float(str(depth)) == 0
    except ValueError:
        return True


def canonical_op_type(op_type: str, framework: object, framework_op: object) -> str:
    """The canonical op type of a layer span: ``op_type`` itself, or, for a span recorded before op types were
    canonical (no ``framework_op``), its mapping in the framework's table."""
    if framework_op is not None or not framework:
        return op_type
    return canonical_op(str(framework), op_type).canonical


@dataclass(frozen=True)
class LayerGroup:
    """Spans of one layer with one op type, aggregated (what a database GROUP BY returns)."""

    name: str
    op_type: str
    calls: int
    total_ns: int


def groups_of(spans: Iterable[Span]) -> list[LayerGroup]:
    """Aggregate the breakdown's layer spans (``is_layer``, ``counts_in_breakdown``) by (layer name, canonical op
    type)."""
    totals: dict[tuple[str, str], list[int]] = {}
    for span in spans:
        attributes = span.attributes
        if not is_layer(span) or not counts_in_breakdown(
            attributes["op_type"], attributes.get("kind"), attributes.get("depth")
        ):
            continue
        op_type = canonical_op_type(
            str(attributes["op_type"]), attributes.get("framework"), attributes.get("framework_op")
        )
        key = (str(attributes.get("node") or span.name), op_type)
        entry = totals.setdefault(key, [0, 0])
        entry[0] += 1
        entry[1] += span.end_ns - span.start_ns
    return [LayerGroup(name, op_type, calls, ns) for (name, op_type), (calls, ns) in totals.items()]


def breakdown(spans: Iterable[Span], top: int = DEFAULT_TOP) -> LayerBreakdown:
    return breakdown_of_groups(groups_of(spans), top)


def breakdown_of_groups(groups: Iterable[LayerGroup], top: int = DEFAULT_TOP) -> LayerBreakdown:
    layers: dict[str, list[int]] = {}  # name -> [calls, total_ns]
    layer_ops: dict[str, str] = {}
    ops: dict[str, list[int]] = {}
    count = 0
    total = 0
    for group in groups:
        count += group.calls
        total += group.total_ns
        entry = layers.setdefault(group.name, [0, 0])
        entry[0] += group.calls
        entry[1] += group.total_ns
        layer_ops.setdefault(group.name, group.op_type)
        op_entry = ops.setdefault(group.op_type, [0, 0])
        op_entry[0] += group.calls
        op_entry[1] += group.total_ns

    def share(ns: int) -> float:
        return ns / total if total > 0 else 0.0

    ranked = sorted(layers.items(), key=lambda item: (-item[1][1], item[0]))[:top]
    return LayerBreakdown(
        layer_spans=count,
        total_ns=total,
        layer_count=len(layers),
        top_layers=[
            LayerRow(name=name, op_type=layer_ops[name], calls=calls, total_ns=ns, mean_ns=ns / calls, share=share(ns))
            for name, (calls, ns) in ranked
        ],
        op_types=[
            OpTypeRow(op_type=op, calls=calls, total_ns=ns, share=share(ns))
            for op, (calls, ns) in sorted(ops.items(), key=lambda item: (-item[1][1], item[0]))
        ],
    )
