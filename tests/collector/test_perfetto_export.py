"""The Perfetto protobuf export, read back with the protobuf library itself (``tests.perfetto_protos``)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from mlmodelscope.cli.perfetto_file import PerfettoFileError, count_slices
from mlmodelscope.collector import perfetto_export, protobuf_rows
from mlmodelscope.core.span_columns import SpanColumns
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from tests.support.perfetto_protos import TRACE, slices

OFFSET_NS = 1_700_000_000_000_000_000


def spans_of_a_run(run_id: str = "r") -> list[Span]:
    """Phases, sequential queries, nested same-level spans, overlapping operators (a second lane), zero-length
    spans at a parent's start and end, and attributes of every kind."""
    span = Span
    spans = [
        span(run_id=run_id, span_id=1, name="evaluation", level=TraceLevel.APPLICATION, start_ns=0, end_ns=10_000),
        span(run_id=run_id, span_id=2, parent_id=1, name="performance_run", level=TraceLevel.APPLICATION,
             start_ns=0, end_ns=9_000, attributes={"mode": "performance", "ok": True, "w": 0.25}),
    ]  # fmt: skip
    next_id = 10
    for seq in range(4):
        start = 100 + seq * 2_000
        spans.append(
            span(run_id=run_id, span_id=next_id, parent_id=2, name="predict", level=TraceLevel.MODEL,
                 start_ns=start, end_ns=start + 1_500, attributes={"seq": seq, "first_item": seq, "item_count": 1})
        )  # fmt: skip
        model_id, next_id = next_id, next_id + 1
        for op in range(3):
            spans.append(
                span(run_id=run_id, span_id=next_id, parent_id=model_id, name=f"op{op}", level=TraceLevel.FRAMEWORK,
                     start_ns=start + op * 400, end_ns=start + op * 400 + 500, attributes={"op_type": "Conv"})
            )  # fmt: skip
            next_id += 1
        for at in (start, start + 1_500):  # zero-length, at the query's start and at its end
            spans.append(
                span(run_id=run_id, span_id=next_id, parent_id=model_id, name="mark", level=TraceLevel.MODEL,
                     start_ns=at, end_ns=at)
            )  # fmt: skip
            next_id += 1
    return spans


def decoded(columns: SpanColumns, epoch_offset_ns: int = OFFSET_NS) -> Any:
    export = perfetto_export.perfetto_trace(columns, "r", epoch_offset_ns=epoch_offset_ns, process_name="m f")
    trace = TRACE()
    trace.ParseFromString(b"".join(export.chunks))
    return trace


def test_every_span_is_one_slice_with_its_times_ids_and_attributes() -> None:
    spans = spans_of_a_run()
    tracks, found = slices(decoded(SpanColumns.from_spans(spans)))
    assert sorted(tracks.values()) == sorted(["m f r", "APPLICATION", "MODEL", "FRAMEWORK", "FRAMEWORK #2"])
    by_id = {record["args"]["span_id"]: record for record in found}
    assert len(found) == len(spans) == len(by_id)
    for span in spans:
        record = by_id[span.span_id]
        assert (record["name"], record["category"]) == (span.name, span.level.name.lower())
        assert (record["begin_ns"], record["end_ns"]) == (span.start_ns + OFFSET_NS, span.end_ns + OFFSET_NS)
        expected = {**span.attributes, "span_id": span.span_id, "parent_id": span.parent_id}
        assert record["args"] == expected
        assert record["track"].split(" #")[0] == span.level.name


def test_overlapping_spans_move_to_a_lane_and_nested_ones_stay_on_their_track() -> None:
    _, found = slices(decoded(SpanColumns.from_spans(spans_of_a_run())))
    lanes = defaultdict(set)
    for record in found:
        lanes[record["name"]].add(record["track"])
    assert lanes["op1"] == {"FRAMEWORK #2"} and lanes["op0"] == lanes["op2"] == {"FRAMEWORK"}
    assert lanes["mark"] == {"MODEL"}  # zero-length spans at a query's ends nest on (or beside) it, no extra lane


def test_an_empty_run_and_a_clock_before_the_epoch_still_decode() -> None:
    tracks, found = slices(decoded(SpanColumns.empty()))
    assert (list(tracks.values()), found) == (["m f r"], [])
    _, found = slices(decoded(SpanColumns.from_spans(spans_of_a_run()), epoch_offset_ns=-5_000))
    assert min(record["begin_ns"] for record in found) == 0  # clamped: Perfetto's timestamps are unsigned


def test_many_spans_in_several_chunks_decode_in_time_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(perfetto_export, "CHUNK_EVENTS", 7)  # chunk edges inside every pattern of events
    spans = spans_of_a_run() + [
        Span(run_id="r", span_id=1000 + k, name="late", level=TraceLevel.MODEL, start_ns=20_000 + k * 3,
             end_ns=20_000 + k * 3 + 2**40, attributes={"big": 2**62, "neg": -7})
        for k in range(30)
    ]  # fmt: skip
    trace = decoded(SpanColumns.from_spans(spans))
    times = [p.timestamp for p in trace.packet if p.HasField("track_event")]
    assert times == sorted(times) and len(times) == 2 * len(spans)
    _, found = slices(trace)
    late = [record for record in found if record["name"] == "late"]
    assert {record["args"]["big"] for record in late} == {2**62} and {r["args"]["neg"] for r in late} == {-7}


def test_varints_are_what_a_protobuf_encoder_writes() -> None:
    values = np.array([0, 1, 127, 128, 16_383, 16_384, 2**35, 2**63 - 1, -1, -(2**63)], np.int64)
    assert protobuf_rows.varints(values).tobytes() == b"".join(
        protobuf_rows.varint_bytes(int(v) & (2**64 - 1)) for v in values
    )


def test_the_cli_counts_the_slices_of_a_whole_trace_and_names_where_a_cut_one_ends() -> None:
    spans = spans_of_a_run()
    export = perfetto_export.perfetto_trace(SpanColumns.from_spans(spans), "r", epoch_offset_ns=0, process_name="m")
    data = b"".join(export.chunks)
    assert count_slices(data) == len(spans)
    with pytest.raises(PerfettoFileError, match="cut off"):
        count_slices(data[:-3])
    with pytest.raises(PerfettoFileError, match="is not a trace packet"):
        count_slices(b"<html>502 Bad Gateway</html>")


def test_the_cli_reads_packets_of_any_layout_and_refuses_an_end_without_a_begin() -> None:
    """150 partially overlapping spans need 150 lanes: track uuids past one byte leave the numpy fast path."""
    spans = [
        Span(run_id="r", span_id=k + 1, name="q", level=TraceLevel.MODEL, start_ns=k, end_ns=1_000 + k)
        for k in range(150)
    ]
    export = perfetto_export.perfetto_trace(SpanColumns.from_spans(spans), "r", epoch_offset_ns=0, process_name="m")
    data = b"".join(export.chunks)
    assert count_slices(data) == 150
    end_packet = protobuf_rows.bytes_field(1, b"\x40\x05" + protobuf_rows.bytes_field(11, b"\x48\x02\x58\x02"))
    with pytest.raises(PerfettoFileError, match="a slice ends on track 2 where none began"):
        count_slices(data + end_packet)
