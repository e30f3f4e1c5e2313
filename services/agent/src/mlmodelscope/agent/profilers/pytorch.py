"""PyTorch's own profiler (``torch.profiler``, Kineto) as FRAMEWORK-level spans: the operators each query ran.

The predictor marks every call with ``torch.profiler.record_function(PREDICT_EVENT)`` while profiling; this
module starts and stops the profiler, copies Kineto's events into plain records and leaves their pairing with
the model spans and the clock alignment to ``core.tracing.alignment.align_profile``. What is framework-specific
stays here: TorchScript's ``forward`` is a span of kind "function" (not an op, no depth), GPU kernels have kind
"kernel", and CPU ops nest per thread (``depth``). Event names, clocks and formats: docs/tracing.md, section
"PyTorch".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mlmodelscope.core.errors import EvaluationError, FrameworkUnavailableError
from mlmodelscope.core.tracing.alignment import CallRecord, ClockRule, EventRecord, ProfileSource, align_profile
from mlmodelscope.core.tracing.framework import ModelSpanTimes
from mlmodelscope.core.tracing.spans import AttributeValue, Span
from mlmodelscope.core.tracing.tracer import Tracer

PREDICT_EVENT = "mlmodelscope::predict"
FRAMEWORK = "pytorch"
_GPU_DEVICE_TYPES = frozenset({"CUDA", "HIP", "XPU", "MPS"})


@dataclass(frozen=True, slots=True)
class TorchEvent:
    """One complete event of the profile, in Kineto's clock (ns)."""

    name: str
    start_ns: int
    end_ns: int
    kind: str  # "call" (the predictor's marker), "op" (CPU) or "kernel" (GPU)
    thread: int = 0
    input_shapes: str = ""


@dataclass(frozen=True, slots=True)
class TorchProfile:
    """The predictor's call markers and the other events, each sorted by start."""

    calls: list[TorchEvent]
    events: list[TorchEvent]


def read_events(kineto_events: Iterable[Any]) -> TorchProfile:
    """Plain records of Kineto's events (``profile.profiler.kineto_results.events()``)."""
    calls: list[TorchEvent] = []
    events: list[TorchEvent] = []
    for raw in kineto_events:
        name = str(raw.name())
        start_ns = int(raw.start_ns())
        end_ns = start_ns + max(int(raw.duration_ns()), 0)
        if name == PREDICT_EVENT:
            calls.append(TorchEvent(name, start_ns, end_ns, "call", int(raw.start_thread_id())))
            continue
        device = str(raw.device_type()).rsplit(".", 1)[-1]
        if device in _GPU_DEVICE_TYPES:
            events.append(TorchEvent(name, start_ns, end_ns, "kernel"))
        elif device == "CPU" and not raw.is_user_annotation():
            shapes = _shapes(raw.shapes(), raw.dtypes())
            events.append(TorchEvent(name, start_ns, end_ns, "op", int(raw.start_thread_id()), shapes))
    calls.sort(key=lambda e: e.start_ns)
    events.sort(key=lambda e: (e.start_ns, -e.end_ns))
    return TorchProfile(calls=calls, events=events)


def _shapes(shapes: Sequence[Sequence[int]], dtypes: Sequence[str]) -> str:
    """Tensor arguments as ``"float[2,3,32,32] float[8]"``; scalars, lists and None arguments are left out."""
    parts = [
        f"{dtype}[{','.join(map(str, shape))}]"
        for shape, dtype in zip(shapes, dtypes, strict=False)
        if dtype and "List" not in dtype and dtype not in ("Scalar", "None", "String", "Device")
    ]
    return " ".join(parts)


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as e:  # the predictor imported it already; only a direct user can get here
        raise FrameworkUnavailableError(
            "PyTorch is not installed in this runtime.", hint="`pip install 'mlmodelscope-agent[pytorch]'`."
        ) from e
    return torch


class PyTorchProfiler:
    """A ``FrameworkProfiler`` over ``torch.profiler``.

    Use: predict under ``torch.profiler.record_function(PREDICT_EVENT)``; ``start()``/``stop()`` around the
    measured run; then ``spans(tracer, model_span_times)``.
    """

    incomplete_reason: str | None = None

    def __init__(self, *, cuda: bool = False, record_shapes: bool = True) -> None:
        self.cuda = cuda
        self.record_shapes = record_shapes
        self._profile: Any = None
        self.profile: TorchProfile | None = None

    def start(self) -> None:
        torch = _import_torch()
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.cuda:
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profile = None
        self._profile = torch.profiler.profile(activities=activities, record_shapes=self.record_shapes)
        self._profile.start()

    def stop(self) -> None:
        """Stop profiling and keep the events (the torch profiler object is released); again: a no-op."""
        if self._profile is None and self.profile is not None:
            return
        if self._profile is None:
            raise EvaluationError(
                "the PyTorch profiler was stopped without being started.",
                hint="Call PyTorchProfiler.start() before the measured run.",
            )
        profile, self._profile = self._profile, None
        profile.stop()
        self.profile = read_events(profile.profiler.kineto_results.events())

    def spans(self, tracer: Tracer, model_spans: Sequence[ModelSpanTimes], *, first_call: int = 0) -> list[Span]:
        if self.profile is None:
            raise EvaluationError(
                "the PyTorch profiler has no profile: it was not started and stopped around the run.",
                hint="Call start() after the warm-up and stop() right after the run, then spans().",
            )
        return profile_spans(self.profile, tracer, model_spans, first_call=first_call)


def profile_spans(
    profile: TorchProfile, tracer: Tracer, model_spans: Sequence[ModelSpanTimes], *, first_call: int = 0
) -> list[Span]:
    """FRAMEWORK-level spans of ``profile`` under ``model_spans`` (``core.tracing.alignment.align_profile``).

    ``model_spans[0]`` is profiled call ``first_call`` (the calls before it lost their model spans).
    """
    return align_profile(
        tracer,
        [CallRecord(call.start_ns, call.end_ns, call.name, {"kind": "call"}) for call in profile.calls],
        (_record(event) for event in profile.events),
        model_spans,
        source=ProfileSource(
            FRAMEWORK,
            "the PyTorch profile",
            f"'{PREDICT_EVENT}' calls",
            hint="Start the profiler after the warm-up, stop it right after the run, and call the predictor from "
            "nowhere else meanwhile.",
        ),
        clock=ClockRule.MEDIAN_START,
        first_call=first_call,
    )


def _record(event: TorchEvent) -> EventRecord:
    """The event's record: CPU ops nest per thread (``depth``); functions and GPU kernels are at depth 0."""
    kind = _kind(event)
    attributes: dict[str, AttributeValue] = {"kind": kind, "depth": 0}
    if event.input_shapes:
        attributes["input_shapes"] = event.input_shapes
    if kind == "op":
        return EventRecord(event.start_ns, event.end_ns, event.name, attributes, op=event.name, track=event.thread)
    op = None if kind == "function" else event.name
    return EventRecord(event.start_ns, event.end_ns, event.name, attributes, op=op)


def _kind(event: TorchEvent) -> str:
    """ "function" for a TorchScript function (``forward``: the model itself, not an op; operators always have a
    namespace, ``aten::``), else the event's own kind. Functions do not deepen ``depth``, so the ops the model
    called are at depth 0 in every format."""
    if event.kind == "op" and "::" not in event.name:
        return "function"
    return event.kind
