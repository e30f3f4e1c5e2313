"""The bounded window of calls a framework profiler covers, and the guard that keeps profiler trouble out of a run.

Why a window: a framework's profile grows with every call. ONNX Runtime keeps at most a million events per
session and silently drops the rest (so a long run's operators can no longer be paired with its queries),
PyTorch and TensorFlow keep every event in memory and are parsed afterwards in Python. So FRAMEWORK tracing
profiles a declared window: the first ``max_calls`` predictor calls of the performance run
(``EvaluationSettings.framework_trace_max_calls``, ``--framework-trace-calls``), then the profiler is stopped.
The k-th profiled call is the k-th call of the window by construction, whatever the run's length or speed;
model spans after the window simply carry no framework children.

Counting calls: while the window is open the tracer's ``model_rows`` (one row per predictor call, appended by the
LoadGen SUT after it read its clock) is a list that counts its appends, so the counting and the profiler's stop
after the N-th call happen outside the SUT's timed region, and nothing is added to any predictor. Rows of a
LoadGen run the driver repeats (it ran out of queries) are discarded by the driver; the calls of the window
that lost their rows are the first ones, and the profiler is told to skip that many (``first_call``).

Guard: ``start``, ``stop`` and ``spans`` may raise anything (a framework's own errors, an unreadable profile,
counts that do not match). None of it fails the evaluation: the outcome is a ``FrameworkTrace`` that says
complete, partial or failed, with the reason, and the result is kept.

Cost: the runner opens a window only at FRAMEWORK level (a predictor has a profiler only then); per call it is
one Python method call more (the counting ``append``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

from mlmodelscope.core.evaluation.results import FrameworkTrace, FrameworkTraceStatus
from mlmodelscope.core.tracing.framework import FrameworkProfiler, model_span_times
from mlmodelscope.core.tracing.spans import Span
from mlmodelscope.core.tracing.tracer import ModelRow, Tracer

log = logging.getLogger(__name__)


class _CountingRows(list[ModelRow]):
    """The tracer's model rows while a window is open: each append is one predictor call, told to the window."""

    def __init__(self, rows: Iterable[ModelRow], window: ProfileWindow) -> None:
        super().__init__(rows)
        self._window = window

    def append(self, row: ModelRow) -> None:
        list.append(self, row)
        self._window.called()


def _problem(what: str, error: Exception) -> str:
    return f"the framework profiler failed at {what}: {type(error).__name__}: {error}"


class ProfileWindow:
    """Profiles the first ``max_calls`` calls of one performance run with ``profiler``; see the module docstring.

    Use: ``open()`` right before the run, ``close()`` right after it (in a ``finally``), then
    ``attribute(model_spans)`` with the run's model spans, which adds the framework spans to the tracer and
    returns the ``FrameworkTrace`` for the result. No method raises because of the profiler.
    """

    def __init__(self, profiler: FrameworkProfiler, tracer: Tracer, max_calls: int) -> None:
        if max_calls < 1:
            raise ValueError(f"a profile window needs max_calls >= 1, got {max_calls}")
        self.profiler = profiler
        self.tracer = tracer
        self.max_calls = max_calls
        self.window_calls = 0
        self._profiling = False
        self._started = False
        self._closed_ns: int | None = None
        self._failure: str | None = None
        self._rows: _CountingRows | None = None
        self._plain_rows: list[ModelRow] | None = None

    def open(self) -> None:
        """Start the profiler and count calls from now on; a profiler that cannot start is recorded, not raised."""
        try:
            self.profiler.start()
        except Exception as e:  # whatever the framework raises: the evaluation goes on without a framework trace
            self._fail(_problem("start", e), e)
            return
        self._started = self._profiling = True
        self._plain_rows = self.tracer.model_rows
        self._rows = _CountingRows(self._plain_rows, self)
        self.tracer.model_rows = self._rows

    def called(self) -> None:
        """One more predictor call was recorded; the ``max_calls``-th stops the profiler."""
        if self._profiling:
            self.window_calls += 1
            if self.window_calls >= self.max_calls:
                self._stop_profiler()

    def close(self) -> None:
        """The run is over: stop the profiler if the window is still open, give the tracer its plain row list."""
        if self._profiling:
            self._stop_profiler()
        if self._rows is not None and self._plain_rows is not None:
            self._plain_rows[:] = self._rows
            self.tracer.model_rows = self._plain_rows
            self._rows = None

    def _stop_profiler(self) -> None:
        self._profiling = False
        self._closed_ns = time.perf_counter_ns()
        try:
            self.profiler.stop()
        except Exception as e:  # runs on the SUT's thread too: nothing may escape into LoadGen
            self._fail(_problem("stop", e), e)

    def _fail(self, reason: str, error: Exception) -> None:
        if self._failure is None:
            self._failure = reason
        log.warning("framework trace failed (the evaluation goes on): %s", reason)
        log.debug("framework profiler error", exc_info=error)

    def attribute(self, model_spans: Sequence[Span]) -> FrameworkTrace:
        """Add the framework spans of the window's calls to the tracer; how far they cover the window.

        ``model_spans`` are the performance run's MODEL spans in call order (``materialize_model_spans``).
        """
        if self._profiling or self._rows is not None:
            self.close()
        if self._failure is not None:
            return self._trace("failed", 0, self._failure)
        closed_ns = self._closed_ns if self._closed_ns is not None else 2**63
        in_window = [span for span in model_spans if span.start_ns < closed_ns]
        first_call = self.window_calls - len(in_window)
        if first_call < 0:  # more model spans than counted calls: rows came from somewhere else
            reason = (
                f"{len(in_window)} model spans lie in the profiled window but only {self.window_calls} calls were "
                "counted in it, so operators cannot be attributed to queries"
            )
            return self._trace("failed", 0, reason)
        self.profiler.incomplete_reason = None
        try:
            spans = self.profiler.spans(self.tracer, model_span_times(in_window), first_call=first_call)
        except Exception as e:  # unreadable profile, counts that do not match, a framework error
            self._fail(_problem("reading its profile", e), e)
            return self._trace("failed", 0, self._failure or str(e))
        window_ids = {span.span_id for span in in_window}
        profiled = len({span.parent_id for span in spans} & window_ids)
        self.tracer.extend(spans)
        if profiled == self.window_calls:
            return self._trace("complete", profiled, None)
        reasons = [self.profiler.incomplete_reason] if self.profiler.incomplete_reason else []
        if first_call:
            reasons.append(
                f"the first {first_call} profiled calls belonged to a LoadGen run that was repeated (it ran out of "
                "queries) and their model spans were discarded"
            )
        if not reasons:
            reasons.append("the profile holds no operators for the other calls")
        reason = f"{profiled} of the {self.window_calls} profiled calls have operator spans: " + "; ".join(reasons)
        status: FrameworkTraceStatus = "partial" if profiled else "failed"
        log.warning("framework trace %s: %s", status, reason)
        return self._trace(status, profiled, reason)

    def _trace(self, status: FrameworkTraceStatus, profiled: int, reason: str | None) -> FrameworkTrace:
        return FrameworkTrace(
            status=status,
            max_calls=self.max_calls,
            window_calls=self.window_calls,
            profiled_calls=profiled,
            reason=reason,
        )
