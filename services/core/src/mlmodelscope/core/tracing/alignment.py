"""The one alignment of a framework's own profile under the model spans, shared by every framework profiler.

Each framework profiles itself in its own clock and format, but once its profile is read into plain records,
pairing the profiled calls with the MODEL-level ``predict`` spans and placing each operator inside its call's
model span is the same algorithm for all of them. It is written once, here, so that a fix to it reaches every
framework; the adapters in ``mlmodelscope.agent.profilers`` only read their framework's profile into
``CallRecord``/``EventRecord`` (each framework's findings: docs/tracing.md). Per run, ``align_profile``:

1. pairs calls with model spans: the k-th call record belongs to the k-th call of the profiled window, so to
   model span ``k - first_call``; a different count is an error, since the pairing would be wrong
   (``CallCount.TRAILING``: more calls are allowed, and the last ones are paired);
2. maps the framework's clock onto the tracer's (``perf_counter_ns``) with one offset (``Clock``);
3. scales a call longer than its model span down to the span (never up), and moves it, never stretched, just
   far enough to lie inside the span (``framework.shift_into``);
4. gives each event to the call whose interval holds the event's start (ends inclusive); the event keeps its
   offset from its call's start and its duration, both scaled with the call, gets its nesting ``depth`` when it
   is on a ``track``, and is clipped into the model span (``framework.framework_span``).
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple, Protocol, TypeVar

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.tracing.framework import ModelSpanTimes, framework_span, shift_into
from mlmodelscope.core.tracing.spans import AttributeValue, Span, TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer

MAX_NAME_CHARS = 256
"""Span names are cut to this length (an MXNet bulked event names every op it ran)."""


_NO_ATTRIBUTES: Mapping[str, AttributeValue] = MappingProxyType({})


class CallRecord(NamedTuple):
    """One call of the predictor as the framework profiled it, in the framework's clock (ns)."""

    start_ns: int
    end_ns: int
    name: str | None = None
    """The name of the call's own span; None: the call delimits its events but is no span itself."""
    attributes: Mapping[str, AttributeValue] = _NO_ATTRIBUTES


class EventRecord(NamedTuple):
    """One operator, kernel or function the framework ran, in the framework's clock (ns).

    A tuple, not a dataclass: a profile has up to a million of them, and a tuple is the cheapest to make.
    """

    start_ns: int
    end_ns: int
    name: str
    attributes: Mapping[str, AttributeValue] = _NO_ATTRIBUTES
    op: str | None = None
    """The framework's name of the operator (``framework_span``'s ``op``); None for a function or session."""
    track: Hashable | None = None
    """Where nesting is counted (a thread): the event gets ``depth``, the number of events of its call on the
    same track still open at its start; None: no depth (``attributes`` may hold one)."""


class ClockRule(StrEnum):
    """How the offset from the framework's clock to the tracer's is found when the framework gives none."""

    MEDIAN_START = "median-start"
    """The median over the calls of (model span start - call start): the call opens right after the span does."""
    BRACKETED = "bracketed"
    """The smallest offset that puts every call inside its model span, if one does; else ``MEDIAN_START``."""
    CENTRED = "centred"
    """No common clock: each call is centred in its model span."""


Clock = int | ClockRule
"""A known offset (ns, added to the framework's times), or the rule that finds it from the calls."""


class CallCount(StrEnum):
    """How many calls a profile may hold for the model spans of the window."""

    EXACT = "exact"
    """``first_call + len(model_spans)``: the window's calls, no more, no fewer."""
    TRAILING = "trailing"
    """At least that many; the last ``len(model_spans)`` are paired (a repeated run's calls were profiled too)."""


@dataclass(frozen=True, slots=True)
class ProfileSource:
    """Which profile the records come from, as the spans and a count-mismatch error name it."""

    framework: str
    where: str
    """The profile, for errors: its path, or e.g. "the PyTorch profile"."""
    calls_are: str
    """Its calls, for errors: e.g. "predict calls in the traced window"."""
    hint: str
    """How to profile so that the calls match the model spans."""
    events_are: str = "operators"


class _Interval(Protocol):
    @property
    def start_ns(self) -> int: ...

    @property
    def end_ns(self) -> int: ...


E = TypeVar("E", bound=_Interval)


def events_by_call(calls: Sequence[_Interval], events: Iterable[E]) -> list[list[E]]:
    """The events of each call (sorted by start): those starting inside it, ends inclusive, in the given order."""
    starts = [call.start_ns for call in calls]
    by_call: list[list[E]] = [[] for _ in calls]
    for event in events:
        k = bisect.bisect_right(starts, event.start_ns) - 1
        if k >= 0 and event.start_ns <= calls[k].end_ns:
            by_call[k].append(event)
    return by_call


def paired_calls(
    calls: Sequence[CallRecord],
    model_spans: Sequence[ModelSpanTimes],
    source: ProfileSource,
    *,
    first_call: int = 0,
    count: CallCount = CallCount.EXACT,
) -> Sequence[CallRecord]:
    """The calls of ``model_spans``, in order; EvaluationError when the profile has a different number of calls."""
    expected = first_call + len(model_spans)
    if len(calls) == expected or (count == CallCount.TRAILING and len(calls) > expected):
        return calls[len(calls) - len(model_spans) :]
    skipped = f" after {first_call} profiled calls whose model spans were discarded" if first_call else ""
    raise EvaluationError(
        f"{source.where} has {len(calls)} {source.calls_are} but {len(model_spans)} model spans were recorded"
        f"{skipped}, so {source.events_are} cannot be attributed to queries.",
        hint=source.hint,
    )


def clock_offset_ns(clock: Clock, calls: Sequence[CallRecord], model_spans: Sequence[ModelSpanTimes]) -> int | None:
    """The offset from the framework's clock to the tracer's under ``clock``; None for ``CENTRED`` (or no calls)."""
    if not isinstance(clock, ClockRule):
        return clock
    if clock is ClockRule.CENTRED or not calls:
        return None
    lower = [span_start - call.start_ns for call, (_, span_start, _) in zip(calls, model_spans, strict=True)]
    if clock is ClockRule.BRACKETED:
        upper = [span_end - call.end_ns for call, (_, _, span_end) in zip(calls, model_spans, strict=True)]
        if max(lower) <= min(upper):
            return max(lower)
    return round(statistics.median(lower))


def align_profile(
    tracer: Tracer,
    calls: Sequence[CallRecord],
    events: Iterable[EventRecord],
    model_spans: Sequence[ModelSpanTimes],
    *,
    source: ProfileSource,
    clock: Clock,
    first_call: int = 0,
    count: CallCount = CallCount.EXACT,
) -> list[Span]:
    """FRAMEWORK-level spans of a profile's calls and events under ``model_spans`` (the module docstring's steps).

    ``calls`` are sorted by start; ``model_spans[0]`` is profiled call ``first_call``. Per call, its own span
    (if it has a ``name``) comes first, then its events in the given order (events on a ``track`` must be
    sorted by start, the enclosing event first). Nothing when the tracer does not record FRAMEWORK level.
    """
    if not tracer.enabled(TraceLevel.FRAMEWORK) or (count == CallCount.TRAILING and not model_spans):
        return []
    calls = paired_calls(calls, model_spans, source, first_call=first_call, count=count)
    offset_ns = clock_offset_ns(clock, calls, model_spans)
    out: list[Span] = []
    for call, call_events, parent in zip(calls, events_by_call(calls, events), model_spans, strict=True):
        call_start_ns, call_ns, scale = _placed_call(call, parent, offset_ns)
        if call.name is not None:
            out.append(
                framework_span(
                    tracer,
                    parent,
                    call_start_ns,
                    call_start_ns + call_ns,
                    call.name[:MAX_NAME_CHARS],
                    dict(call.attributes),
                    framework=source.framework,
                )
            )
        out.extend(_event_spans(tracer, parent, call, call_events, call_start_ns, scale, source.framework))
    return out


def _placed_call(call: CallRecord, parent: ModelSpanTimes, offset_ns: int | None) -> tuple[int, int, float]:
    """Where a call goes inside its model span: (start_ns, duration_ns, scale), squeezed by ``scale`` (< 1) when it
    is longer than the span, shifted by the clock offset (centred when there is none) and kept inside the span."""
    _, parent_start_ns, parent_end_ns = parent
    parent_ns = max(parent_end_ns - parent_start_ns, 0)
    call_ns = call.end_ns - call.start_ns
    scale = parent_ns / call_ns if call_ns > parent_ns else 1.0
    call_ns = round(call_ns * scale)
    centred_ns = parent_start_ns + (parent_ns - call_ns) // 2
    estimate_ns = centred_ns if offset_ns is None else call.start_ns + offset_ns
    return shift_into(estimate_ns, call_ns, parent_start_ns, parent_end_ns), call_ns, scale


def _event_spans(
    tracer: Tracer,
    parent: ModelSpanTimes,
    call: CallRecord,
    call_events: Iterable[EventRecord],
    call_start_ns: int,
    scale: float,
    framework: str,
) -> list[Span]:
    """The spans of a call's events, moved and scaled as the call was; events on a ``track`` get their nesting
    ``depth`` (how many earlier events of the track are still open)."""
    spans: list[Span] = []
    open_ends: dict[Hashable, list[int]] = {}
    for event in call_events:
        attributes = dict(event.attributes)
        if event.track is not None:
            stack = open_ends.setdefault(event.track, [])
            while stack and stack[-1] <= event.start_ns:
                stack.pop()
            attributes["depth"] = len(stack)
            stack.append(event.end_ns)
        start_ns = call_start_ns + round((event.start_ns - call.start_ns) * scale)
        end_ns = start_ns + round((event.end_ns - event.start_ns) * scale)
        spans.append(
            framework_span(
                tracer,
                parent,
                start_ns,
                end_ns,
                event.name[:MAX_NAME_CHARS],
                attributes,
                framework=framework,
                op=event.op,
            )
        )
    return spans
