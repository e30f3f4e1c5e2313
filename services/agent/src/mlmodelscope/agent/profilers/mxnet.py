"""MXNet's own profiler as FRAMEWORK-level spans: one span per operator run inside each query.

MXNet has one process-wide profiler that dumps Chrome-trace JSON; its operators carry no call id, so the
predictor's ``predict`` is wrapped in a profiler task (``wrap``) that delimits each call. This module drives the
profiler (tolerating its re-configuration quirk), has the dump read into plain records (``mxnet_json``), picks
the calls of the profiled window and leaves their pairing with the model spans and the clock alignment to
``core.tracing.alignment.align_profile``. What MXNet records (fused and bulked operators, engine events, the
continuation-fragment dumps): docs/tracing.md, section "MXNet".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.profilers.mxnet_json import CALL_TASK, DOMAIN, MXNetEvent, MXNetProfile, read_profile
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.tracing.alignment import CallRecord, EventRecord, ProfileSource, align_profile
from mlmodelscope.core.tracing.framework import ModelSpanTimes
from mlmodelscope.core.tracing.spans import AttributeValue, Span, TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer

log = logging.getLogger(__name__)

FRAMEWORK = "mxnet"

Predict = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]

_configured_in_this_process = False


class MXNetProfiler:
    """A ``FrameworkProfiler`` over MXNet's process-wide profiler.

    Use: ``attach(mx.profiler)`` once MXNet is imported (the module never imports it itself); ``wrap(predict)``
    gives the ``predict`` that marks each call; ``start()``/``stop()`` around the measured run; then
    ``spans(tracer, model_span_times)``.
    """

    incomplete_reason: str | None = None

    def __init__(self, directory: Path, filename: str = "mxnet_profile.json") -> None:
        self.directory = directory
        self.profile_path = directory / filename
        self._api: Any = None
        self._task: Any = None
        self._window_start_ns: int | None = None
        self._window_end_ns: int | None = None
        self._dumped = False

    def attach(self, profiler_api: Any) -> None:
        """Remember ``mx.profiler`` and create the task that marks each ``predict`` call."""
        self._api = profiler_api
        self._task = profiler_api.Task(profiler_api.Domain(DOMAIN), CALL_TASK)

    def wrap(self, predict: Predict) -> Predict:
        """``predict`` between the call task's start and stop (the profiled hot path: two C calls more)."""
        if self._task is None:
            raise EvaluationError(
                "the MXNet profiler is not attached.", hint="Call MXNetProfiler.attach(mx.profiler) first."
            )
        task_start, task_stop = self._task.start, self._task.stop

        def profiled(inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
            task_start()
            try:
                return predict(inputs)
            finally:
                task_stop()

        return profiled

    def start(self) -> None:
        global _configured_in_this_process
        if self._api is None:
            raise EvaluationError(
                "the MXNet profiler is not attached.", hint="Call MXNetProfiler.attach(mx.profiler) first."
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        settings = {
            "filename": str(self.profile_path),
            "profile_symbolic": True,
            "profile_imperative": True,
            "profile_memory": False,
            "profile_api": False,
            "aggregate_stats": False,
        }
        try:
            self._api.set_config(**settings)
        except Exception as e:  # MXNetError; only the known re-configuration quirk is tolerated
            if not (_configured_in_this_process and "auto_remove_" in str(e)):
                raise EvaluationError(
                    f"MXNet's profiler refused its configuration {settings}: {e}",
                    hint="Check that the profile folder is writable.",
                ) from e
            log.debug("MXNet profiler re-configured (its 'auto_remove_' check fails after applying): %s", e)
        _configured_in_this_process = True
        self._dumped = False
        self._window_start_ns = time.time_ns()
        self._window_end_ns = None
        self._api.set_state("run")

    def stop(self) -> None:
        """Stops profiling and has MXNet write the profile; again: a no-op."""
        if self._api is None or self._window_start_ns is None or self._window_end_ns is not None:
            return
        self._api.set_state("stop")
        self._window_end_ns = time.time_ns()
        if not self._dumped:
            self._api.dump(finished=True)
            self._dumped = True

    def spans(self, tracer: Tracer, model_spans: Sequence[ModelSpanTimes], *, first_call: int = 0) -> list[Span]:
        if not tracer.enabled(TraceLevel.FRAMEWORK):
            return []
        return profile_spans(
            read_profile(self.profile_path),
            tracer,
            model_spans,
            window_start_ns=self._window_start_ns,
            window_end_ns=self._window_end_ns,
            source=str(self.profile_path),
            first_call=first_call,
        )


def profile_spans(
    profile: MXNetProfile,
    tracer: Tracer,
    model_spans: Sequence[ModelSpanTimes],
    *,
    window_start_ns: int | None = None,
    window_end_ns: int | None = None,
    source: str = "the MXNet profile",
    first_call: int = 0,
) -> list[Span]:
    """FRAMEWORK-level spans of ``profile`` under ``model_spans`` (``core.tracing.alignment.align_profile``).

    The window (wall ns, from ``start``/``stop``) selects the calls that belong to the model spans; ``None``
    leaves that side open. ``model_spans[0]`` is the window's call ``first_call``.
    """
    # Timestamps are truncated to µs: compare in µs, rounding the window outwards.
    lo_us = window_start_ns // 1000 if window_start_ns is not None else 0
    hi_us = -(-window_end_ns // 1000) if window_end_ns is not None else 2**63
    calls = [c for c in profile.calls if c.start_us >= lo_us and c.end_us <= hi_us]
    return align_profile(
        tracer,
        [CallRecord(call.start_us * 1000, call.end_us * 1000) for call in calls],
        (_record(operator) for operator in profile.operators),
        model_spans,
        source=ProfileSource(
            FRAMEWORK,
            source,
            "predict calls in the traced window",
            hint="Start the profiler after the warm-up, stop it right after the run, and do not call the predictor "
            "from elsewhere meanwhile.",
        ),
        clock=-tracer.epoch_offset_ns,
        first_call=first_call,
    )


def _record(operator: MXNetEvent) -> EventRecord:
    """The operator's record; a bulked event (``[op1,op2,...]``) has kind "bulk"."""
    bulked = operator.name.startswith("[") and operator.name.endswith("]")
    attributes: dict[str, AttributeValue] = {"kind": "bulk" if bulked else "op"}
    return EventRecord(operator.start_us * 1000, operator.end_us * 1000, operator.name, attributes, op=operator.name)
