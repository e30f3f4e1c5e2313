"""ONNX Runtime's own profiler as FRAMEWORK-level spans: one span per operator (node) run inside each query.

This module drives ORT's profiler, has its JSON's ``model_run`` (one per ``session.run``) and ``Node`` events
read into plain records (``onnxruntime_json``), picks the runs of the profiled window and leaves their pairing
with the model spans and the clock alignment to ``core.tracing.alignment.align_profile``. What ORT records, in
which clock, and its event limit: docs/tracing.md, section "ONNX Runtime".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlmodelscope.agent.profilers.onnxruntime_json import RUN_EVENT, OrtEvent, OrtProfile, read_profile, shapes_text
from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.tracing.alignment import CallRecord, ClockRule, EventRecord, ProfileSource, align_profile
from mlmodelscope.core.tracing.framework import ModelSpanTimes
from mlmodelscope.core.tracing.spans import AttributeValue, Span
from mlmodelscope.core.tracing.tracer import Tracer

FRAMEWORK = "onnxruntime"
_KERNEL_SUFFIX = "_kernel_time"
ORT_MAX_EVENTS = 1_000_000
"""ONNX Runtime keeps at most this many profiling events per session (``max_num_events_``) and drops the rest."""


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
    """FRAMEWORK-level spans of ``profile`` under ``model_spans`` (``core.tracing.alignment.align_profile``).

    ``profiling_start_ns`` is ``session.get_profiling_start_time_ns()`` (wall clock, 0 if unknown: each run is
    then centred in its model span and the window is not applied); the window (wall ns, from ``start``/``stop``)
    selects the runs that belong to the model spans; ``model_spans[0]`` is the window's run ``first_call``.
    """
    runs = _runs_in_window(profile, profiling_start_ns, window_start_ns, window_end_ns)
    if len(runs) < first_call + len(model_spans) and profile.event_count >= ORT_MAX_EVENTS:
        # ORT stops recording after a million events: the runs it kept are the window's first ones, in order.
        if len(runs) <= first_call:
            return []
        model_spans = model_spans[: len(runs) - first_call]
    calls = [CallRecord(run.ts * 1000, (run.ts + run.dur) * 1000, RUN_EVENT, {"kind": "session"}) for run in runs]
    clock = profiling_start_ns - tracer.epoch_offset_ns if profiling_start_ns else ClockRule.CENTRED
    # Only nodes of the paired runs can get spans: the warm-up and accuracy runs' nodes are not even named.
    lo_us, hi_us = (runs[first_call].ts, runs[-1].ts + runs[-1].dur) if len(runs) > first_call else (1, 0)
    return align_profile(
        tracer,
        calls,
        (_node_record(node) for node in profile.nodes if lo_us <= node.ts <= hi_us),
        model_spans,
        source=ProfileSource(
            FRAMEWORK,
            source,
            "session runs in the traced window",
            hint="Profile one session per run, call start() after the warm-up and stop() right after the run, "
            "and do not call the session from elsewhere meanwhile.",
        ),
        clock=clock,
        first_call=first_call,
    )


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


def _node_record(node: OrtEvent) -> EventRecord:
    """The node named by ORT's op type (e.g. "Conv"), with its attributes but the op names ``framework_span`` adds."""
    args = node.args
    node_name = node.name.removesuffix(_KERNEL_SUFFIX)
    op = str(args.get("op_name") or node_name)
    attributes: dict[str, AttributeValue] = {
        "kind": "node",
        "node": node_name,
        "provider": str(args.get("provider", "")),
        "input_shapes": shapes_text(args.get("input_type_shape")),
        "output_shapes": shapes_text(args.get("output_type_shape")),
    }
    if str(args.get("node_index", "")).isdigit():
        attributes["node_index"] = int(args["node_index"])
    return EventRecord(node.ts * 1000, (node.ts + node.dur) * 1000, op, attributes, op=op)
