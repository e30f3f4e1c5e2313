"""How ``Tracer.span`` times a ``with`` block: a timed span when its level is on, one shared no-op when it is off.

A disabled level costs no allocation: ``DISABLED_SPAN`` is one object whose ``__enter__`` yields span id 0, so
``with tracer.span(...) as parent:`` keeps working and children recorded with ``parent_id=0`` are simply roots (or,
more likely, disabled too). A timed span takes its id on entry (its children can name it) and records itself on
exit, also when the block raises (marked ``error``).
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING, Final

from mlmodelscope.core.tracing.span_ids import SPAN_IDS
from mlmodelscope.core.tracing.spans import AttributeValue, TraceLevel

if TYPE_CHECKING:
    from mlmodelscope.core.tracing.tracer import Tracer


class DisabledSpan:
    """The shared context manager ``Tracer.span`` hands out for a disabled level: enters to span id 0."""

    __slots__ = ()

    def __enter__(self) -> int:
        return 0

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


DISABLED_SPAN: Final = DisabledSpan()


class TimedSpan:
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
        self._span_id = next(SPAN_IDS)
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
