"""ONNX Runtime's own profiler as FRAMEWORK-level spans: one span per operator (node) run inside each query.

ORT profiles when ``SessionOptions.enable_profiling`` is set *before* the session is created, keeps every event
in memory and writes them as one JSON array when ``InferenceSession.end_profiling()`` is called (which also
ends profiling for the rest of that session). The events used here (studied on ORT 1.32)::

    {"cat": "Session", "name": "model_run", "ph": "X", "ts": 20391, "dur": 388, "args": {}}
    {"cat": "Node", "name": "/1/Relu_output_0_nchwc_kernel_time", "ph": "X", "ts": 20421, "dur": 211,
     "args": {"op_name": "Conv", "provider": "CPUExecutionProvider", "node_index": "10",
              "input_type_shape": [{"float": [4, 1, 8, 8]}, ...], "output_type_shape": [{"float": [4, 16, 8, 8]}]}}

``ts``/``dur`` are integer microseconds since ``session.get_profiling_start_time_ns()`` (wall-clock ns: ORT's
``high_resolution_clock`` is the system clock on Linux). There is one ``model_run`` per ``session.run`` and one
``Node`` event per kernel executed (after graph optimisation: a fused Conv+Relu is one ``Conv`` node named after
the Relu's output); ``SequentialExecutor::Execute`` and session set-up events are ignored.

Alignment onto the tracer's clock (``perf_counter_ns``), per query:

1. the ``model_run`` events that ran between ``start()`` and ``stop()`` (wall clock) are taken in order;
   the k-th belongs to the k-th call of the profiled window (the driver calls the predictor sequentially), so
   to model span ``k - first_call``. Warm-up runs before ``start()`` are skipped. ``stop()`` ends ORT's
   profiling (``end_profiling``): the runner's window calls it right after its N-th call, so a run of any
   length yields a profile of at most N runs. A different count is an error (the pairing would be wrong),
   except when ORT hit its event limit (``ORT_MAX_EVENTS``, warm-up and accuracy runs included): the runs it
   kept are the first ones, they get their spans, and ``incomplete_reason`` says why the others have none.
2. the run's start is estimated as ORT's wall-clock time minus the tracer's ``epoch_offset_ns``; the run is
   then moved (never stretched), only as far as needed, to lie inside its model span — the model span measures
   the whole ``predict`` call, which contains ORT's run plus Python-side input/output handling
   (``framework.shift_into``). Measured on the digits model, the estimate puts the run ~10-20 µs after the
   span's start and, µs truncation and clock-mapping error included, up to ~3 µs past its end, which the shift
   corrects. A run longer than its span (µs rounding) is scaled down to the span.
3. each node keeps its offset from its run's start (and its duration), and is finally clipped to the model span
   (``framework.clip_into``). Each node belongs to the ``model_run`` whose interval contains its start.

Spans produced (FRAMEWORK level, parent = the model span): ``model_run`` itself (kind "session") and every node
(named by ORT's op type, e.g. "Conv"; attributes op_type (canonical, "Conv2D": ``core.tracing.op_types``),
framework_op ("Conv"), node, node_index, provider, input_shapes, output_shapes, kind "node").

Cost: profiling is on from the session's creation until ``stop()`` (the end of the profiled window; ORT
cannot pause and resume), so at FRAMEWORK level the latency of warm-up, accuracy and window calls includes
ORT's per-node profiling overhead (a few µs per node); ORT keeps at most 1,000,000 events in memory.
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.tracing.framework import ModelSpanTimes, framework_span, shift_into
from mlmodelscope.core.tracing.spans import AttributeValue, Span, TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer

RUN_EVENT = "model_run"
FRAMEWORK = "onnxruntime"
_KERNEL_SUFFIX = "_kernel_time"
_PROFILE_HINT = (
    "ONNX Runtime writes the profile when the run ends; a run cut short leaves none or a partial one: run it again."
)


class OrtEvent(BaseModel):
    """One complete event of ORT's profile (only the fields the adapter reads; the rest are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    cat: str
    name: str
    ph: str = "X"
    ts: int = Field(ge=0, description="µs since the profiling start.")
    dur: int = Field(ge=0, description="µs.")
    args: dict[str, Any] = Field(default_factory=dict)


class OrtProfile(BaseModel):
    """The ``model_run`` events and node events of one profile, each sorted by start."""

    model_config = ConfigDict(frozen=True)

    runs: list[OrtEvent]
    nodes: list[OrtEvent]
    event_count: int = Field(default=0, ge=0, description="Every event in the file, of any kind (ORT's limit).")


def read_profile(path: Path) -> OrtProfile:
    """Parse ORT's profile JSON; EvaluationError saying what is wrong where when it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise EvaluationError(f"cannot read the ONNX Runtime profile {path}: {e}", hint=_PROFILE_HINT) from e
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        reason = "it is empty" if not text.strip() else f"it is not JSON ({e})"
        raise EvaluationError(f"the ONNX Runtime profile {path} cannot be used: {reason}.", hint=_PROFILE_HINT) from e
    events = document.get("traceEvents") if isinstance(document, dict) else document
    if not isinstance(events, list):
        raise EvaluationError(
            f"the ONNX Runtime profile {path} is not a list of trace events (got {type(document).__name__}).",
            hint=_PROFILE_HINT,
        )
    runs: list[OrtEvent] = []
    nodes: list[OrtEvent] = []
    for index, raw in enumerate(events):
        if not isinstance(raw, dict):
            raise EvaluationError(
                f"event {index} of the ONNX Runtime profile {path} is not a JSON object.", hint=_PROFILE_HINT
            )
        cat, name = raw.get("cat"), raw.get("name")
        if not ((cat == "Session" and name == RUN_EVENT) or cat == "Node"):
            continue
        try:
            event = OrtEvent.model_validate(raw)
        except ValidationError as e:
            problem = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise EvaluationError(
                f"event {index} ({cat} {name!r}) of the ONNX Runtime profile {path} is malformed: {problem}.",
                hint=_PROFILE_HINT,
            ) from e
        (runs if cat == "Session" else nodes).append(event)
    runs.sort(key=lambda e: e.ts)
    nodes.sort(key=lambda e: e.ts)
    return OrtProfile(runs=runs, nodes=nodes, event_count=len(events))


class OnnxRuntimeProfiler:
    """A ``FrameworkProfiler`` over ORT's profiling JSON.

    Use: ``configure(options)`` before ``InferenceSession(..., sess_options=options)``; ``attach(session)``
    right after; ``start()``/``stop()`` around the measured run; then ``spans(tracer, model_span_times)``.
    """

    incomplete_reason: str | None = None

    def __init__(self, directory: Path, prefix: str = "onnxruntime_profile") -> None:
        self.directory = directory
        self.prefix = prefix
        self.profile_path: Path | None = None
        self._session: Any = None
        self._profiling_start_ns = 0
        self._window_start_ns: int | None = None
        self._window_end_ns: int | None = None

    def configure(self, session_options: Any) -> None:
        """Turn profiling on in ORT ``SessionOptions`` (must happen before the session is created)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        session_options.enable_profiling = True
        session_options.profile_file_prefix = str(self.directory / self.prefix)

    def attach(self, session: Any) -> None:
        """Remember the session created with the configured options, and ORT's profiling start (wall ns)."""
        self._session = session
        self._profiling_start_ns = int(session.get_profiling_start_time_ns())

    def start(self) -> None:
        self._window_start_ns = time.time_ns()
        self._window_end_ns = None

    def stop(self) -> None:
        """Ends ORT profiling (ORT writes the JSON now; the session is no longer profiled). Idempotent."""
        if self._window_end_ns is None:
            self._window_end_ns = time.time_ns()
        self.collect()

    def collect(self) -> Path:
        """``session.end_profiling()`` once; the profile's path (also kept as ``profile_path``)."""
        if self.profile_path is not None:
            return self.profile_path
        if self._session is None:
            raise EvaluationError(
                "the ONNX Runtime profiler has no session.",
                hint="Call OnnxRuntimeProfiler.attach(session) after creating the InferenceSession.",
            )
        written = self._session.end_profiling()
        if not written:
            raise EvaluationError(
                "ONNX Runtime wrote no profile: profiling was not enabled on this session.",
                hint="Call OnnxRuntimeProfiler.configure(session_options) before creating the InferenceSession.",
            )
        self.profile_path = Path(written)
        return self.profile_path

    def spans(self, tracer: Tracer, model_spans: Sequence[ModelSpanTimes], *, first_call: int = 0) -> list[Span]:
        profile = read_profile(self.collect())
        self.incomplete_reason = None
        kept = _runs_in_window(profile, self._profiling_start_ns, self._window_start_ns, self._window_end_ns)
        if profile.event_count >= ORT_MAX_EVENTS and len(kept) < first_call + len(model_spans):
            self.incomplete_reason = (
                f"ONNX Runtime's profiler keeps at most {ORT_MAX_EVENTS:,} events per session (warm-up and accuracy "
                f"runs included) and kept {len(kept)} of the {first_call + len(model_spans)} runs of the window; "
                "profile fewer calls (--framework-trace-calls)"
            )
        return profile_spans(
            profile,
            tracer,
            model_spans,
            profiling_start_ns=self._profiling_start_ns,
            window_start_ns=self._window_start_ns,
            window_end_ns=self._window_end_ns,
            source=str(self.profile_path),
            first_call=first_call,
        )


ORT_MAX_EVENTS = 1_000_000
"""ONNX Runtime keeps at most this many profiling events per session (``max_num_events_``) and drops the rest."""


def profile_spans(
    profile: OrtProfile,
    tracer: Tracer,
    model_spans: Sequence[ModelSpanTimes],
    *,
    profiling_start_ns: int,
    window_start_ns: int | None = None,
    window_end_ns: int | None = None,
    source: str = "the ONNX Runtime profile",
    first_call: int = 0,
) -> list[Span]:
    """FRAMEWORK-level spans of ``profile`` under ``model_spans`` (see the module docstring for the alignment).

    ``profiling_start_ns`` is ``session.get_profiling_start_time_ns()`` (wall clock, 0 if unknown: each run is
    then centred in its model span and the window is not applied); the window (wall ns, from ``start``/``stop``)
    selects the runs that belong to the model spans; ``model_spans[0]`` is the window's run ``first_call``.
    """
    if not tracer.enabled(TraceLevel.FRAMEWORK):
        return []
    runs = _runs_in_window(profile, profiling_start_ns, window_start_ns, window_end_ns)
    expected = first_call + len(model_spans)
    if len(runs) < expected and profile.event_count >= ORT_MAX_EVENTS:
        # ORT stops recording after a million events: the runs it kept are the window's first ones, in order.
        if len(runs) <= first_call:
            return []
        model_spans = model_spans[: len(runs) - first_call]
        expected = first_call + len(model_spans)
        runs = runs[:expected]
    if len(runs) != expected:
        raise EvaluationError(
            f"{source} has {len(runs)} session runs in the traced window but {len(model_spans)} model spans were "
            f"recorded{_after(first_call)}, so operators cannot be attributed to queries.",
            hint="Profile one session per run, call start() after the warm-up and stop() right after the run, "
            "and do not call the session from elsewhere meanwhile.",
        )
    runs = runs[first_call:]
    run_starts = [run.ts for run in runs]
    nodes_by_run: list[list[OrtEvent]] = [[] for _ in runs]
    for node in profile.nodes:
        k = bisect.bisect_right(run_starts, node.ts) - 1
        if k >= 0 and node.ts <= runs[k].ts + runs[k].dur:
            nodes_by_run[k].append(node)

    out: list[Span] = []
    for run, nodes, (parent_id, parent_start_ns, parent_end_ns) in zip(runs, nodes_by_run, model_spans, strict=True):
        parent_ns = max(parent_end_ns - parent_start_ns, 0)
        run_ns = run.dur * 1000
        scale = parent_ns / run_ns if run_ns > parent_ns else 1.0
        run_ns = round(run_ns * scale)
        if profiling_start_ns:
            estimate_ns = profiling_start_ns + run.ts * 1000 - tracer.epoch_offset_ns
        else:
            estimate_ns = parent_start_ns + (parent_ns - run_ns) // 2
        run_start_ns = shift_into(estimate_ns, run_ns, parent_start_ns, parent_end_ns)

        parent = (parent_id, parent_start_ns, parent_end_ns)
        run_attributes: dict[str, AttributeValue] = {"kind": "session"}
        out.append(
            framework_span(
                tracer, parent, run_start_ns, run_start_ns + run_ns, RUN_EVENT, run_attributes, framework=FRAMEWORK
            )
        )
        for node in nodes:
            start_ns = run_start_ns + round((node.ts - run.ts) * 1000 * scale)
            end_ns = start_ns + round(node.dur * 1000 * scale)
            op, attributes = _node_naming(node)
            out.append(
                framework_span(tracer, parent, start_ns, end_ns, op[:256], attributes, framework=FRAMEWORK, op=op)
            )
    return out


def _after(first_call: int) -> str:
    return f" after {first_call} profiled calls whose model spans were discarded" if first_call else ""


def _runs_in_window(
    profile: OrtProfile, profiling_start_ns: int, window_start_ns: int | None, window_end_ns: int | None
) -> list[OrtEvent]:
    """The ``model_run`` events between ``start()`` and ``stop()`` (all of them without a profiling start)."""
    if not profiling_start_ns:
        return list(profile.runs)
    # A run is in the window if it ends after start() and starts before stop(): ORT truncates to µs, and a
    # warm-up run ends (and a measured run begins) many µs away from those calls.
    lo_ns = window_start_ns if window_start_ns is not None else 0
    hi_ns = window_end_ns if window_end_ns is not None else 2**63
    return [
        run
        for run in profile.runs
        if profiling_start_ns + (run.ts + run.dur) * 1000 >= lo_ns and profiling_start_ns + run.ts * 1000 <= hi_ns
    ]


def _node_naming(node: OrtEvent) -> tuple[str, dict[str, AttributeValue]]:
    """(ORT's op type of the node, e.g. "Conv"; the node's attributes but the op names ``framework_span`` adds)."""
    args = node.args
    node_name = node.name.removesuffix(_KERNEL_SUFFIX)
    op = str(args.get("op_name") or node_name)
    attributes: dict[str, AttributeValue] = {
        "kind": "node",
        "node": node_name,
        "provider": str(args.get("provider", "")),
        "input_shapes": _shapes(args.get("input_type_shape")),
        "output_shapes": _shapes(args.get("output_type_shape")),
    }
    if str(args.get("node_index", "")).isdigit():
        attributes["node_index"] = int(args["node_index"])
    return op, attributes


def _shapes(value: Any) -> str:
    """ORT's ``[{"float": [4, 1, 8, 8]}, ...]`` as ``"float[4,1,8,8] float[16,1,3,3]"``."""
    if not isinstance(value, list):
        return ""
    parts: list[str] = []
    for entry in value:
        if isinstance(entry, dict):
            parts.extend(f"{dtype}[{','.join(map(str, dims))}]" for dtype, dims in entry.items())
    return " ".join(parts)
