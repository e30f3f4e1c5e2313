"""Columnar span storage: span_columns messages in, one row per batch, and every read (spans, derived query
records, counts, layer breakdown, timeline, streamed Chrome trace, metrics) equal to what the spans say."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from mlmodelscope.agent.bus.column_messages import column_messages
from mlmodelscope.agent.run import query_parents, query_records
from mlmodelscope.collector.analysis import layer_groups, run_timeline, sample_of
from mlmodelscope.collector.metrics import RunLabels
from mlmodelscope.collector.storage import reads, schema, span_store
from mlmodelscope.collector.storage.aggregates import load_snapshot
from mlmodelscope.collector.storage.database import Database
from mlmodelscope.collector.storage.ingest import Ingestor, IngestOutcome, Rejection
from mlmodelscope.collector.storage.message_checks import decode_message
from mlmodelscope.collector.trace_export import chrome_trace
from mlmodelscope.core.analysis import layers as layer_analysis
from mlmodelscope.core.analysis.query_samples import QuerySample
from mlmodelscope.core.analysis.timeline import timeline
from mlmodelscope.core.messages import Envelope, SpanColumnBatch, envelope_json
from mlmodelscope.core.span_blob import decode_columns, encode_columns, span_columns_payload
from mlmodelscope.core.span_columns import SpanColumns
from mlmodelscope.core.tracing.chrome import to_chrome_trace, validate_chrome_trace
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from tests.support import perfetto_protos
from tests.support.collector import LABELS, RunningApp, run_started, running_app, settings_for

RUN = "run-col"
EPOCH_OFFSET_NS = 1_700_000_000_000_000_000


def traced_run(run_id: str = RUN, *, queries: int = 40, operators: int = 3) -> list[Span]:
    """Phases, MODEL predict spans under each run phase (with their integer attributes), FRAMEWORK operators
    under the first performance queries (string and integer attributes, a float, overlapping spans)."""
    spans = [
        Span(run_id=run_id, span_id=1, name="evaluation", level=TraceLevel.APPLICATION, start_ns=0, end_ns=10**9),
        Span(
            run_id=run_id,
            span_id=2,
            parent_id=1,
            name="accuracy_run",
            level=TraceLevel.APPLICATION,
            start_ns=1,
            end_ns=4 * 10**8,
            attributes={"mode": "accuracy"},
        ),
        Span(
            run_id=run_id,
            span_id=3,
            parent_id=1,
            name="performance_run",
            level=TraceLevel.APPLICATION,
            start_ns=5 * 10**8,
            end_ns=9 * 10**8,
        ),
    ]
    next_id = 10
    for parent, base in ((2, 10**6), (3, 6 * 10**8)):
        for seq in range(queries):
            start = base + seq * 1_000_000
            model_id = next_id
            spans.append(
                Span(
                    run_id=run_id,
                    span_id=model_id,
                    parent_id=parent,
                    name="predict",
                    level=TraceLevel.MODEL,
                    start_ns=start,
                    end_ns=start + 400_000 + 1_000 * (seq % 7),
                    attributes={"seq": seq, "first_item": seq * 2, "item_count": 2},
                )
            )
            next_id += 1
            if parent == 3 and seq < 5:
                for op in range(operators):
                    spans.append(
                        Span(
                            run_id=run_id,
                            span_id=next_id,
                            parent_id=model_id,
                            name=f"op{op}",
                            level=TraceLevel.FRAMEWORK,
                            start_ns=start + 10 + op * 50_000,
                            end_ns=start + 80_000 + op * 50_000,  # overlaps the next operator: a second lane
                            attributes={"node": f"n{op}", "op_type": "Conv" if op else "Relu", "depth": 0, "w": 0.5},
                        )
                    )
                    next_id += 1
    return spans


def envelopes_of(spans: list[Span], run_id: str = RUN, per_message: int = 16) -> list[Envelope]:
    sequences: dict[str, int] = {}

    def reserve(kind: str) -> int:
        sequences[kind] = sequences.get(kind, -1) + 1
        return sequences[kind]

    messages = column_messages(run_id, SpanColumns.from_spans(spans), query_parents(spans), reserve, per_message)
    return [decode_message(data) for _, _, data in messages]


def ingest_all(ingestor: Ingestor, envelopes: list[Envelope]) -> None:
    for envelope in envelopes:
        assert ingestor.ingest(envelope) is IngestOutcome.INSERTED


def _sorted(spans: list[Span]) -> list[Span]:
    return sorted(spans, key=lambda s: (s.start_ns, s.span_id))


def test_columns_round_trip_any_attributes() -> None:
    spans = traced_run(queries=3)
    spans.append(spans[-1].model_copy(update={"span_id": 999, "attributes": {"seq": "not a number", "flag": True}}))
    columns = decode_columns(encode_columns(SpanColumns.from_spans(spans)))
    assert [s.model_dump() for s in columns.spans(RUN)] == [s.model_dump() for s in spans]
    assert "seq" not in columns.ints  # one span has a text seq: the key stays in the JSON part for all


def test_each_message_is_one_row_and_every_read_equals_the_spans(database: Database, ingestor: Ingestor) -> None:
    spans = traced_run()
    envelopes = envelopes_of(spans)
    ingest_all(ingestor, [run_started(RUN), *envelopes])
    with database.read() as connection:
        assert connection.execute(select(func.count()).select_from(schema.span_batches)).scalar_one() == len(envelopes)
        assert connection.execute(select(func.count()).select_from(schema.spans)).scalar_one() == 0
        assert connection.execute(select(func.count()).select_from(schema.queries)).scalar_one() == 0
        assert reads.list_spans(connection, RUN) == _sorted(spans)
        records = sorted((r.model_dump() for r in query_records(spans)), key=lambda r: (r["mode"], r["seq"]))
        assert reads.list_queries(connection, RUN, None) == records
        assert reads.list_queries(connection, RUN, "accuracy") == [r for r in records if r["mode"] == "accuracy"]
        detail = reads.get_run(connection, RUN)
        assert detail is not None
        assert (detail["received_span_count"], detail["received_query_count"]) == (len(spans), len(records))
        performance = [r for r in records if r["mode"] == "performance"]
        expected = QuerySample.from_records(performance)
        sample = sample_of(connection, RUN)
        assert sample.sorted_latency_ns.tolist() == expected.sorted_latency_ns.tolist()
        assert sample.gaps_ns.tolist() == expected.gaps_ns.tolist()
        groups = {(g.name, g.op_type): (g.calls, g.total_ns) for g in layer_groups(connection, RUN)}
        truth = {(g.name, g.op_type): (g.calls, g.total_ns) for g in layer_analysis.groups_of(spans)}
        assert groups == truth and len(groups) == 3
        shown = run_timeline(connection, RUN, queries=3)
        assert shown == timeline(spans, queries=3).model_copy(update={"span_count": len(spans)})


def test_a_redelivery_and_the_same_spans_under_a_new_sequence_add_nothing(
    database: Database, ingestor: Ingestor
) -> None:
    spans = traced_run(queries=5)
    (envelope,) = envelopes_of(spans, per_message=1_000)
    assert ingestor.ingest(envelope) is IngestOutcome.INSERTED
    assert ingestor.ingest(envelope) is IngestOutcome.DUPLICATE
    assert isinstance(envelope.payload, SpanColumnBatch)
    again = Envelope(
        message_id=f"{RUN}:span_columns:7", run_id=RUN, sequence=7, payload=envelope.payload
    )  # re-sent under a new id: a new message, the same spans
    assert ingestor.ingest(again) is IngestOutcome.INSERTED
    with database.read() as connection:
        assert reads.list_spans(connection, RUN) == _sorted(spans)
        assert connection.execute(select(func.count()).select_from(schema.span_batches)).scalar_one() == 1
    assert ingestor.metrics is not None
    assert ingestor.metrics.snapshot().spans_ingested == len(spans)


def _raw(columns: SpanColumns, *, span_count: int | None = None, blob: str | None = None) -> bytes:
    payload = json.loads(span_columns_payload(columns))
    if span_count is not None:
        payload["span_count"] = span_count
    if blob is not None:
        payload["columns"] = blob
    return envelope_json(RUN, "span_columns", 0, json.dumps(payload))


@pytest.mark.parametrize(
    ("case", "detail"),
    [
        ("not base64", "span_columns payload"),
        ("not zlib", "not zlib"),
        ("count", "says 3 spans"),
        ("backwards", "ends before it starts"),
        ("twice", "same span id twice"),
        ("nul", "NUL"),
    ],
)
def test_columns_that_are_not_valid_spans_are_dead_lettered(ingestor: Ingestor, case: str, detail: str) -> None:
    spans = traced_run(queries=1)[:4]
    columns = SpanColumns.from_spans(spans)
    if case == "not base64":
        data = _raw(columns, blob="***")
    elif case == "not zlib":
        data = _raw(columns, blob="aGVsbG8=")
    elif case == "count":
        data = _raw(columns, span_count=3)
    elif case == "backwards":
        data = _raw(SpanColumns.from_spans([spans[0].model_copy(update={"end_ns": 0, "start_ns": 5})]))
    elif case == "twice":
        data = _raw(SpanColumns.from_spans([spans[0], spans[0]]))
    else:
        data = _raw(SpanColumns.from_spans([spans[0].model_copy(update={"name": "a\x00b"})]))
    outcome = ingestor.ingest_bytes(data, subject=f"mlmodelscope.runs.{RUN}.span_columns")
    assert isinstance(outcome, Rejection)
    assert outcome.reason == "invalid" and detail in outcome.detail


def test_metrics_of_columnar_queries_are_the_same_live_and_after_a_restart(
    database: Database, ingestor: Ingestor
) -> None:
    spans = traced_run()
    envelopes = envelopes_of(spans)
    # Half the batches arrive before run_started (counted when the labels come), half after.
    ingest_all(ingestor, [*envelopes[:3], run_started(RUN), *envelopes[3:]])
    assert ingestor.metrics is not None
    live = ingestor.metrics.snapshot()
    with database.read() as connection:
        stored = load_snapshot(connection)
    labels = RunLabels(**LABELS)
    records = query_records(spans)
    assert live.inferences[labels] == stored.inferences[labels] == sum(r.item_count for r in records)
    performance = [r.end_ns - r.start_ns for r in records if r.mode == "performance"]
    for snapshot in (live, stored):
        assert snapshot.latency[labels].count == len(performance)
        assert snapshot.latency[labels].sum_ns == sum(performance)
    assert live.latency[labels].counts == stored.latency[labels].counts
    assert live.spans_ingested == stored.spans_ingested == len(spans)


def _events(document: dict[str, Any]) -> list[str]:
    return sorted(json.dumps(event, sort_keys=True) for event in document["traceEvents"])


@pytest.mark.parametrize("epoch_offset_ns", [EPOCH_OFFSET_NS, 0, 123_456_789])
def test_the_streamed_trace_is_the_chrome_trace_of_the_spans(
    database: Database, ingestor: Ingestor, epoch_offset_ns: int
) -> None:
    """Today's epochs (ts written from integers) and small clocks (repr of floats) give the same numbers."""
    spans = traced_run(queries=6)
    ingest_all(ingestor, [run_started(RUN), *envelopes_of(spans)])
    with database.read() as connection:
        columns = span_store.run_columns(connection, RUN)
    export = chrome_trace(columns, RUN, epoch_offset_ns=epoch_offset_ns, process_name="m f")
    document = json.loads(b"".join(export.chunks))
    validate_chrome_trace(document)
    expected = to_chrome_trace(spans, epoch_offset_ns=epoch_offset_ns, process_name="m f")
    assert _events(document) == _events(expected)
    assert document["metadata"] == expected["metadata"] and export.replaced == []
    lanes = {event["tid"] for event in document["traceEvents"] if event.get("cat") == "framework"}
    assert lanes == {3, 3001}  # the overlapping operators moved to a second lane, as chrome.py places them


def test_reads_of_a_level_or_a_window_skip_the_rest(database: Database, ingestor: Ingestor) -> None:
    spans = traced_run()
    ingest_all(ingestor, [run_started(RUN), *envelopes_of(spans)])
    with database.read() as connection:
        model = span_store.run_columns(connection, RUN, levels=[TraceLevel.MODEL])
        window = span_store.run_columns(connection, RUN, start_ns=6 * 10**8, end_ns=6 * 10**8 + 2_000_000)
    assert sorted(model.span_id.tolist()) == sorted(s.span_id for s in spans if s.level == TraceLevel.MODEL)
    inside = [s.span_id for s in spans if s.end_ns >= 6 * 10**8 and s.start_ns <= 6 * 10**8 + 2_000_000]
    assert sorted(window.span_id.tolist()) == sorted(inside)


@pytest.fixture
async def collector(sqlite_url: str) -> AsyncIterator[RunningApp]:
    async with running_app(settings_for(sqlite_url)) as running:
        for envelope in [run_started(RUN), *envelopes_of(traced_run(queries=6))]:
            running.runtime.ingestor.ingest(envelope)
        yield running


@pytest.mark.anyio
async def test_the_trace_endpoint_filters_by_level_and_time(collector: RunningApp) -> None:
    client = collector.client
    whole = (await client.get(f"/api/v1/runs/{RUN}/trace")).json()
    validate_chrome_trace(whole)
    model = (await client.get(f"/api/v1/runs/{RUN}/trace", params={"level": "model"})).json()
    categories = {event["cat"] for event in model["traceEvents"] if event["ph"] == "X"}
    assert categories == {"application", "model"}
    window = {"from_ns": 6 * 10**8, "to_ns": 6 * 10**8 + 1}
    cut = (await client.get(f"/api/v1/runs/{RUN}/trace", params=window)).json()
    names = sorted(event["name"] for event in cut["traceEvents"] if event["ph"] == "X")
    assert names == ["evaluation", "performance_run", "predict"]
    assert (await client.get(f"/api/v1/runs/{RUN}/trace", params={"level": "deep"})).status_code == 422


@pytest.mark.anyio
async def test_the_trace_endpoint_writes_perfetto_protobuf_with_the_same_filters(collector: RunningApp) -> None:
    client = collector.client
    response = await client.get(f"/api/v1/runs/{RUN}/trace", params={"format": "perfetto"})
    assert response.headers["content-type"] == "application/x-protobuf"
    _, found = perfetto_protos.slices(perfetto_protos.decode(response.content))
    chrome = (await client.get(f"/api/v1/runs/{RUN}/trace")).json()
    complete = [event for event in chrome["traceEvents"] if event["ph"] == "X"]
    assert sorted(r["args"]["span_id"] for r in found) == sorted(e["args"]["span_id"] for e in complete)
    model = await client.get(f"/api/v1/runs/{RUN}/trace", params={"format": "perfetto", "level": "model"})
    _, found = perfetto_protos.slices(perfetto_protos.decode(model.content))
    assert {record["category"] for record in found} == {"application", "model"}
    assert (await client.get(f"/api/v1/runs/{RUN}/trace", params={"format": "svg"})).status_code == 422


def test_a_run_read_while_it_ingests_keeps_one_decoded_copy(database: Database, ingestor: Ingestor) -> None:
    """Each new batch names a new state of the run; the cache replaces the run's earlier state instead of keeping
    one copy per poll of a live run page."""
    span_store.clear_cache()
    spans = traced_run(queries=30)
    envelopes = envelopes_of(spans, per_message=8)
    assert len(envelopes) >= 3
    ingest_all(ingestor, [run_started(RUN), envelopes[0]])
    seen = []
    for envelope in envelopes[1:]:
        ingest_all(ingestor, [envelope])
        with database.read() as connection:
            seen.append(len(reads.list_spans(connection, RUN)))
        assert [key[1] for key in span_store._cache] == [RUN]
    assert seen == sorted(set(seen))  # every read saw the run grow
    with database.read() as connection:
        assert reads.list_spans(connection, RUN) == _sorted(spans)
