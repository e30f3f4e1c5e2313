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
manager whose ``__enter__`` yields span id 0, so ``with tracer.span(...) as parent:`` keeps working and children
recorded with ``parent_id=0`` are simply roots (or, more likely, disabled too).

Threads: span ids come from ``itertools.count``, whose ``__next__`` is atomic under the GIL; spans go into a
``deque`` (``append``/``popleft`` are atomic), so ``record`` and ``drain`` may run on different threads (the
hardware sampler records while a publisher drains) without a lock and without losing a span. ``model_rows``
is a list that is only ever appended to during the run and trimmed in place afterwards.

Times are ``perf_counter_ns`` (monotonic, process-local); ``epoch_offset_ns`` captured at construction is what
to add to put them on the wall clock (exporters and the collector do that, spans never store wall times).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Final

from mlmodelscope.core.tracing.spans import AttributeValue, Span, TraceLevel

# One counter for the whole process: span ids stay unique even across several tracers (runs) of one agent.
_SPAN_IDS: Final = itertools.count(1)

MODEL_SPAN_NAME: Final = "predict"

ModelRow = tuple[int, int, int, int]
"""One predictor call as the SUT appends it: (first_item, item_count, start_ns, end_ns)."""


class _DisabledSpan:
    """The shared context manager ``Tracer.span`` hands out for a disabled level: enters to span id 0."""

    __slots__ = ()

    def __enter__(self) -> int:
        return 0

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


DISABLED_SPAN: Final = _DisabledSpan()


class _TimedSpan:
    """Times one ``with`` block and records it on exit (also when the block raises, marked ``error``)."""

    __slots__ = ("_attributes", "_level", "_name", "_parent_id", "_span_id", "_start_ns", "_tracer")

    def __init__(
        self, tracer: Tracer, name: str, level: TraceLevel, parent_id: int, attributes: dict[str, AttributeValue]
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._level = level
        self._parent_id = parent_id
        self._attributes = attributes
        self._span_id = 0
        self._start_ns = 0

    def __enter__(self) -> int:
        self._span_id = next(_SPAN_IDS)
        self._start_ns = time.perf_counter_ns()
        return self._span_id

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        end_ns = time.perf_counter_ns()
        attributes = self._attributes
        if exc_type is not None:
            attributes = {**attributes, "error": exc_type.__name__}
        self._tracer.record(
            self._name,
            self._level,
            self._start_ns,
            end_ns,
            parent_id=self._parent_id,
            attributes=attributes,
            span_id=self._span_id,
        )


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

    # --- levels and ids -------------------------------------------------------------------------------------

    def enabled(self, level: TraceLevel) -> bool:
        """Whether spans at ``level`` are recorded: ``0 < level <= self.level``."""
        return 0 < level <= self._threshold

    @staticmethod
    def new_span_id() -> int:
        """A process-unique span id (>= 1), allocated without a lock."""
        return next(_SPAN_IDS)

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
            span_id = next(_SPAN_IDS)
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
    ) -> _TimedSpan | _DisabledSpan:
        """``with tracer.span("load", TraceLevel.APPLICATION) as span_id:`` times the block.

        When ``level`` is disabled this returns the shared ``DISABLED_SPAN`` (entering it yields 0).
        """
        if not 0 < level <= self._threshold:
            return DISABLED_SPAN
        return _TimedSpan(self, name, level, parent_id, attributes)

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
        the driver bound earlier keeps working). Attributes: ``seq`` (call order within this batch of rows),
        ``first_item`` and ``item_count``. Returns the new spans (empty when MODEL is disabled), e.g. to hand
        ``(span_id, start_ns, end_ns)`` triples to a ``FrameworkProfiler``.
        """
        rows = self.model_rows[:]
        del self.model_rows[: len(rows)]
        if not self.enabled(TraceLevel.MODEL):
            return []
        run_id = self.run_id
        spans = [
            Span(
                run_id=run_id,
                span_id=next(_SPAN_IDS),
                parent_id=parent_id,
                name=name,
                level=TraceLevel.MODEL,
                start_ns=start_ns,
                end_ns=end_ns,
                attributes={"seq": seq, "first_item": first_item, "item_count": item_count},
            )
            for seq, (first_item, item_count, start_ns, end_ns) in enumerate(rows)
        ]
        self._spans.extend(spans)
        return spans

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
