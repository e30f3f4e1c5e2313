"""The one profile alignment every framework profiler uses (``core.tracing.alignment``), on synthetic records.

The profilers' own tests check each framework's reading of its profile; these pin the algorithm itself: the
pairing of calls with model spans, the clock offset, the scaling, the assignment of events to calls, nesting
depth and clipping, with exact expected times.
"""

from __future__ import annotations

import pytest

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.tracing.alignment import (
    CallCount,
    CallRecord,
    ClockRule,
    EventRecord,
    ProfileSource,
    align_profile,
    clock_offset_ns,
    events_by_call,
)
from mlmodelscope.core.tracing.framework import ModelSpanTimes
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer

SOURCE = ProfileSource("onnxruntime", "the test profile", "test calls", hint="Profile the window only.")


def _tracer() -> Tracer:
    return Tracer("run", TraceLevel.FRAMEWORK)


def _timeline(spans: list[Span]) -> list[tuple[str, int, int, int]]:
    return [(s.name, s.parent_id or 0, s.start_ns, s.end_ns) for s in spans]


def _calls(*intervals: tuple[int, int], name: str | None = "call") -> list[CallRecord]:
    return [CallRecord(start, end, name, {"kind": "call"}) for start, end in intervals]


def _event(start_ns: int, end_ns: int, name: str = "op", track: int | None = None) -> EventRecord:
    return EventRecord(start_ns, end_ns, name, {"kind": "op"}, op=name, track=track)


def test_a_different_number_of_calls_is_an_error_naming_both_counts() -> None:
    calls = _calls((0, 10), (20, 30), (40, 50))
    with pytest.raises(EvaluationError) as info:
        align_profile(_tracer(), calls, [], [(1, 0, 100), (2, 100, 200)], source=SOURCE, clock=0)
    assert info.value.message == (
        "the test profile has 3 test calls but 2 model spans were recorded, so operators cannot be attributed to "
        "queries."
    )
    assert info.value.hint == "Profile the window only."
    with pytest.raises(EvaluationError, match="after 2 profiled calls whose model spans were discarded"):
        align_profile(_tracer(), calls, [], [(1, 0, 100), (2, 100, 200)], source=SOURCE, clock=0, first_call=2)
    with pytest.raises(EvaluationError, match="has 3 test calls but 4 model spans"):
        align_profile(
            _tracer(), calls, [], [(k, 0, 9) for k in range(4)], source=SOURCE, clock=0, count=CallCount.TRAILING
        )


def test_first_call_skips_the_calls_whose_model_spans_were_discarded() -> None:
    calls = _calls((0, 10), (100, 110), (200, 210))
    spans = align_profile(
        _tracer(), calls, [], [(7, 1_000, 1_050), (8, 1_100, 1_150)], source=SOURCE, clock=900, first_call=1
    )
    assert _timeline(spans) == [("call", 7, 1_000, 1_010), ("call", 8, 1_100, 1_110)]


def test_trailing_count_pairs_the_last_calls_and_allows_no_model_spans() -> None:
    calls = _calls((0, 10), (100, 110), (200, 210))
    spans = align_profile(
        _tracer(), calls, [], [(9, 5_200, 5_300)], source=SOURCE, clock=5_000, count=CallCount.TRAILING
    )
    assert _timeline(spans) == [("call", 9, 5_200, 5_210)]
    assert align_profile(_tracer(), calls, [], [], source=SOURCE, clock=0, count=CallCount.TRAILING, first_call=9) == []


def test_the_median_start_offset_places_calls_and_shifts_the_outlier_into_its_span() -> None:
    calls = _calls((100, 150), (1_100, 1_150), (2_100, 2_150))
    model: list[ModelSpanTimes] = [(1, 10_000, 10_200), (2, 11_010, 11_200), (3, 12_500, 12_700)]
    # span start - call start: 9_900, 9_910, 10_400; the median is 9_910.
    assert clock_offset_ns(ClockRule.MEDIAN_START, calls, model) == 9_910
    spans = align_profile(_tracer(), calls, [], model, source=SOURCE, clock=ClockRule.MEDIAN_START)
    assert _timeline(spans) == [
        ("call", 1, 10_010, 10_060),
        ("call", 2, 11_010, 11_060),
        ("call", 3, 12_500, 12_550),  # 2_100 + 9_910 = 12_010 is before its span: moved in, not stretched
    ]


def test_the_median_of_an_even_number_of_offsets_is_rounded() -> None:
    calls = _calls((0, 1), (10, 11))
    assert clock_offset_ns(ClockRule.MEDIAN_START, calls, [(1, 100, 200), (2, 113, 200)]) == 102  # 101.5 to even


def test_the_bracketed_offset_is_the_smallest_that_fits_every_call_else_the_median() -> None:
    calls = _calls((0, 40), (100, 130))
    fits: list[ModelSpanTimes] = [(1, 1_000, 1_050), (2, 1_095, 1_140)]
    # lower bounds 1_000, 995; upper bounds 1_010, 1_010: [1_000, 1_010] is not empty.
    assert clock_offset_ns(ClockRule.BRACKETED, calls, fits) == 1_000
    slewed: list[ModelSpanTimes] = [(1, 1_000, 1_040), (2, 1_120, 1_150)]
    # lower bounds 1_000, 1_020; upper bounds 1_000, 1_020: empty, so the median of the lower bounds.
    assert clock_offset_ns(ClockRule.BRACKETED, calls, slewed) == 1_010
    spans = align_profile(_tracer(), calls, [], slewed, source=SOURCE, clock=ClockRule.BRACKETED)
    assert _timeline(spans) == [("call", 1, 1_000, 1_040), ("call", 2, 1_120, 1_150)]


def test_without_a_common_clock_each_call_is_centred_in_its_span() -> None:
    calls = _calls((5, 45), (500, 510))
    spans = align_profile(
        _tracer(), calls, [], [(1, 1_000, 1_100), (2, 2_000, 2_011)], source=SOURCE, clock=ClockRule.CENTRED
    )
    assert _timeline(spans) == [("call", 1, 1_030, 1_070), ("call", 2, 2_000, 2_010)]  # (11 - 10) // 2 = 0


def test_a_call_longer_than_its_span_is_scaled_down_with_its_events() -> None:
    calls = _calls((1_000, 1_200))
    events = [_event(1_050, 1_150, "inner"), _event(1_000, 1_200, "whole")]
    spans = align_profile(_tracer(), calls, events, [(1, 500, 600)], source=SOURCE, clock=0)
    # scale 100 / 200: offsets and durations halve; the call fills its span.
    assert _timeline(spans) == [("call", 1, 500, 600), ("inner", 1, 525, 575), ("whole", 1, 500, 600)]


def test_a_shorter_call_is_never_stretched() -> None:
    calls = _calls((0, 20))
    spans = align_profile(_tracer(), calls, [_event(5, 15)], [(1, 1_000, 2_000)], source=SOURCE, clock=1_000)
    assert _timeline(spans) == [("call", 1, 1_000, 1_020), ("op", 1, 1_005, 1_015)]


def test_events_go_to_the_call_holding_their_start_and_others_are_dropped() -> None:
    calls = _calls((100, 200), (300, 400))
    events = [
        _event(50, 120, "before-every-call"),
        _event(100, 110, "at-first-start"),
        _event(200, 210, "at-first-end"),  # ends are inclusive
        _event(250, 260, "between-calls"),
        _event(300, 305, "at-second-start"),
        _event(399, 450, "past-second-end"),
        _event(401, 410, "after-every-call"),
    ]
    by_call = events_by_call(calls, events)
    assert [[e.name for e in call] for call in by_call] == [
        ["at-first-start", "at-first-end"],
        ["at-second-start", "past-second-end"],
    ]
    spans = align_profile(_tracer(), calls, events, [(1, 1_100, 1_300), (2, 1_300, 1_500)], source=SOURCE, clock=1_000)
    assert _timeline(spans) == [
        ("call", 1, 1_100, 1_200),
        ("at-first-start", 1, 1_100, 1_110),
        ("at-first-end", 1, 1_200, 1_210),
        ("call", 2, 1_300, 1_400),
        ("at-second-start", 2, 1_300, 1_305),
        ("past-second-end", 2, 1_399, 1_450),
    ]


def test_events_are_clipped_into_the_model_span() -> None:
    calls = _calls((0, 100))
    events = [_event(90, 180, "overruns")]
    spans = align_profile(_tracer(), calls, events, [(1, 1_000, 1_120)], source=SOURCE, clock=1_010)
    assert _timeline(spans) == [("call", 1, 1_010, 1_110), ("overruns", 1, 1_100, 1_120)]


def test_depth_counts_the_open_events_on_the_same_track_of_the_same_call() -> None:
    calls = _calls((0, 100), (200, 300))
    events = [
        _event(0, 100, "a", track=1),
        _event(10, 50, "b", track=1),
        _event(20, 30, "c", track=1),
        _event(50, 60, "d", track=1),  # b ended at 50: d is a's child, not b's
        _event(15, 40, "other-thread", track=2),
        _event(25, 26, "untracked"),
        _event(210, 220, "next-call", track=1),  # a second call starts with no open events
    ]
    spans = align_profile(_tracer(), calls, events, [(1, 0, 100), (2, 200, 300)], source=SOURCE, clock=0)
    depths = {s.name: s.attributes.get("depth") for s in spans if s.name != "call"}
    assert depths == {"a": 0, "b": 1, "c": 2, "d": 1, "other-thread": 0, "untracked": None, "next-call": 0}


def test_span_names_attributes_and_the_calls_own_span() -> None:
    calls = [CallRecord(0, 100)]  # no name: the call delimits its events but is no span
    events = [
        EventRecord(10, 20, "Conv", {"kind": "node", "input_shapes": "float[1,1,8,8]"}, op="Conv"),
        EventRecord(30, 40, "forward", {"kind": "function"}),
        EventRecord(50, 60, "x" * 300, {"kind": "op"}, op="x" * 300),
    ]
    spans = align_profile(_tracer(), calls, events, [(1, 0, 100)], source=SOURCE, clock=0)
    assert [s.level for s in spans] == [TraceLevel.FRAMEWORK] * 3
    assert spans[0].attributes == {
        "kind": "node",
        "input_shapes": "float[1,1,8,8]",
        "framework": "onnxruntime",
        "op_type": "Conv2D",
        "framework_op": "Conv",
    }
    assert spans[1].attributes == {"kind": "function", "framework": "onnxruntime"}
    assert len(spans[2].name) == 256 and spans[2].attributes["framework_op"] == "x" * 300
    assert events[0].attributes == {"kind": "node", "input_shapes": "float[1,1,8,8]"}  # records are not changed
    named = align_profile(_tracer(), _calls((0, 100), name="model_run"), [], [(1, 0, 100)], source=SOURCE, clock=0)
    assert [(s.name, s.attributes) for s in named] == [("model_run", {"kind": "call", "framework": "onnxruntime"})]


def test_nothing_below_framework_level() -> None:
    tracer = Tracer("run", TraceLevel.MODEL)
    assert align_profile(tracer, _calls((0, 1), (2, 3)), [], [(1, 0, 9)], source=SOURCE, clock=0) == []
