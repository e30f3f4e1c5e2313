"""PyTorch's own profiler (``torch.profiler``, Kineto) as FRAMEWORK-level spans: the operators each query ran.

The PyTorch predictor marks every call with ``torch.profiler.record_function(PREDICT_EVENT)`` when profiling is
on (the closure is chosen in ``load``; without profiling there is no marker and no extra call). ``start()``
starts a ``torch.profiler.profile`` (CPU activity; CUDA too on a GPU) after the warm-up, ``stop()`` stops it and
copies the events Kineto kept into plain records; the profiler object is dropped then. Events used (torch 2.13)::

    mlmodelscope::predict  user_annotation  start_ns 1795934190125146903  duration_ns 193212090
    aten::conv2d           cpu_op           shapes [[2, 3, 32, 32], [8, 3, 3, 3], [8], [], ...]
                                            dtypes ['float', 'float', 'float', 'ScalarList', ...]
    void at::native::...   kernel           device_type CUDA (GPU builds only)

Eager modules and ``torch.export`` programs report ``aten::conv2d > aten::convolution > aten::_convolution >
aten::mkldnn_convolution``; TorchScript reports a ``forward`` function and then ``aten::_convolution`` (its graph
calls the lower-level op directly). The function becomes a span of kind "function", and the ops it called are at
depth 0, as the ops an eager model calls are; both ``aten::conv2d`` and ``aten::_convolution`` are canonical
``Conv2D``.

Alignment onto the tracer's clock (``perf_counter_ns``), per query:

1. the k-th ``mlmodelscope::predict`` event belongs to the k-th call of the profiled window, so to model span
   ``k - first_call`` (the driver calls the predictor sequentially, and only calls between ``start()`` and
   ``stop()`` are recorded; the runner's window stops the profiler right after its N-th call, possibly on
   LoadGen's thread). A different count is an error.
2. Kineto's timestamps are converted with one offset, the median over the calls of (model span start - call
   event start): the marker opens within microseconds of the SUT's clock read, so this holds whatever clock
   Kineto uses (it has changed between torch versions). Each call is then moved, never stretched, just far
   enough to lie inside its model span (``framework.shift_into``); a call longer than its span is scaled down.
3. every operator (CPU events on any thread) and GPU kernel whose start lies within a call keeps its offset from
   the call's start, and is clipped to the model span (``framework.clip_into``).

Spans produced (FRAMEWORK level, parent = the model span): the call itself (name ``mlmodelscope::predict``, kind
"call") and every operator, named by the op (``aten::conv2d``), with attributes op_type (canonical, ``Conv2D``:
``core.tracing.op_types``), framework_op (``aten::conv2d``), kind "op" ("kernel" for GPU work), framework
"pytorch", depth (0 for ops the model called directly, 1 for the ops they called, ...), and input_shapes
(``"float[2,3,32,32] float[8,3,3,3] float[8]"``; non-tensor arguments are left out).

Cost: profiling adds a few µs per operator (more with shapes recorded) to the measured latency at FRAMEWORK
level, and Kineto keeps every event of the window in memory until ``stop()``. torch's own Chrome trace is not
written: the spans carry the same events, and exporting it costs seconds per million events.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mlmodelscope.core.errors import EvaluationError, FrameworkUnavailableError
from mlmodelscope.core.tracing.framework import ModelSpanTimes, framework_span, shift_into
from mlmodelscope.core.tracing.spans import AttributeValue, Span, TraceLevel
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
    """FRAMEWORK-level spans of ``profile`` under ``model_spans`` (see the module docstring for the alignment).

    ``model_spans[0]`` is profiled call ``first_call`` (the calls before it lost their model spans).
    """
    if not tracer.enabled(TraceLevel.FRAMEWORK):
        return []
    calls = profile.calls
    if len(calls) != first_call + len(model_spans):
        skipped = f" after {first_call} profiled calls whose model spans were discarded" if first_call else ""
        raise EvaluationError(
            f"the PyTorch profile has {len(calls)} '{PREDICT_EVENT}' calls but {len(model_spans)} model spans were "
            f"recorded{skipped}, so operators cannot be attributed to queries.",
            hint="Start the profiler after the warm-up, stop it right after the run, and call the predictor from "
            "nowhere else meanwhile.",
        )
    calls = calls[first_call:]
    if not calls:
        return []
    offset_ns = round(statistics.median(span[1] - call.start_ns for call, span in zip(calls, model_spans, strict=True)))
    call_starts = [call.start_ns for call in calls]
    events_by_call: list[list[TorchEvent]] = [[] for _ in calls]
    for event in profile.events:
        k = bisect.bisect_right(call_starts, event.start_ns) - 1
        if k >= 0 and event.start_ns <= calls[k].end_ns:
            events_by_call[k].append(event)

    out: list[Span] = []
    for call, events, parent in zip(calls, events_by_call, model_spans, strict=True):
        _, parent_start_ns, parent_end_ns = parent
        parent_ns = max(parent_end_ns - parent_start_ns, 0)
        call_ns = call.end_ns - call.start_ns
        scale = parent_ns / call_ns if call_ns > parent_ns else 1.0
        call_ns = round(call_ns * scale)
        call_start_ns = shift_into(call.start_ns + offset_ns, call_ns, parent_start_ns, parent_end_ns)
        call_attributes: dict[str, AttributeValue] = {"kind": "call"}
        out.append(
            framework_span(
                tracer, parent, call_start_ns, call_start_ns + call_ns, call.name, call_attributes, framework=FRAMEWORK
            )
        )
        open_ends: dict[int, list[int]] = {}
        for event in events:
            stack = open_ends.setdefault(event.thread, [])
            while stack and stack[-1] <= event.start_ns:
                stack.pop()
            kind = _kind(event)
            attributes: dict[str, AttributeValue] = {"kind": kind, "depth": len(stack) if kind == "op" else 0}
            if event.input_shapes:
                attributes["input_shapes"] = event.input_shapes
            if kind == "op":
                stack.append(event.end_ns)
            start_ns = call_start_ns + round((event.start_ns - call.start_ns) * scale)
            end_ns = start_ns + round((event.end_ns - event.start_ns) * scale)
            out.append(
                framework_span(
                    tracer,
                    parent,
                    start_ns,
                    end_ns,
                    event.name[:256],
                    attributes,
                    framework=FRAMEWORK,
                    op=None if kind == "function" else event.name,
                )
            )
    return out


def _kind(event: TorchEvent) -> str:
    """ "function" for a TorchScript function (``forward``: the model itself, not an op; operators always have a
    namespace, ``aten::``), else the event's own kind. Functions do not deepen ``depth``, so the ops the model
    called are at depth 0 in every format."""
    if event.kind == "op" and "::" not in event.name:
        return "function"
    return event.kind
