"""A timeline of a run's trace small enough to draw: the application phases, plus a window of the first queries
of the performance run with the operators they ran.

A run traced at FRAMEWORK level has tens of thousands of spans; a page shows two views instead of all of them:
``phases`` (every APPLICATION span, the whole run) and ``window`` (the first ``queries`` MODEL-level spans of the
performance run, or of any run phase, with their descendants). Times are relative to the first span shown, in ns.
Parent links come from agents and may loop; both views walk a ``SpanForest`` (cycles broken, said in ``notes``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.analysis.layers import is_layer
from mlmodelscope.core.analysis.span_tree import SpanForest
from mlmodelscope.core.tracing.spans import Span, TraceLevel

DEFAULT_WINDOW_QUERIES = 8


class TimelineBar(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    level: str
    depth: int = Field(ge=0, description="Nesting depth within the view (lane).")
    start_ns: int
    end_ns: int


class TimelineView(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    origin_ns: int
    duration_ns: int
    bars: list[TimelineBar]


class Timeline(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    span_count: int
    phases: TimelineView
    window: TimelineView
    window_queries: int
    notes: list[str] = Field(
        default_factory=list, description="What the views could not show as recorded (e.g. cycles in parent links)."
    )


def _depths(spans: Sequence[Span]) -> dict[int, int]:
    """Nesting depth of each span; operators get a lane below the framework's whole call (their sibling)."""
    nesting = SpanForest.of(spans).depths()
    return {span.span_id: nesting[span.span_id] + (1 if is_layer(span) else 0) for span in spans}


def _view(spans: Sequence[Span]) -> TimelineView:
    if not spans:
        return TimelineView(origin_ns=0, duration_ns=0, bars=[])
    origin = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    depths = _depths(spans)
    low = min(depths.values())
    return TimelineView(
        origin_ns=origin,
        duration_ns=end - origin,
        bars=[
            TimelineBar(
                name=s.name,
                level=s.level.name.lower(),
                depth=depths[s.span_id] - low,
                start_ns=s.start_ns - origin,
                end_ns=s.end_ns - origin,
            )
            for s in sorted(spans, key=lambda s: (s.start_ns, depths[s.span_id]))
        ],
    )


def timeline(spans: Sequence[Span], queries: int = DEFAULT_WINDOW_QUERIES) -> Timeline:
    phases = [s for s in spans if s.level == TraceLevel.APPLICATION]
    by_name = {s.span_id: s for s in spans}
    run_ids = [s.span_id for s in phases if s.name == "performance_run"] or [
        s.span_id for s in phases if s.name.endswith("_run")
    ]
    model = sorted(
        (s for s in spans if s.level == TraceLevel.MODEL and (not run_ids or s.parent_id in run_ids)),
        key=lambda s: s.start_ns,
    )[:queries]
    forest = SpanForest.of(by_name.values())
    window = [by_name[span_id] for span_id in forest.descendants([s.span_id for s in model])]
    note = forest.cycle_note()
    return Timeline(
        span_count=len(spans),
        phases=_view(phases),
        window=_view(window),
        window_queries=len(model),
        notes=[note] if note else [],
    )
