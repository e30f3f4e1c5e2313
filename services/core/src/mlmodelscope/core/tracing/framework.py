"""The interface a framework-level profiler implements, and the clock alignment every implementation needs.

Frameworks profile themselves (ONNX Runtime's JSON profile, the PyTorch profiler, TensorFlow's trace viewer) in
their own clocks and formats. An adapter turns that output into FRAMEWORK-level spans that hang under the
MODEL-level ``predict`` spans the LoadGen SUT recorded, so one timeline shows a query, the operators it ran and
the hardware samples around it. The core never imports a framework: adapters live in
``mlmodelscope.agent.profilers.<framework>`` and are used only through this protocol.

Life cycle, as the runner drives it (through ``evaluation.profile_window.ProfileWindow``)::

    profiler.start()                       # after warm-up: framework work from here on is attributed
    ... LoadGen run (the SUT appends tracer.model_rows) ...
    profiler.stop()                        # after the window's N-th call (or the run's end, if sooner)
    profiler.stop()                        # again at the run's end: a no-op once stopped
    model = tracer.materialize_model_spans()
    tracer.extend(profiler.spans(tracer, model_span_times(model_in_window), first_call=k0))

Only a bounded window of calls is profiled (``EvaluationSettings.framework_trace_max_calls``): the window stops
the profiler right after the N-th call, so a profile never grows with the run's length.

Alignment contract: the k-th framework "run" event recorded between ``start`` and ``stop`` belongs to the k-th
call of the window; ``model_spans[j]`` is call ``first_call + j`` (calls before ``first_call`` were profiled but
their model spans are gone: the driver repeated a LoadGen run and discarded its rows). Every returned span has
its model span as ``parent_id`` and lies inside it on the tracer's ``perf_counter_ns`` clock. ``shift_into``
and ``clip_into`` below are the two steps that guarantee the second half, whatever the framework's own clock
says; ``alignment.align_profile`` is the one alignment every adapter uses, and ``read_trace_events`` reads the
Chrome-trace JSON that several frameworks write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.tracing.op_types import canonical_op
from mlmodelscope.core.tracing.spans import AttributeValue, Span, TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer

ModelSpanTimes = tuple[int, int, int]
"""A MODEL-level span as a framework profiler needs it: (span_id, start_ns, end_ns) on the tracer's clock."""


@runtime_checkable
class FrameworkProfiler(Protocol):
    """Turns one framework's own profile into FRAMEWORK-level spans under the model spans of a run."""

    def start(self) -> None:
        """Framework work from now on belongs to the model spans passed to ``spans`` (earlier work is warm-up)."""

    incomplete_reason: str | None
    """Set by ``spans`` when the profile covers only the first calls (the framework dropped the rest), saying why."""

    def stop(self) -> None:
        """No more work is attributed; the framework writes out its profile if it needs to. Idempotent."""

    def spans(self, tracer: Tracer, model_spans: Sequence[ModelSpanTimes], *, first_call: int = 0) -> list[Span]:
        """FRAMEWORK-level spans of the run between ``start`` and ``stop``, each inside its model span.

        ``model_spans`` are in call order, ``model_spans[0]`` being profiled call ``first_call``. Raises an
        ``MLModelScopeError`` when the profile cannot be read or does not match the model spans (e.g. a different
        number of calls). A profile the framework cut short gives spans for the calls it kept and sets
        ``incomplete_reason``.
        """
        ...


def model_span_times(spans: Iterable[Span]) -> list[ModelSpanTimes]:
    """(span_id, start_ns, end_ns) of each span, in the given order (``materialize_model_spans`` keeps call order)."""
    return [(span.span_id, span.start_ns, span.end_ns) for span in spans]


def shift_into(start_ns: int, duration_ns: int, parent_start_ns: int, parent_end_ns: int) -> int:
    """Where an interval of ``duration_ns`` estimated to start at ``start_ns`` starts once moved inside the parent.

    An interval that already fits is left where it is; one that sticks out is moved (not stretched) just far
    enough to fit; one longer than the parent starts at the parent's start (``clip_into`` trims its end).
    """
    latest_start_ns = max(parent_start_ns, parent_end_ns - duration_ns)
    return min(max(start_ns, parent_start_ns), latest_start_ns)


def clip_into(start_ns: int, end_ns: int, parent_start_ns: int, parent_end_ns: int) -> tuple[int, int]:
    """The part of [start_ns, end_ns] inside the parent (an empty interval at the nearest edge if none is)."""
    start = min(max(start_ns, parent_start_ns), parent_end_ns)
    end = min(max(end_ns, start), parent_end_ns)
    return start, end


def framework_span(
    tracer: Tracer,
    parent: ModelSpanTimes,
    start_ns: int,
    end_ns: int,
    name: str,
    attributes: dict[str, AttributeValue],
    *,
    framework: str,
    op: str | None = None,
    fused_ops: Sequence[str] = (),
) -> Span:
    """A FRAMEWORK-level span under the model span ``parent``, clipped inside it (``clip_into``).

    Every framework span is built here, so every one says its ``framework``. ``op`` is the framework's own name
    of the operator the span ran (None for a whole session/call/function): it is kept as ``framework_op``, and
    ``op_type`` is its canonical type from ``op_types.canonical_op`` (one vocabulary for all frameworks and CPUs;
    an ``input_shapes`` attribute gives dimension-agnostic ops their dimensionality), with ``fused_ops``
    (canonical, comma-separated) when the fusion names the ops it absorbed (``fused_ops`` here: the framework's
    own names of them, where its profile records them).
    """
    parent_id, parent_start_ns, parent_end_ns = parent
    start_ns, end_ns = clip_into(start_ns, end_ns, parent_start_ns, parent_end_ns)
    attributes["framework"] = framework
    if op is not None:
        op_type = canonical_op(framework, op, input_shapes=str(attributes.get("input_shapes", "")), fused_ops=fused_ops)
        attributes["op_type"] = op_type.canonical
        attributes["framework_op"] = op
        if op_type.fused_ops:
            attributes["fused_ops"] = ",".join(op_type.fused_ops)
    return Span(
        run_id=tracer.run_id,
        span_id=tracer.new_span_id(),
        parent_id=parent_id,
        name=name,
        level=TraceLevel.FRAMEWORK,
        start_ns=start_ns,
        end_ns=end_ns,
        attributes=attributes,
    )


def read_trace_events(path: Path, profile: str, hint: str, *, continuation: bool = False) -> list[dict[str, Any]]:
    """The events of a Chrome-trace JSON file (a list of events, or an object with ``traceEvents``).

    ``profile`` names it in errors ("the MXNet profile"); each problem is an ``EvaluationError`` with ``hint``.
    ``continuation``: the file may instead continue an earlier dump (``,`` + events + ``]}``), as MXNet's
    later dumps do.
    """
    try:
        body = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise EvaluationError(f"cannot read {profile} {path}: {e}", hint=hint) from e
    if continuation and body.startswith(","):
        body = '{"traceEvents": [' + body[1:]
    try:
        document = json.loads(body)
    except json.JSONDecodeError as e:
        reason = "it is empty" if not body else f"it is not JSON ({e})"
        raise EvaluationError(f"{profile} {path} cannot be used: {reason}.", hint=hint) from e
    events = document.get("traceEvents") if isinstance(document, dict) else document
    if not isinstance(events, list):
        raise EvaluationError(
            f"{profile} {path} is not a list of trace events, and has no list of trace events under 'traceEvents' "
            f"(got {type(document).__name__}).",
            hint=hint,
        )
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise EvaluationError(f"event {index} of {profile} {path} is not a JSON object.", hint=hint)
    return events
