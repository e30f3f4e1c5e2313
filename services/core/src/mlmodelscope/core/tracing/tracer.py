"""The tracer: where every level of the stack records its spans, built so a disabled level costs nothing.

One ``Tracer`` per run. It owns the run's trace level, a process-wide span-id counter and the spans collected so
far. Three ways in, from cheapest to most convenient:

* ``model_rows`` — the LoadGen SUT's fast path. Per predictor call the driver appends one plain tuple
  ``(first_item, item_count, start_ns, end_ns)`` (the fields of ``messages.QueryRecord``), bound as a local
  ``append`` in its closure; no span id, no ``Span``, no dict. After the run ``materialize_model_spans`` turns
  the rows into MODEL-level ``"predict"`` spans (ids allocated then, in call order). The driver decides once,
  when it builds its closures, whether to append rows at all (``tracer.enabled(TraceLevel.MODEL)``), so a run
  without MODEL tracing pays nothing per query.
* ``record(...)`` — one finished interval whose times the caller measured (hardware samples, framework
  profilers converting their own output).
* ``span(...)`` — a context manager timing a block with ``time.perf_counter_ns`` (application phases).

Disabled levels: ``record`` returns 0 before allocating anything, ``span`` returns one shared no-op context
manager (``timed_span.DISABLED_SPAN``) whose ``__enter__`` yields span id 0.

Streaming (the agent, issue 16): while a LoadGen test runs, a background drainer calls ``take_model_spans``
every fraction of a second; it materialises the rows appended since its last call (never the SUT: the SUT still
only appends) and the agent publishes them at once, so no run keeps a ``Span`` per query until its end. The
stream is opened by ``open_model_stream`` when a test starts, with the rows list the SUT appends to; its parent
is the span id reserved last by ``new_span_id`` (the runner's phase span around the test, recorded only when the
phase ends). ``materialize_model_spans`` at the phase's end then turns only the rows not streamed yet into spans
(``seq`` continues), closes the stream, and returns the first ``retain_model_spans`` streamed spans of the phase
followed by the new ones (a framework profile window covers the first calls of a run). The rows themselves stay
in the list until the driver's pump has read them (see below). ``_stream_lock`` orders the drainer, the pump and
the phase's end; the SUT never takes it.

Constant memory (issue 16): during a LoadGen test the driver's pump calls ``pump_model_rows`` every fraction of a
second. It returns the rows appended since the pump's last call (the driver keeps only their latencies, compact)
and releases from the head of ``model_rows`` every row nobody needs any more: with a stream open, those both
streamed and pumped; with ``keep_model_spans`` off (nothing reads the run's MODEL spans after it: the agent
without NATS), every pumped row, except that the first ``retain_model_spans`` of a phase are kept as spans for a
framework profile window. Otherwise (the default, for in-process callers that read every span) nothing is
released. Row positions are absolute (``_model_base`` rows were released before ``model_rows[0]``), so the
stream's and the pump's cursors survive a release.

Threads: span ids come from ``itertools.count``, whose ``__next__`` is atomic under the GIL; spans go into a
``deque`` (``append``/``popleft`` are atomic), so ``record`` and ``drain`` may run on different threads (the
hardware sampler records while a publisher drains) without a lock and without losing a span. ``model_rows``
is a list that is only ever appended to during the run and trimmed in place afterwards.

Times are ``perf_counter_ns`` (monotonic, process-local); ``epoch_offset_ns`` captured at construction is what
to add to put them on the wall clock (exporters and the collector do that, spans never store wall times).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Final, NamedTuple

from mlmodelscope.core.tracing.span_ids import SPAN_IDS
from mlmodelscope.core.tracing.spans import AttributeValue, Span, TraceLevel
from mlmodelscope.core.tracing.timed_span import DISABLED_SPAN, DisabledSpan, TimedSpan

log = logging.getLogger(__name__)

MODEL_SPAN_NAME: Final = "predict"

ModelRow = tuple[int, int, int, int]
"""One predictor call as the SUT appends it: (first_item, item_count, start_ns, end_ns)."""


def model_spans(run_id: str, rows: Iterable[ModelRow], parent_id: int, first_seq: int, name: str) -> list[Span]:
    """MODEL-level spans of ``rows`` in call order, with new ids and ``seq`` counted from ``first_seq``."""
    return [
        Span(
            run_id=run_id,
            span_id=next(SPAN_IDS),
            parent_id=parent_id,
            name=name,
            level=TraceLevel.MODEL,
            start_ns=start_ns,
            end_ns=end_ns,
            attributes={"seq": seq, "first_item": first_item, "item_count": item_count},
        )
        for seq, (first_item, item_count, start_ns, end_ns) in enumerate(rows, start=first_seq)
    ]


class ModelTake(NamedTuple):
    """Rows the streamer took from a phase: their label (mode), parent span, first ``seq`` and span ids."""

    label: str
    parent_id: int
    first_seq: int
    span_ids: list[int]
    rows: list[ModelRow]

    def spans(self, run_id: str) -> list[Span]:
        return [
            Span(
                run_id=run_id,
                span_id=span_id,
                parent_id=self.parent_id,
                name=MODEL_SPAN_NAME,
                level=TraceLevel.MODEL,
                start_ns=start_ns,
                end_ns=end_ns,
                attributes={"seq": seq, "first_item": first_item, "item_count": item_count},
            )
            for seq, span_id, (first_item, item_count, start_ns, end_ns) in zip(
                itertools.count(self.first_seq), self.span_ids, self.rows, strict=False
            )
        ]


class _ModelStream:
    """The rows of one phase being streamed: where the drainer stands in them, and what it keeps."""

    __slots__ = ("head", "label", "parent_id", "rows", "seq", "taken")

    def __init__(self, rows: list[ModelRow], parent_id: int, label: str) -> None:
        self.rows = rows
        self.parent_id = parent_id
        self.label = label
        self.taken = 0  # rows[:taken] are streamed
        self.seq = 0
        self.head: list[Span] = []


class Tracer:
    """Collects the spans of one run at every level up to ``level`` (``TraceLevel.NO`` records nothing)."""

    def __init__(self, run_id: str, level: TraceLevel) -> None:
        if not run_id:
            raise ValueError("a tracer needs a non-empty run_id")
        self.run_id = run_id
        self.level = TraceLevel(level)
        self._threshold = int(self.level)
        self.epoch_offset_ns = time.time_ns() - time.perf_counter_ns()
        self._spans: deque[Span] = deque()
        self.model_rows: list[ModelRow] = []
        self.retain_model_spans = 0
        self.keep_model_spans = True  # False: the pump releases rows once read (only the retained head is kept)
        self.last_reserved_id = 0
        self._model_base = 0  # rows released from the head of model_rows (row positions are absolute)
        self._released_head: list[Span] = []  # keep_model_spans off, no stream: the phase's first retained spans
        self._released_seq = 0  # keep_model_spans off, no stream: the phase's rows released so far
        self._stream: _ModelStream | None = None
        self._stream_lock = threading.Lock()

    # --- levels and ids -------------------------------------------------------------------------------------

    def enabled(self, level: TraceLevel) -> bool:
        """Whether spans at ``level`` are recorded: ``0 < level <= self.level``."""
        return 0 < level <= self._threshold

    def new_span_id(self) -> int:
        """A process-unique span id (>= 1), allocated without a lock; remembered as ``last_reserved_id``."""
        span_id = self.last_reserved_id = next(SPAN_IDS)
        return span_id

    # --- recording ------------------------------------------------------------------------------------------

    def record(
        self,
        name: str,
        level: TraceLevel,
        start_ns: int,
        end_ns: int,
        parent_id: int = 0,
        attributes: dict[str, AttributeValue] | None = None,
        span_id: int = 0,
    ) -> int:
        """Record one finished interval; returns its span id, or 0 (allocating nothing) if ``level`` is off.

        ``span_id`` 0 allocates a new id; pass one from ``new_span_id`` when children were recorded first.
        """
        if not 0 < level <= self._threshold:
            return 0
        if not span_id:
            span_id = next(SPAN_IDS)
        self._spans.append(
            Span(
                run_id=self.run_id,
                span_id=span_id,
                parent_id=parent_id,
                name=name,
                level=level,
                start_ns=start_ns,
                end_ns=end_ns,
                attributes=attributes or {},
            )
        )
        return span_id

    def span(
        self, name: str, level: TraceLevel, parent_id: int = 0, **attributes: AttributeValue
    ) -> TimedSpan | DisabledSpan:
        """``with tracer.span("load", TraceLevel.APPLICATION) as span_id:`` times the block.

        When ``level`` is disabled this returns the shared ``DISABLED_SPAN`` (entering it yields 0).
        """
        if not 0 < level <= self._threshold:
            return DISABLED_SPAN
        return TimedSpan(self, name, level, parent_id, attributes)

    def extend(self, spans: Iterable[Span]) -> int:
        """Add spans built elsewhere (a framework profiler's); drops those of disabled levels. Returns how many."""
        added = 0
        for span in spans:
            if 0 < span.level <= self._threshold:
                self._spans.append(span)
                added += 1
        return added

    # --- the model-row fast path ----------------------------------------------------------------------------

    def materialize_model_spans(self, parent_id: int = 0, name: str = MODEL_SPAN_NAME) -> list[Span]:
        """Turn the ``model_rows`` appended so far into MODEL-level spans, in call order, and record them.

        The rows are removed from ``model_rows`` in place (the list object stays the same, so an ``append``
        the driver bound earlier keeps working). Attributes: ``seq`` (call order within the phase), ``first_item``
        and ``item_count``. Returns the new spans (empty when MODEL is disabled), e.g. to hand
        ``(span_id, start_ns, end_ns)`` triples to a ``FrameworkProfiler``. With a stream open (see the module
        docstring) the streamed rows are skipped and the first ``retain_model_spans`` streamed spans come first.
        """
        with self._stream_lock:  # no take and no pump may run while the rows are cut
            stream, self._stream = self._stream, None
            rows = self.model_rows[:]
            del self.model_rows[: len(rows)]
            base = self._model_base
            self._model_base += len(rows)
            head, self._released_head = self._released_head, []
            first_seq, self._released_seq = self._released_seq, 0
        if not self.enabled(TraceLevel.MODEL):
            return []
        if stream is not None:
            rows = rows[max(0, stream.taken - base) :]
            head, first_seq = stream.head, stream.seq
            if parent_id and parent_id != stream.parent_id:
                log.warning("model spans were streamed under span %d, not %d", stream.parent_id, parent_id)
            parent_id = stream.parent_id or parent_id
        spans = model_spans(self.run_id, rows, parent_id, first_seq, name)
        self._spans.extend(spans)
        return head + spans

    # --- streaming (the agent's drainer) --------------------------------------------------------------------

    def open_model_stream(self, rows: list[ModelRow], label: str) -> None:
        """A LoadGen test starts appending to ``rows``: stream them under the span reserved last (its phase).

        Only the tracer's own ``model_rows`` are streamed (a profile window's counting list is that then).

        Opened again for the same phase (the driver repeats a test and dropped the rows of the first one), the
        stream goes on where the remaining rows end; ``seq`` keeps counting, so no record is sent twice.
        """
        if not self.enabled(TraceLevel.MODEL) or rows is not self.model_rows:
            return  # rows of a test that are not the tracer's (the driver's calibration) are not traced
        with self._stream_lock:
            stream = self._stream
            if stream is None or stream.parent_id != self.last_reserved_id:
                self._stream = _ModelStream(rows, self.last_reserved_id, label)
                self._stream.taken = self._model_base
                return
            stream.rows, stream.label = rows, label
            stream.taken = min(stream.taken, self._model_base + len(rows))
            stream.head.clear()

    def take_model_rows(self, limit: int) -> ModelTake | None:
        """At most ``limit`` rows appended since the last take, with their span ids and ``seq`` (None: nothing).

        Reads the list's length, then slices up to it: rows appended meanwhile wait for the next take. No
        ``Span`` is built (the agent encodes rows straight to JSON), except for the retained first spans."""
        with self._stream_lock:
            stream, base = self._stream, self._model_base
            if stream is None or base + len(stream.rows) <= stream.taken:
                return None
            end = min(base + len(stream.rows), stream.taken + limit)
            rows = stream.rows[stream.taken - base : end - base]
            span_ids = [next(SPAN_IDS) for _ in rows]
            take = ModelTake(stream.label, stream.parent_id, stream.seq, span_ids, rows)
            stream.taken = end
            stream.seq += len(rows)
            room = self.retain_model_spans - len(stream.head)
            if room > 0:
                stream.head.extend(take.spans(self.run_id)[:room])
            return take

    def take_model_spans(self, limit: int) -> tuple[str, list[Span]]:
        """``take_model_rows`` as (label, MODEL spans); ("", []) when there is nothing to take."""
        take = self.take_model_rows(limit)
        return ("", []) if take is None else (take.label, take.spans(self.run_id))

    # --- the driver's pump ---------------------------------------------------------------------------------

    @property
    def model_row_count(self) -> int:
        """Rows appended to ``model_rows`` since the tracer was made (released ones included): an absolute position."""
        return self._model_base + len(self.model_rows)

    def pump_model_rows(self, seen: int) -> list[ModelRow]:
        """The rows at absolute positions ``seen`` and after (appended since the pump's last call), and release the
        rows before them that nobody needs any more (see the module docstring). The pump is the only caller that
        reads ``model_rows`` for the driver; it passes ``seen`` + the length of what it got next time."""
        with self._stream_lock:
            rows, base = self.model_rows, self._model_base
            fresh = rows[max(0, seen - base) :]
            read = max(seen, base) + len(fresh)
            stream = self._stream
            if stream is not None:
                release = min(read, stream.taken) - base if stream.rows is rows else 0
            elif not self.keep_model_spans:
                release = read - base
                if len(self._released_head) < self.retain_model_spans:
                    self._retain_released(rows[:release])
                self._released_seq += release
            else:
                release = 0
            if release > 0:
                del rows[:release]
                self._model_base += release
            return fresh

    def _retain_released(self, rows: list[ModelRow]) -> None:
        """Rows released without a stream: the phase's first ``retain_model_spans`` become spans, the rest go."""
        room = self.retain_model_spans - len(self._released_head)
        self._released_head += model_spans(
            self.run_id, rows[:room], self.last_reserved_id, self._released_seq, MODEL_SPAN_NAME
        )

    def truncate_model_rows(self, start: int) -> int:
        """Forget the rows at absolute positions ``start`` and after that are still held (a repeated LoadGen test
        drops its first attempt's rows; released ones are gone already). Without a stream the retained first
        spans go too: the repeated test's first calls are the phase's first calls (as ``open_model_stream`` does).

        Returns how many of those rows the stream had already taken: they were published as MODEL spans and stay
        in the run's trace (under the same phase span, before the repeated test starts)."""
        with self._stream_lock:
            del self.model_rows[max(0, start - self._model_base) :]
            stream = self._stream
            if stream is None:
                self._released_head.clear()
                return 0
            return max(0, stream.taken - start) if stream.rows is self.model_rows else 0

    # --- reading --------------------------------------------------------------------------------------------

    @property
    def spans(self) -> list[Span]:
        """A snapshot of the spans recorded and not yet drained."""
        return list(self._spans)

    def drain(self) -> list[Span]:
        """Take the spans recorded so far and forget them (for batched publishing); safe against concurrent
        ``record``: a span appended meanwhile is either returned now or kept for the next drain."""
        pop = self._spans.popleft
        return [pop() for _ in range(len(self._spans))]
