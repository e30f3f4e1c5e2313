"""Streaming a run's MODEL spans and query records to NATS while it runs, so the agent keeps none of them to the end.

Why: a long run made a ``Span`` (and a ``QueryRecord``) per predictor call and published them all after LoadGen
ended: the agent's memory grew with the run (+1.9 GB at 30 s) and the collector saw nothing of the trace until the
end. Now a background thread, the ``SpanStreamer``, takes the rows the SUT appended since its last look every
``interval_s`` (``Tracer.take_model_spans``: a length read and a slice, under a lock the SUT never takes; the SUT
still only appends a tuple), turns them into numpy columns (``span_columns`` messages: the spans are the query
records too, see ``core.span_columns``), encodes them with the run's next sequence numbers (so their message ids,
``<run>:span_columns:<n>``, are fixed before they leave) and hands them to the ``RunPublisher``.

Bound: the publisher's queue holds at most ``max_buffered_bytes`` of encoded messages the streamer put there; when
NATS is slower than the run (or away, and the publisher has not given up yet), further batches go to a spill file,
``<run dir>/unpublished/<run>.spill.jsonl``, instead of memory. After the run the file is read back and published
before ``run_finished``, then removed once the publisher has every line (acknowledged, or kept in
``<run>.jsonl`` when NATS is given up on). If the agent dies first, ``mlmodelscope runs import`` reads the spill
file like any spool file; ids are bound to their envelopes, so nothing is stored twice.

The stream is opened per LoadGen test by ``StreamingProgress.start`` (the driver calls it with the mode and the
rows list when a test begins), under the phase span the runner reserved last (``Tracer.open_model_stream``).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np

from mlmodelscope.agent.bus.column_messages import SPANS_PER_COLUMN_MESSAGE, column_messages
from mlmodelscope.agent.bus.spool import UnpublishedSpool
from mlmodelscope.core.errors import ManifestError
from mlmodelscope.core.evaluation.driver import RunProgress
from mlmodelscope.core.messages import QueryMode, QueryRecord, decode
from mlmodelscope.core.span_columns import SpanColumns
from mlmodelscope.core.tracing.spans import Span, TraceLevel
from mlmodelscope.core.tracing.tracer import MODEL_SPAN_NAME, ModelRow, ModelTake, Tracer

log = logging.getLogger(__name__)

SPILL_PART = ".spill"
RawMessage = tuple[str, str, bytes]  # subject, message id, envelope JSON
BUFFER_BYTES_ENV = "MLMODELSCOPE_STREAM_BUFFER_BYTES"
_QUERY_MODES = ("accuracy", "performance")  # the LoadGen tests whose calls are query records (not a calibration)


class StreamPublisher(Protocol):
    """What the streamer needs of ``RunPublisher`` (a test injects a slow one)."""

    @property
    def delivering(self) -> bool: ...

    @property
    def buffered_bytes(self) -> int: ...

    def reserve_sequence(self, kind: str) -> int: ...

    def publish_raw(self, messages: list[tuple[str, str, bytes]]) -> int: ...


def encode_take(run_id: str, take: ModelTake, publisher: StreamPublisher, per_message: int) -> list[RawMessage]:
    """The take's MODEL spans as columnar ``span_columns`` messages: numpy arrays straight from the rows (no
    ``Span`` per row: the drainer shares the GIL with the SUT), the take's phase named as their query parent, so
    the collector derives the query records from the spans; it validates them like any message (``decode``)."""
    count = len(take.rows)
    flat = np.fromiter(itertools.chain.from_iterable(take.rows), np.int64, 4 * count)  # 5x np.array of tuples
    rows = flat.reshape(count, 4)  # first_item, item_count, start_ns, end_ns
    columns = SpanColumns.uniform(
        span_id=np.fromiter(take.span_ids, np.int64, count),
        parent_id=np.full(count, take.parent_id, dtype=np.int64),
        start_ns=np.ascontiguousarray(rows[:, 2]),
        end_ns=np.ascontiguousarray(rows[:, 3]),
        level=TraceLevel.MODEL,
        name=MODEL_SPAN_NAME,
        ints={
            "seq": np.arange(take.first_seq, take.first_seq + count, dtype=np.int64),
            "first_item": np.ascontiguousarray(rows[:, 0]),
            "item_count": np.ascontiguousarray(rows[:, 1]),
        },
    )
    parents: list[tuple[int, QueryMode]] = []
    if take.label in _QUERY_MODES:
        parents.append((take.parent_id, cast(QueryMode, take.label)))
    return column_messages(run_id, columns, parents, publisher.reserve_sequence, per_message)


@dataclass(frozen=True)
class StreamSettings:
    interval_s: float = 0.5
    batch_rows: int = 16_384  # rows taken at a time
    rows_per_message: int = SPANS_PER_COLUMN_MESSAGE  # ~100-200 kB of base64 columns per message
    max_buffered_bytes: int = 32 * 2**20


def stream_settings(environ: Mapping[str, str]) -> StreamSettings:
    """The defaults, with the buffer bound from ``MLMODELSCOPE_STREAM_BUFFER_BYTES`` when set (a positive int)."""
    text = environ.get(BUFFER_BYTES_ENV, "").strip()
    if not text:
        return StreamSettings()
    if not text.isdigit() or int(text) < 1:
        raise ManifestError(
            f"{BUFFER_BYTES_ENV}={text!r} is not a positive number of bytes.",
            hint=f"Unset {BUFFER_BYTES_ENV} (32 MiB) or give it a byte count such as 8388608.",
        )
    return StreamSettings(max_buffered_bytes=int(text))


def query_record(span: Span, mode: str) -> QueryRecord:
    """The per-query record of one MODEL predict span of a run in ``mode`` (accuracy / performance)."""
    attributes = span.attributes
    return QueryRecord.model_validate(
        {
            "seq": attributes["seq"],
            "mode": mode,
            "first_item": attributes["first_item"],
            "item_count": attributes["item_count"],
            "start_ns": span.start_ns,
            "end_ns": span.end_ns,
        }
    )


@dataclass
class StreamingProgress(RunProgress):
    """The driver's progress, which also opens the tracer's model stream when a LoadGen test starts."""

    tracer: Tracer | None = field(default=None, repr=False)

    def start(self, phase: str, min_duration_s: float, rows: list[Any]) -> None:
        if self.tracer is not None and phase in _QUERY_MODES:
            model_rows: list[ModelRow] = rows
            self.tracer.open_model_stream(model_rows, phase)
        super().start(phase, min_duration_s, rows)


class SpanStreamer:
    """Publishes the MODEL spans and query records of the running test from its own thread; see the module."""

    def __init__(
        self,
        tracer: Tracer,
        publisher: StreamPublisher,
        spill: UnpublishedSpool,
        settings: StreamSettings | None = None,
    ) -> None:
        self._tracer = tracer
        self._publisher = publisher
        self.spill = spill
        self.settings = settings or StreamSettings()
        self.spans_sent = 0
        self.queries_sent = 0
        self.spilled_messages = 0
        self.high_water_bytes = 0  # the most encoded bytes the publisher held right after a batch was queued
        self.high_water_rows = 0  # the most rows one take found waiting
        self.failure: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="span-streamer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the thread after a last look at the rows (a cancelled run's open test is sent too)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.interval_s):
            self.drain()
        self.drain()

    def drain(self) -> None:
        """Send everything appended so far, a take of at most ``batch_rows`` rows at a time."""
        try:
            while (take := self._tracer.take_model_rows(self.settings.batch_rows)) is not None:
                self.high_water_rows = max(self.high_water_rows, len(take.rows))
                self._send(take)
        except Exception as e:  # a failed publisher or a full disk: the finisher reports it; the run goes on
            if self.failure is None:
                log.warning("streaming the run's spans failed: %s", e)
            self.failure = e

    def _send(self, take: ModelTake) -> None:
        publisher = self._publisher
        messages = encode_take(self._tracer.run_id, take, publisher, self.settings.rows_per_message)
        size = sum(len(data) for _, _, data in messages)
        self.spans_sent += len(take.rows)
        self.queries_sent += len(take.rows)
        if publisher.delivering and publisher.buffered_bytes + size > self.settings.max_buffered_bytes:
            for _, _, data in messages:
                self.spill.add(data)
            self.spilled_messages += len(messages)
            return
        publisher.publish_raw(messages)
        self.high_water_bytes = max(self.high_water_bytes, publisher.buffered_bytes)

    def redeliver(self) -> int:
        """After the run: publish what was spilled (same bytes, same ids); returns how many messages."""
        count = 0
        for data in self.spill.read_back():
            envelope = decode(data)
            self._publisher.publish_raw([(envelope.subject, envelope.message_id, data)])
            count += 1
        return count
