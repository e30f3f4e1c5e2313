"""TensorFlow's own profiler as FRAMEWORK-level spans: one span per TF op executed inside each query.

The predictor wraps each call in a ``mlmodelscope_predict`` trace marker (``marker``). This module drives
TensorFlow's profiler (with the host tracer level its cost model needs), has the XSpace it writes read into plain
records (``tensorflow_xspace``) and leaves their pairing with the model spans (the trailing markers: a repeated
run's calls are profiled too) and the clock alignment to ``core.tracing.alignment.align_profile``. Event names,
levels, the bindings' option quirk, each call's ``FunctionRun`` and the clock: docs/tracing.md, "TensorFlow".
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mlmodelscope.agent.profilers.tensorflow_xspace import (
    FUNCTION_EVENT,
    MARKER,
    TfProfile,
    newest_profile,
    read_profile,
)
from mlmodelscope.core.errors import EvaluationError, FrameworkUnavailableError
from mlmodelscope.core.tracing.alignment import (
    CallCount,
    CallRecord,
    ClockRule,
    EventRecord,
    ProfileSource,
    align_profile,
    events_by_call,
)
from mlmodelscope.core.tracing.framework import ModelSpanTimes
from mlmodelscope.core.tracing.spans import Span
from mlmodelscope.core.tracing.tracer import Tracer

log = logging.getLogger(__name__)

FRAMEWORK = "tensorflow"
HOST_TRACER_LEVEL = 3
"""TraceMe verbosity: cheap ops are traced at level 3 only once TF's cost model has seen them (docs/tracing.md)."""


class _Level:
    """An int the profiler's bindings take as one: ``__index__`` but no ``__bool__`` (TF 2.21 reads a plain int
    option as a bool: docs/tracing.md)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return str(self.value)


def _import_tensorflow() -> Any:
    try:
        import tensorflow as tf
    except ImportError as e:
        raise FrameworkUnavailableError(
            "TensorFlow is not installed in this runtime, so its profile cannot be taken or read.",
            hint="`pip install 'mlmodelscope-agent[tensorflow]'`.",
        ) from e
    return tf


class TensorFlowProfiler:
    """A ``FrameworkProfiler`` over TensorFlow's profiler (XSpace in ``directory``).

    The predictor wraps each call in ``marker()`` (a context manager that records only while profiling);
    the runner calls ``start()``/``stop()`` around the measured run and then ``spans(tracer, model_span_times)``.
    """

    incomplete_reason: str | None = None

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.profile_path: Path | None = None
        self._tf: Any = None
        self._trace: Any = None
        self._steps: Iterator[int] = itertools.count()
        self._started_wall_ns: int | None = None
        self._active = False

    def bind(self, tf: Any) -> None:
        """Bind TensorFlow (the predictor does this in ``load``, so ``marker`` costs no import)."""
        self._tf = tf
        self._trace = tf.profiler.experimental.Trace

    def marker(self) -> Any:
        """The per-call marker: records only while a profiling session is active (otherwise ~1 µs)."""
        return self._trace(MARKER, step_num=next(self._steps), _r=1)

    def start(self) -> None:
        tf = self._tf if self._tf is not None else _import_tensorflow()
        if self._trace is None:
            self.bind(tf)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.profile_path = None
        self._steps = itertools.count()
        options = tf.profiler.experimental.ProfilerOptions(
            host_tracer_level=_Level(HOST_TRACER_LEVEL), python_tracer_level=_Level(0), device_tracer_level=_Level(1)
        )
        self._started_wall_ns = time.time_ns()
        try:
            try:
                tf.profiler.experimental.start(str(self.directory), options=options)
            except TypeError as e:  # bindings that refuse the int-like levels: TensorFlow's defaults (level 2)
                log.warning(
                    "TensorFlow's profiler refused its options (%s): cheap ops may be missing from the profile", e
                )
                tf.profiler.experimental.start(str(self.directory))
        except Exception as e:  # tf.errors.AlreadyExistsError, or a profiler that cannot start
            raise EvaluationError(
                f"the TensorFlow profiler could not start (writing to {self.directory}): {e}",
                hint="Only one TensorFlow profiling session can run per process: stop the other one "
                "(or run at --trace-level model).",
            ) from e
        self._active = True

    def stop(self) -> None:
        """Ends the profiling session; TensorFlow writes the XSpace now."""
        if not self._active:
            return
        self._active = False
        try:
            self._tf.profiler.experimental.stop()
        except Exception as e:  # tf.errors.UnavailableError and I/O errors from writing the profile
            raise EvaluationError(
                f"the TensorFlow profiler could not stop and write its profile into {self.directory}: {e}",
                hint="Check that the output folder is writable and has free space.",
            ) from e
        self.profile_path = newest_profile(self.directory, self._started_wall_ns or 0)

    def spans(self, tracer: Tracer, model_spans: Sequence[ModelSpanTimes], *, first_call: int = 0) -> list[Span]:
        if self.profile_path is None:
            raise EvaluationError(
                "the TensorFlow profiler has no profile: it was not started and stopped around the run.",
                hint="Call start() after the warm-up and stop() right after the measured run.",
            )
        profile = read_profile(self.profile_path)
        return profile_spans(profile, tracer, model_spans, source=str(self.profile_path), first_call=first_call)


def profile_spans(
    profile: TfProfile,
    tracer: Tracer,
    model_spans: Sequence[ModelSpanTimes],
    *,
    source: str = "the TensorFlow profile",
    first_call: int = 0,
) -> list[Span]:
    """FRAMEWORK-level spans of ``profile`` under ``model_spans`` (``core.tracing.alignment.align_profile``).

    ``model_spans[0]`` is profiled call ``first_call`` (the calls before it lost their model spans).
    """
    # Each call's outermost FunctionRun (the graph execution) first, then its ops.
    functions = [
        EventRecord(f.start_ns, f.end_ns, FUNCTION_EVENT, {"kind": "function", "step": call.step})
        for call, called in zip(profile.calls, events_by_call(profile.calls, profile.functions), strict=True)
        if called
        for f in [max(called, key=lambda f: f.end_ns - f.start_ns)]
    ]
    ops = (
        EventRecord(op.start_ns, op.end_ns, op.name, {"kind": "op", "node": op.node, "thread": op.thread}, op=op.name)
        for op in profile.ops
    )
    return align_profile(
        tracer,
        [CallRecord(call.start_ns, call.end_ns) for call in profile.calls],
        itertools.chain(functions, ops),
        model_spans,
        source=ProfileSource(
            FRAMEWORK,
            source,
            f"'{MARKER}' markers",
            hint="Profile with the TensorFlow predictor's own profiler (it marks every call), start it after the "
            "warm-up and stop it right after the run.",
            events_are="ops",
        ),
        clock=ClockRule.BRACKETED,
        first_call=first_call,
        count=CallCount.TRAILING,
    )
