"""MXNet's own profiler as FRAMEWORK-level spans: one span per operator run inside each query.

MXNet (studied on 1.9.1) has one process-wide profiler: ``mx.profiler.set_config(filename=..., profile_symbolic=...,
profile_imperative=...)``, ``set_state("run"/"stop")`` and ``dump()``, which writes every event recorded so far as
Chrome-trace JSON. The events used here::

    {"name": "_sg_mkldnn_conv", "cat": "operator", "ph": "B", "ts": 1795934398764679, "pid": 0, "tid": 1455...}
    {"name": "_sg_mkldnn_conv", "cat": "operator", "ph": "E", "ts": 1795934398764756, "pid": 0, "tid": 1455...}
    {"name": "predict", "cat": "mlmodelscope", "ph": "b", "ts": 1795934379131635, "id": 1735..., "pid": ..., ...}
    {"name": "predict", "cat": "mlmodelscope", "ph": "e", "ts": 1795934379135663, "id": 1735..., "pid": ..., ...}

* ``ts`` is integer microseconds of the wall clock (``high_resolution_clock``, the system clock on Linux), the
  clock of ``time.time_ns()``.
* Operators are ``B``/``E`` pairs on the device's track (pid 0 = ``cpu/0``), one pair per engine operation, on the
  engine's worker thread. MXNet repeats each as an async ``b``/``e`` pair under an ``operator`` domain; only the
  ``B``/``E`` (or ``X``) form is read. With MKL-DNN (oneDNN) the graph is rewritten before it runs, so fused
  operators appear under their fused names (``_sg_mkldnn_conv`` is Convolution+Activation,
  ``_sg_mkldnn_fully_connected`` is FullyConnected); the span names are what MXNet ran.
* The graph executor bulks consecutive operators into one engine operation at inference
  (``MXNET_EXEC_BULK_EXEC_INFERENCE``, on by default), profiled as one event named ``[op1,op2,...]``; the predictor
  binds with bulking off while profiling so that every operator is its own event (a bulked event that still turns
  up becomes one span of kind "bulk", op_type "Bulk", with the ops it ran as its fused_ops).
* Span names are what MXNet ran; attributes op_type (canonical: ``_sg_mkldnn_conv`` -> ``Conv2D``,
  ``FullyConnected`` -> ``MatMul``; ``core.tracing.op_types``), framework_op (MXNet's name), kind, framework.
* ``WaitForVar`` / ``WaitForAll`` / ``DeleteVariable`` are the engine's own bookkeeping, not operators, and are
  skipped.

Delimiting calls: the operators carry no call id, so the predictor wraps each ``predict`` in a profiler ``Task``
(``mx.profiler.Task(domain, "predict")``: ``start()`` / ``stop()``, two C calls), recorded as a ``b``/``e`` pair
in the domain ``mlmodelscope``. MXNet records task events even while the profiler is stopped, so the tasks taken
are those inside the wall-clock window between ``start()`` and ``stop()`` (the runner's window stops the
profiler right after its N-th call); the k-th of them belongs to the k-th call of the window, so to model span
``k - first_call`` (the driver calls the predictor sequentially), and owns the operators that start inside it.

Alignment onto the tracer's clock, per call (as the ONNX Runtime adapter does): the task's start is estimated as
its wall-clock time minus the tracer's ``epoch_offset_ns``, then moved (never stretched) just far enough to lie
inside its model span (``framework.shift_into``); a task longer than its span (µs truncation) is scaled down to
it. Each operator keeps its offset from its task's start and its duration, and is clipped into the model span
(``framework.clip_into``).

MXNet quirks handled here: the profiler can be configured once per process; configuring it again (a second
profiled predictor in the same process) raises "Check failed: auto_remove_ == false" from the dump thread group
*after* applying the new settings, and every dump after the first ``dump(finished=True)`` is a continuation
fragment (``,`` + events + ``]}``) rather than a whole document. Both are tolerated: the error is ignored from the
second configuration on, and ``read_profile`` completes a fragment.

Cost: while profiling, each operator is its own engine operation (no bulking) and MXNet timestamps every one,
so FRAMEWORK-level latencies include that overhead; with no ``profile_dir`` none of this exists (the predictor
binds its plain ``predict``).
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.tracing.framework import ModelSpanTimes, framework_span, shift_into
from mlmodelscope.core.tracing.spans import AttributeValue, Span, TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer

log = logging.getLogger(__name__)

DOMAIN = "mlmodelscope"
FRAMEWORK = "mxnet"
CALL_TASK = "predict"
ENGINE_EVENTS = frozenset({"WaitForVar", "WaitForAll", "DeleteVariable"})
_PROFILE_HINT = (
    "MXNet writes the profile when the run stops; a run cut short leaves none or a partial one: run it again."
)

Predict = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]

_configured_in_this_process = False


class MXNetEvent(BaseModel):
    """One interval of MXNet's profile: an operator, or one ``predict`` call (a task)."""

    model_config = ConfigDict(frozen=True)

    name: str
    start_us: int = Field(ge=0, description="Wall clock, µs since the epoch.")
    end_us: int = Field(ge=0, description="Wall clock, µs since the epoch.")


class MXNetProfile(BaseModel):
    """The ``predict`` tasks and the operators of one profile, each sorted by start."""

    model_config = ConfigDict(frozen=True)

    calls: list[MXNetEvent]
    operators: list[MXNetEvent]


def _events_of(text: str, path: Path) -> list[Any]:
    """The trace events of a whole document, or of a continuation fragment (every dump after the first)."""
    body = text.strip()
    if body.startswith(","):
        body = '{"traceEvents": [' + body[1:]
    try:
        document = json.loads(body)
    except json.JSONDecodeError as e:
        reason = "it is empty" if not body else f"it is not JSON ({e})"
        raise EvaluationError(f"the MXNet profile {path} cannot be used: {reason}.", hint=_PROFILE_HINT) from e
    events = document.get("traceEvents") if isinstance(document, dict) else document
    if not isinstance(events, list):
        raise EvaluationError(
            f"the MXNet profile {path} has no list of trace events (got {type(document).__name__}).",
            hint=_PROFILE_HINT,
        )
    return events


def read_profile(path: Path, *, domain: str = DOMAIN) -> MXNetProfile:
    """Pair MXNet's begin/end events into operators and ``predict`` calls; EvaluationError when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise EvaluationError(f"cannot read the MXNet profile {path}: {e}", hint=_PROFILE_HINT) from e
    calls: list[MXNetEvent] = []
    operators: list[MXNetEvent] = []
    open_operators: dict[tuple[Any, Any, str], list[int]] = {}
    open_calls: dict[Any, int] = {}
    for index, raw in enumerate(_events_of(text, path)):
        if not isinstance(raw, dict):
            raise EvaluationError(
                f"event {index} of the MXNet profile {path} is not a JSON object.", hint=_PROFILE_HINT
            )
        phase, name, ts = raw.get("ph"), raw.get("name"), raw.get("ts")
        if phase == "M":
            continue
        if not isinstance(name, str) or not isinstance(ts, int) or ts < 0:
            raise EvaluationError(
                f"event {index} of the MXNet profile {path} lacks a name or an integer 'ts': {raw!r:.200}.",
                hint=_PROFILE_HINT,
            )
        category = raw.get("cat")
        if category == domain and name == CALL_TASK and phase in ("b", "e"):
            key = raw.get("id")
            if phase == "b":
                open_calls[key] = ts
            elif key in open_calls:
                calls.append(MXNetEvent(name=name, start_us=open_calls.pop(key), end_us=ts))
        elif category == "operator" and name not in ENGINE_EVENTS:
            if phase == "X":
                operators.append(MXNetEvent(name=name, start_us=ts, end_us=ts + int(raw.get("dur", 0))))
            elif phase in ("B", "E"):
                stack = open_operators.setdefault((raw.get("pid"), raw.get("tid"), name), [])
                if phase == "B":
                    stack.append(ts)
                elif stack:
                    operators.append(MXNetEvent(name=name, start_us=stack.pop(), end_us=ts))
    calls.sort(key=lambda e: e.start_us)
    operators.sort(key=lambda e: e.start_us)
    return MXNetProfile(calls=calls, operators=operators)


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
    """FRAMEWORK-level spans of ``profile`` under ``model_spans`` (see the module docstring for the alignment).

    The window (wall ns, from ``start``/``stop``) selects the calls that belong to the model spans; ``None``
    leaves that side open. ``model_spans[0]`` is the window's call ``first_call``.
    """
    if not tracer.enabled(TraceLevel.FRAMEWORK):
        return []
    # Timestamps are truncated to µs: compare in µs, rounding the window outwards.
    lo_us = window_start_ns // 1000 if window_start_ns is not None else 0
    hi_us = -(-window_end_ns // 1000) if window_end_ns is not None else 2**63
    calls = [c for c in profile.calls if c.start_us >= lo_us and c.end_us <= hi_us]
    if len(calls) != first_call + len(model_spans):
        skipped = f" after {first_call} profiled calls whose model spans were discarded" if first_call else ""
        raise EvaluationError(
            f"{source} has {len(calls)} predict calls in the traced window but {len(model_spans)} model spans were "
            f"recorded{skipped}, so operators cannot be attributed to queries.",
            hint="Start the profiler after the warm-up, stop it right after the run, and do not call the predictor "
            "from elsewhere meanwhile.",
        )
    call_starts = [c.start_us for c in calls]
    operators_by_call: list[list[MXNetEvent]] = [[] for _ in calls]
    for operator in profile.operators:
        k = bisect.bisect_right(call_starts, operator.start_us) - 1
        if k >= 0 and operator.start_us <= calls[k].end_us:
            operators_by_call[k].append(operator)

    out: list[Span] = []
    calls, operators_by_call = calls[first_call:], operators_by_call[first_call:]
    for call, operators, parent in zip(calls, operators_by_call, model_spans, strict=True):
        _, parent_start_ns, parent_end_ns = parent
        parent_ns = max(parent_end_ns - parent_start_ns, 0)
        call_ns = (call.end_us - call.start_us) * 1000
        scale = parent_ns / call_ns if call_ns > parent_ns else 1.0
        call_ns = round(call_ns * scale)
        estimate_ns = call.start_us * 1000 - tracer.epoch_offset_ns
        call_start_ns = shift_into(estimate_ns, call_ns, parent_start_ns, parent_end_ns)
        for operator in operators:
            start_ns = call_start_ns + round((operator.start_us - call.start_us) * 1000 * scale)
            end_ns = start_ns + round((operator.end_us - operator.start_us) * 1000 * scale)
            out.append(
                framework_span(
                    tracer,
                    parent,
                    start_ns,
                    end_ns,
                    operator.name[:256],
                    _attributes(operator.name),
                    framework=FRAMEWORK,
                    op=operator.name,
                )
            )
    return out


def _attributes(name: str) -> dict[str, AttributeValue]:
    bulked = name.startswith("[") and name.endswith("]")
    return {"kind": "bulk" if bulked else "op"}
