"""Parent links that loop (a span that is its own parent, A -> B -> A, a longer ring) must not hang a walk or grow
memory: the core's timeline and the collector's timeline, run page and trace answer, with the cycle broken (its
spans shown as roots) and said in a note. The timeout marks only guard against the old behaviour (an endless walk)."""

from __future__ import annotations

import pytest

from mlmodelscope.core.analysis.span_tree import MAX_DEPTH, SpanForest
from mlmodelscope.core.analysis.timeline import timeline
from mlmodelscope.core.messages import Envelope, SpanBatch, message_id
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from tests.support import collector as fixtures


def _span(span_id: int, parent_id: int, level: TraceLevel = TraceLevel.MODEL, run_id: str = "r") -> Span:
    return Span(
        run_id=run_id,
        span_id=span_id,
        parent_id=parent_id,
        name=f"s{span_id}",
        level=level,
        start_ns=100 * span_id,
        end_ns=100 * span_id + 50,
    )


def test_the_forest_breaks_every_cycle_and_keeps_the_rest() -> None:
    spans = [
        _span(1, 0),  # a root with a child
        _span(2, 1),
        _span(3, 3),  # its own parent
        _span(4, 5),  # a 2-cycle
        _span(5, 4),
        _span(6, 8),  # a 3-cycle with a tail (9 -> 6)
        _span(7, 6),
        _span(8, 7),
        _span(9, 6),
        _span(10, 999),  # a parent not shown: a root
    ]
    forest = SpanForest.of(spans)
    assert forest.cycle_span_ids == {3, 4, 5, 6, 7, 8}
    depths = forest.depths()
    assert depths == {1: 0, 2: 1, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0, 9: 1, 10: 0}
    assert sorted(forest.descendants([1, 6, 3])) == [1, 2, 3, 6, 9]
    note = forest.cycle_note()
    assert note is not None and "6 spans" in note and "span 3" in note


def test_a_deep_chain_is_drawn_at_most_max_depth_deep() -> None:
    chain = [_span(1, 0)] + [_span(i, i - 1) for i in range(2, MAX_DEPTH + 20)]
    depths = SpanForest.of(chain).depths()
    assert max(depths.values()) == MAX_DEPTH and depths[2] == 1


@pytest.mark.timeout(60)
def test_a_timeline_over_self_parented_and_looping_model_spans_ends_and_says_why() -> None:
    phase = _span(1, 0, TraceLevel.APPLICATION)
    run = Span(
        run_id="r", span_id=2, parent_id=0, name="performance_run", level=TraceLevel.APPLICATION, start_ns=0, end_ns=9
    )
    spans = [
        phase,
        run,
        _span(10, 2),  # a normal query with an operator
        _span(11, 10, TraceLevel.FRAMEWORK),
        _span(12, 12),  # self-parented
        _span(13, 14, TraceLevel.FRAMEWORK),  # a loop below a query: 10 is not involved, 13 <-> 14
        _span(14, 13, TraceLevel.FRAMEWORK),
    ]
    # With no run phase every model span is a query, the self-parented one included (once). (The old walk never
    # returned here: this is the case that grew the collector until MemoryError.)
    loose = timeline([_span(12, 12), _span(20, 20), _span(21, 20, TraceLevel.FRAMEWORK)], queries=8)
    assert sorted(bar.name for bar in loose.window.bars) == ["s12", "s20", "s21"]
    assert {bar.depth for bar in loose.window.bars} == {0, 1}
    drawn = timeline(spans, queries=8)
    assert drawn.window_queries == 1
    assert sorted(bar.name for bar in drawn.window.bars) == ["s10", "s11"]
    assert drawn.notes and "3 spans" in drawn.notes[0]


def _spans_envelope(run_id: str, spans: list[Span], sequence: int) -> Envelope:
    return Envelope(
        message_id=message_id(run_id, "spans", sequence),
        run_id=run_id,
        sequence=sequence,
        payload=SpanBatch(spans=spans),
    )


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_the_collector_serves_timeline_page_and_trace_of_a_run_with_cycles(sqlite_url: str) -> None:
    run_id = "r-cycle"
    looping = [
        Span(
            run_id=run_id,
            span_id=2,
            parent_id=0,
            name="performance_run",
            level=TraceLevel.APPLICATION,
            start_ns=0,
            end_ns=10_000,
        ),
        _span(10, 2, run_id=run_id),
        _span(11, 12, TraceLevel.FRAMEWORK, run_id=run_id),  # 11 <-> 12, both below nothing real
        _span(12, 11, TraceLevel.FRAMEWORK, run_id=run_id),
        _span(13, 10, TraceLevel.FRAMEWORK, run_id=run_id),
        _span(14, 14, TraceLevel.MODEL, run_id=run_id),  # self-parented
        _span(15, 15, TraceLevel.APPLICATION, run_id=run_id),  # a self-parented phase
    ]
    # A run with no performance_run phase and a self-parented model span: the old collector walked it forever.
    loose_id = "r-loose"
    loose = [_span(12, 12, run_id=loose_id), _span(20, 20, run_id=loose_id)]
    loose.append(_span(21, 20, TraceLevel.FRAMEWORK, run_id=loose_id))
    async with fixtures.running_app(fixtures.settings_for(sqlite_url)) as app:
        app.runtime.ingestor.ingest(fixtures.run_started(loose_id))
        app.runtime.ingestor.ingest(_spans_envelope(loose_id, loose, 0))
        app.runtime.ingestor.ingest(fixtures.run_finished(loose_id, span_count=len(loose), query_count=0))
        loose_timeline = await app.client.get(f"/api/v1/runs/{loose_id}/timeline")
        assert loose_timeline.status_code == 200, loose_timeline.text
        assert sorted(bar["name"] for bar in loose_timeline.json()["window"]["bars"]) == ["s12", "s20", "s21"]
        app.runtime.ingestor.ingest(fixtures.run_started(run_id))
        app.runtime.ingestor.ingest(_spans_envelope(run_id, looping, 0))
        app.runtime.ingestor.ingest(fixtures.run_finished(run_id, span_count=len(looping), query_count=0))
        response = await app.client.get(f"/api/v1/runs/{run_id}/timeline")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["span_count"] == len(looping)
        assert sorted(bar["name"] for bar in body["window"]["bars"]) == ["s10", "s13"]
        assert sorted(bar["name"] for bar in body["phases"]["bars"]) == ["performance_run", "s15"]
        assert any("cycle" in note for note in body["notes"])
        page = await app.client.get(f"/ui/runs/{run_id}")
        assert page.status_code == 200 and 'data-testid="timeline-note"' in page.text
        trace = await app.client.get(f"/api/v1/runs/{run_id}/trace")
        assert trace.status_code == 200
        assert sum(1 for event in trace.json()["traceEvents"] if event["ph"] == "X") == len(looping)
