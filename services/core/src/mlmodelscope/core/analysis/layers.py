"""Per-layer time: the top layers of a run and the time by operator type, from its FRAMEWORK-level spans.

A layer span is a FRAMEWORK-level span that names an operator (attribute ``op_type``) and is not the framework's
whole call (``kind`` session/call/function) or a kernel; its layer name is the ``node`` attribute (ONNX Runtime's
node name) or else the span's name. This is MLModelScope's layer analysis (``layer latency`` / ``aggre_latency``):
per layer the number of calls, total and mean time, and the share of all layer time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

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


@dataclass(frozen=True)
class LayerGroup:
    """Spans of one layer with one op type, aggregated (what a database GROUP BY returns)."""

    name: str
    op_type: str
    calls: int
    total_ns: int


def groups_of(spans: Iterable[Span]) -> list[LayerGroup]:
    """Aggregate layer spans (``is_layer``) by (layer name, op type)."""
    totals: dict[tuple[str, str], list[int]] = {}
    for span in spans:
        if not is_layer(span):
            continue
        key = (str(span.attributes.get("node") or span.name), str(span.attributes["op_type"]))
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
