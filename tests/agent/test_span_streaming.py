"""The agent streams MODEL spans and query records while a run goes on, from a bounded buffer (issue 16).

In-process: the tracer's takes see every row exactly once while the SUT appends concurrently, in call order, under
the phase span, with ``seq`` going on across takes, a repeated LoadGen test and the phase's end; a publisher that
acknowledges nothing makes the streamer spill past its byte bound instead of holding more, and the spill is
published again with the same ids. Real processes: spans of a running run are on the bus before its
``run_finished``, counted once each; a NATS outage mid-run is bridged by the spill file, delivered after the run.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import APIError

from mlmodelscope.agent.bus.spool import UnpublishedSpool
from mlmodelscope.agent.streaming import (
    BUFFER_BYTES_ENV,
    SPILL_PART,
    SpanStreamer,
    StreamingProgress,
    StreamSettings,
    encode_take,
    query_record,
    stream_settings,
)
from mlmodelscope.cli.nats_server import EmbeddedNatsServer
from mlmodelscope.collector.storage.span_store import decode_payload, query_columns
from mlmodelscope.core.errors import ManifestError
from mlmodelscope.core.messages import MAX_MESSAGE_BYTES, Envelope, SpanColumnBatch, decode
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from mlmodelscope.core.tracing.tracer import ModelRow, Tracer
from tests.support.paths import ASSETS
from tests.support.pipeline_processes import AgentProcess, ProcessReaper, StreamContents, read_stream, write_spec
from tests.support.traces import repeated_test_spans
from tests.support.waiting import wait_for


def _row(n: int) -> ModelRow:
    return (n, 1, 1_000 + 10 * n, 1_005 + 10 * n)


def test_takes_see_every_row_once_in_call_order_while_the_sut_appends() -> None:
    tracer = Tracer("stream", TraceLevel.MODEL)
    phase = tracer.new_span_id()
    tracer.open_model_stream(tracer.model_rows, "performance")
    append, total = tracer.model_rows.append, 20_000

    def sut() -> None:
        for n in range(total):
            append(_row(n))

    thread = threading.Thread(target=sut)
    thread.start()
    taken = []
    while thread.is_alive():
        label, spans = tracer.take_model_spans(500)
        assert label == ("performance" if spans else "") and len(spans) <= 500
        taken += spans
    thread.join()
    rest = tracer.materialize_model_spans(parent_id=phase)
    spans = taken + rest
    assert [s.attributes["first_item"] for s in spans] == list(range(total))
    assert [s.attributes["seq"] for s in spans] == list(range(total))
    assert {s.parent_id for s in spans} == {phase}
    assert len({s.span_id for s in spans}) == total
    assert tracer.spans == rest  # only what the phase's end made is left to publish after the run
    assert tracer.take_model_spans(500) == ("", [])  # the stream is closed


def test_a_repeated_test_goes_on_counting_and_the_window_keeps_its_first_spans() -> None:
    tracer = Tracer("stream", TraceLevel.FRAMEWORK)
    tracer.retain_model_spans = 3
    phase = tracer.new_span_id()
    rows = tracer.model_rows
    tracer.open_model_stream(rows, "performance")
    rows.extend(_row(n) for n in range(5))
    _, first = tracer.take_model_spans(100)
    del rows[:]  # the driver discards the rows of a test it repeats, then starts the test again
    tracer.open_model_stream(rows, "performance")
    rows.extend(_row(n) for n in range(10, 14))
    _, second = tracer.take_model_spans(2)
    rows.append(_row(14))
    returned = tracer.materialize_model_spans(parent_id=phase)
    assert [s.attributes["seq"] for s in first + second] == list(range(7))
    assert [s.attributes["first_item"] for s in second] == [10, 11]
    # What the profile window sees: the first calls of the repeated test, then the ones not streamed.
    assert [s.attributes["first_item"] for s in returned] == [10, 11, 12, 13, 14]
    assert [s.attributes["seq"] for s in returned] == [5, 6, 7, 8, 9]


def test_truncating_a_repeated_test_counts_the_spans_it_had_streamed_already() -> None:
    """What the driver records as ``discarded_streamed_spans``: rows of the first test taken before the repeat."""
    tracer = Tracer("stream", TraceLevel.MODEL)
    tracer.new_span_id()
    rows = tracer.model_rows
    start = tracer.model_row_count
    tracer.open_model_stream(rows, "performance")
    rows.extend(_row(n) for n in range(10, 17))
    tracer.take_model_spans(3)
    tracer.take_model_spans(1)
    assert tracer.truncate_model_rows(start) == 4  # 4 published of the 7; the 3 others are dropped
    assert rows == []
    unstreamed = Tracer("plain", TraceLevel.MODEL)
    unstreamed.model_rows.extend(_row(n) for n in range(3))
    assert unstreamed.truncate_model_rows(0) == 0 and unstreamed.model_rows == []


def test_a_new_phase_opens_a_new_stream_under_its_own_span() -> None:
    tracer = Tracer("stream", TraceLevel.MODEL)
    progress = StreamingProgress(tracer=tracer)
    accuracy = tracer.new_span_id()
    progress.start("accuracy", 0.0, tracer.model_rows)
    tracer.model_rows.append(_row(0))
    assert tracer.take_model_spans(10)[1][0].parent_id == accuracy
    tracer.materialize_model_spans(parent_id=accuracy)
    performance = tracer.new_span_id()
    progress.start("performance", 1.0, tracer.model_rows)
    tracer.model_rows.append(_row(1))
    label, spans = tracer.take_model_spans(10)
    assert (label, spans[0].parent_id, spans[0].attributes["seq"]) == ("performance", performance, 0)
    assert progress.phase == "performance" and progress.completed_queries == 1


def test_streaming_is_off_below_model_level() -> None:
    tracer = Tracer("stream", TraceLevel.APPLICATION)
    tracer.open_model_stream(tracer.model_rows, "performance")
    tracer.model_rows.append(_row(0))
    assert tracer.take_model_spans(10) == ("", [])


class _StuckPublisher:
    """A publisher whose NATS acknowledges nothing: every queued byte stays buffered."""

    def __init__(self) -> None:
        self.delivering = True
        self.buffered_bytes = 0
        self.queued: list[tuple[str, str, bytes]] = []
        self._sequences: dict[str, int] = {}

    def reserve_sequence(self, kind: str) -> int:
        sequence = self._sequences.get(kind, 0)
        self._sequences[kind] = sequence + 1
        return sequence

    def publish_raw(self, messages: list[tuple[str, str, bytes]]) -> int:
        self.queued += messages
        self.buffered_bytes += sum(len(data) for _, _, data in messages)
        return len(messages)


def test_rows_encoded_directly_are_the_envelopes_pydantic_would_make() -> None:
    run_id = "r" * 128  # the longest run id: the batches must still fit one message
    tracer = Tracer(run_id, TraceLevel.MODEL)
    tracer.new_span_id()
    tracer.open_model_stream(tracer.model_rows, "accuracy")
    tracer.model_rows.extend((n, 4, 2**62 + n, 2**62 + n + 7) for n in range(2_500))
    take = tracer.take_model_rows(2_500)
    assert take is not None
    publisher = _StuckPublisher()
    messages = encode_take(run_id, take, publisher, 1_000)
    envelopes = [decode(data) for _, _, data in messages]
    assert all(len(data) <= MAX_MESSAGE_BYTES for _, _, data in messages)
    assert [(e.subject, e.message_id) for e in envelopes] == [(subject, i) for subject, i, _ in messages]
    kinds = [(e.payload.kind, e.sequence) for e in envelopes]
    assert kinds == [("span_columns", n) for n in range(3)]  # the query records travel as the spans themselves
    spans = [span for e in envelopes for span in _column_spans(e)]
    assert spans == take.spans(run_id)
    records = []
    for envelope in envelopes:
        assert isinstance(envelope.payload, SpanColumnBatch)
        assert envelope.payload.query_parents == [(take.parent_id, "accuracy")]
        parents = dict(envelope.payload.query_parents)
        records += query_columns(decode_payload(envelope.payload)[1], parents).rows()
    assert records == [query_record(span, "accuracy").model_dump() for span in spans]


def _column_spans(envelope: Envelope) -> list[Span]:
    assert isinstance(envelope.payload, SpanColumnBatch)
    return list(decode_payload(envelope.payload)[1].spans(envelope.run_id))


def test_a_publisher_that_falls_behind_makes_the_streamer_spill_not_grow(tmp_path: Path) -> None:
    tracer = Tracer("slow", TraceLevel.MODEL)
    tracer.new_span_id()
    tracer.open_model_stream(tracer.model_rows, "performance")
    publisher = _StuckPublisher()
    spill = UnpublishedSpool(tmp_path / "unpublished", "slow", SPILL_PART)
    bound = 8 * 1024  # columnar messages are small (~10 bytes a span): a few batches fill it
    streamer = SpanStreamer(
        tracer, publisher, spill, StreamSettings(batch_rows=200, rows_per_message=100, max_buffered_bytes=bound)
    )
    for n in range(5_000):
        tracer.model_rows.append(_row(n))
        if n % 250 == 0:
            streamer.drain()
    streamer.drain()
    assert streamer.high_water_rows <= 200
    assert publisher.buffered_bytes <= bound and streamer.high_water_bytes <= bound
    assert streamer.spilled_messages > 0 and spill.path.exists()
    assert streamer.spans_sent == streamer.queries_sent == 5_000
    queued = list(publisher.queued)
    publisher.queued.clear()
    assert streamer.redeliver() == streamer.spilled_messages
    envelopes = [decode(data) for _, _, data in queued + publisher.queued]
    assert len({e.message_id for e in envelopes}) == len(envelopes)
    spans = [span.span_id for e in envelopes for span in _column_spans(e)]
    assert len(spans) == len(set(spans)) == 5_000  # the queued part and the spilled part: every row once
    assert all(decode(data).message_id == msg_id for _, msg_id, data in publisher.queued)
    spill.remove()
    assert not spill.path.exists()


def test_the_buffer_bound_comes_from_the_environment() -> None:
    assert stream_settings({}).max_buffered_bytes == 32 * 2**20
    assert stream_settings({BUFFER_BYTES_ENV: "4096"}).max_buffered_bytes == 4096
    with pytest.raises(ManifestError, match=BUFFER_BYTES_ENV):
        stream_settings({BUFFER_BYTES_ENV: "lots"})


# --- real processes ---------------------------------------------------------------------------------------------


def _agent(tmp_path: Path, nats_url: str, reaper: ProcessReaper, run_id: str, **overrides: Any) -> AgentProcess:
    spec = write_spec(
        tmp_path / "spec.json",
        run_id=run_id,
        nats_url=nats_url,
        assets=ASSETS,
        workdir=tmp_path,
        **overrides,
    )
    return AgentProcess.start(spec, tmp_path, reaper, extra_env={BUFFER_BYTES_ENV: str(64 * 1024)})


def _stream_or_none(nats_url: str, run_id: str) -> StreamContents | None:
    """The run's messages so far; None before the agent published its first one."""
    try:
        return read_stream(nats_url, run_id)
    except APIError:  # no stream yet (404), or no message in it yet (400 on sequence 0)
        return None


def _spans_seen(nats_url: str, run_id: str) -> int | None:
    stream = _stream_or_none(nats_url, run_id)
    return len(stream.span_ids) or None if stream is not None else None


def _assert_complete_and_unique(nats_url: str, run_id: str) -> None:
    stream = read_stream(nats_url, run_id)
    assert stream.run_finished is not None and stream.run_finished["status"] == "succeeded"
    assert len(stream.message_ids) == len(set(stream.message_ids))
    assert len(stream.span_ids) == len(set(stream.span_ids)) == stream.run_finished["span_count"]
    assert len(stream.query_keys) == len(set(stream.query_keys)) == stream.run_finished["query_count"]
    performance = sorted(seq for mode, seq in stream.query_keys if mode == "performance")
    assert performance == list(range(len(performance))) and performance
    result = stream.run_finished["result"]
    # A first LoadGen test that ran out of queries and was repeated keeps what it had streamed (seq goes on).
    assert result["performance"]["queries"] + repeated_test_spans(result) == len(performance)


@pytest.mark.slow
def test_spans_of_a_running_run_are_on_the_bus_before_it_finishes(
    tmp_path: Path, nats_server: EmbeddedNatsServer, reaper: ProcessReaper
) -> None:
    agent = _agent(tmp_path, nats_server.url, reaper, "streamed", settings={"mode": "performance", "min_duration_s": 6})

    def streaming() -> int | None:
        stream = _stream_or_none(nats_server.url, "streamed")
        if stream is None:
            return None
        if stream.run_finished is not None:
            pytest.fail("the run finished before any of its spans was seen on the bus")
        return len(stream.span_ids) or None

    seen = wait_for(streaming, timeout_s=60, what="spans of the running run on the bus", interval_s=0.2)
    assert seen > 0 and agent.running
    code = agent.wait(timeout_s=120)
    assert code == 0, agent.stderr
    _assert_complete_and_unique(nats_server.url, "streamed")


@pytest.mark.slow
def test_a_nats_outage_mid_run_is_spilled_and_delivered_after_the_run(
    tmp_path: Path, nats_server: EmbeddedNatsServer, reaper: ProcessReaper
) -> None:
    run_dir = tmp_path / "run"
    agent = _agent(
        tmp_path,
        nats_server.url,
        reaper,
        "outage",
        run_dir=str(run_dir),
        give_up_after_s=60.0,
        settings={"mode": "performance", "min_duration_s": 8},
    )
    wait_for(
        lambda: _spans_seen(nats_server.url, "outage"),
        timeout_s=60,
        what="spans of the running run on the bus",
        interval_s=0.2,
    )
    nats_server.kill()
    spill_file = run_dir / "unpublished" / f"outage{SPILL_PART}.jsonl"
    wait_for(lambda: spill_file.exists() or None, timeout_s=30, what="the streamer to spill while NATS is down")
    assert agent.running
    time.sleep(1.0)
    nats_server.start()  # same port, same store: JetStream keeps what it had
    code = agent.wait(timeout_s=120)
    assert code == 0, agent.stderr
    assert not spill_file.exists()  # delivered after the run, then removed
    _assert_complete_and_unique(nats_server.url, "outage")


def test_a_test_whose_rows_are_not_the_tracers_is_not_streamed() -> None:
    tracer = Tracer("stream", TraceLevel.MODEL)
    progress = StreamingProgress(tracer=tracer)
    tracer.new_span_id()
    calibration: list[ModelRow] = [_row(0)]
    progress.start("calibration", 1.0, calibration)
    tracer.open_model_stream(calibration, "performance")
    assert tracer.take_model_spans(10) == ("", [])
