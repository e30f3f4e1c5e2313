"""Per-layer time: the top layers of a run and the time by operator type, from its FRAMEWORK-level spans.

A layer span is a FRAMEWORK-level span that names an operator (attribute ``op_type``) and is not the framework's
whole call (``kind`` session/call/function) or a kernel; its layer name is the ``node`` attribute (ONNX Runtime's
node name) or else the span's name. This is MLModelScope's layer analysis (``layer latency`` / ``aggre_latency``):
per layer the number of calls, total and mean time, and the share of all layer time.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.tracing.spans import Span, TraceLevel

DEFAULT_TOP = 10
_WHOLE_CALL_KINDS = frozenset({"session", "call", "function", "kernel"})


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
        and str(span.attributes.get("kind", "")) not in _WHOLE_CALL_KINDS
    )


def breakdown(spans: Iterable[Span], top: int = DEFAULT_TOP) -> LayerBreakdown:
    layers: dict[str, list[int]] = {}  # name -> [calls, total_ns]
    layer_ops: dict[str, str] = {}
    ops: dict[str, list[int]] = {}
    count = 0
    total = 0
    for span in spans:
        if not is_layer(span):
            continue
        count += 1
        duration = span.end_ns - span.start_ns
        total += duration
        op_type = str(span.attributes["op_type"])
        name = str(span.attributes.get("node") or span.name)
        entry = layers.setdefault(name, [0, 0])
        entry[0] += 1
        entry[1] += duration
        layer_ops.setdefault(name, op_type)
        op_entry = ops.setdefault(op_type, [0, 0])
        op_entry[0] += 1
        op_entry[1] += duration
    share = (lambda ns: ns / total) if total > 0 else (lambda _ns: 0.0)
    ranked = sorted(layers.items(), key=lambda item: (-item[1][1], item[0]))[:top]
    return LayerBreakdown(
        layer_spans=count,
        total_ns=total,
        layer_count=len(layers),
        top_layers=[
            LayerRow(
                name=name,
                op_type=layer_ops[name],
                calls=calls,
                total_ns=ns,
                mean_ns=ns / calls,
                share=share(ns),
            )
            for name, (calls, ns) in ranked
        ],
        op_types=[
            OpTypeRow(op_type=op, calls=calls, total_ns=ns, share=share(ns))
            for op, (calls, ns) in sorted(ops.items(), key=lambda item: (-item[1][1], item[0]))
        ],
    )
