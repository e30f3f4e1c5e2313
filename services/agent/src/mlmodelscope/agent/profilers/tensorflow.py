"""TensorFlow's own profiler as FRAMEWORK-level spans: one span per TF op executed inside each query.

TensorFlow profiles through ``tf.profiler.experimental.start(logdir)`` / ``stop()``, which writes an XSpace
protobuf to ``<logdir>/plugins/profile/<YYYY_MM_DD_HH_MM_SS>/<host>.xplane.pb`` (TensorBoard's profile plugin
reads the same folder). The proto classes ship in the tensorflow wheel (``tensorflow.tsl.profiler.protobuf.
xplane_pb2``). What the adapter reads (studied on TF 2.21, CPU), all on the ``/host:CPU`` plane, one line per
thread, times as ``line.timestamp_ns + event.offset_ps / 1000`` in ns since the profiling session started::

    python thread:  mlmodelscope_predict {step_num: 7, _r: 1}            <- our marker around one predict call
                      <lambda> / EagerExecute / FunctionRun ...           <- the tf.function call, on our thread
    tf_Compute/*:     functional_1/conv2d_1/Relu:_FusedConv2D  (display name "_FusedConv2D")
                      functional_1/max_pooling2d_1/MaxPool2d:MaxPool
                      ExecutorState::Process, ThreadpoolListener::..., ParallelFor   <- runtime, not ops

The op events are TensorFlow's ``<node name>:<op type>`` TraceMe events (after Grappler's rewrites: a Conv2D +
BiasAdd + Relu runs as one ``_FusedConv2D``); they run on TensorFlow's inter-op threads or inline on the
caller's thread, so they are attributed by time, not by thread. The executor traces an op at TraceMe level 2
only while its cost model deems it expensive: after about a hundred runs (the warm-up) the cheap ones
(ReadVariableOp, Transpose, small MatMuls) are traced at level 3 only, so the session runs at
``host_tracer_level=3``. TF 2.21's bindings drop a plain ``int`` option (it lands in the ``bool`` slot of a
``variant<bool, int, string>``; the session logs "host_tracer_level expects an i value" and keeps level 2), so
the levels are passed as int-like objects without ``__bool__`` (``_Level``). The function's ``_Arg`` and
``_Retval`` nodes (argument plumbing, also level 3) are not turned into spans.

Pairing: the predictor wraps every call in a ``tf.profiler.experimental.Trace("mlmodelscope_predict",
step_num=k, _r=1)`` marker while profiling (TensorBoard shows these as steps). Only calls between ``start()``
and ``stop()`` are recorded (the runner's window stops the profiler right after its N-th call), so the k-th
marker belongs to the k-th call of the window. When there are more markers than model spans, the trailing
ones are used: the driver repeats a performance run that ran out of LoadGen queries and discards the first
run's model rows (``first_call`` of them in the window), but its calls were profiled too. Fewer markers than
the window's calls is an error. Each op belongs to the marker whose interval contains the op's start.

Alignment onto the tracer's clock (``perf_counter_ns``): the XSpace's clock is TensorFlow's (wall clock, made
relative to the session start), so one offset ``d`` maps it onto the tracer's. Every marker lies inside its
model span (the marker is opened and closed inside ``predict``), so ``d`` lies in
``[max_k(span_start_k - marker_start_k), min_k(span_end_k - marker_end_k)]``; when that interval is not empty its
lower end is used (one marker then starts exactly at its span's start — the smallest Python overhead before
the marker, about a µs). When it is empty (clock slew over a long run) the median of the per-call lower
bounds is used, and each call is then moved (never stretched) into its span with ``framework.shift_into``. A
marker longer than its span (cannot happen unless the clocks disagree) is scaled down to the span. Ops keep
their offsets from their marker and are finally clipped to the model span (``framework.clip_into``).

Spans produced (FRAMEWORK level, parent = the model span): the graph execution of each call, ``FunctionRun``
(kind "function", with the call's ``step``), and every op, named by its op type as TensorFlow ran it (e.g.
"_FusedConv2D", "MaxPool"; with oneDNN, on by default on x86-64, "_MklNativeFusedConv2D", "_MklNativeMaxPool");
attributes op_type (canonical, the same with or without oneDNN: "Conv2D", "MaxPool"; ``core.tracing.op_types``),
framework_op (TensorFlow's name), node, thread, kind "op", framework "tensorflow". The XSpace does not record a
fused op's ``fused_ops`` attribute, so TensorFlow's spans carry none.

Cost: only at FRAMEWORK level. Each call creates the marker (a few µs), and TensorFlow's host tracer records
every op, which adds to the measured latency; all events stay in memory until ``stop()``, and the XSpace is
parsed in Python afterwards (about 3 s per million events; the digits CNN makes ~110 events and ~3 KB
of XSpace per call).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import re
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mlmodelscope.core.errors import EvaluationError, FrameworkUnavailableError
from mlmodelscope.core.tracing.framework import ModelSpanTimes, framework_span, shift_into
from mlmodelscope.core.tracing.spans import AttributeValue, Span, TraceLevel
from mlmodelscope.core.tracing.tracer import Tracer

log = logging.getLogger(__name__)

MARKER = "mlmodelscope_predict"
FRAMEWORK = "tensorflow"
HOST_PLANE = "/host:CPU"
FUNCTION_EVENT = "FunctionRun"
PROFILE_GLOB = "plugins/profile/*/*.xplane.pb"
_OP_EVENT = re.compile(r"^(?P<node>[^:\s]+):(?P<op_type>[A-Za-z_][A-Za-z0-9_]*)$")
_PROFILE_HINT = (
    "TensorFlow writes the profile when profiling stops; a run cut short leaves none or a partial one: run it again."
)


HOST_TRACER_LEVEL = 3
"""TraceMe verbosity: TF's executor traces an op at level 2 only while its cost model deems it expensive; after
about a hundred runs cheap ops (ReadVariableOp, small MatMuls, Transpose) are traced at level 3 only."""
PLUMBING_OPS = frozenset({"_Arg", "_Retval", "_DeviceArg", "_DeviceRetval"})
"""The function's argument and return nodes, traced at level 3: plumbing, not computation, so not spans."""


class _Level:
    """An int the profiler's bindings accept: TF 2.21 converts option dicts to ``variant<bool, int, string>``
    and a Python int lands in the ``bool`` slot (the session logs "host_tracer_level expects an i value" and
    ignores it); an object with ``__index__`` but no ``__bool__`` can only become the ``int``."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return str(self.value)


class TfCall(NamedTuple):
    """One marker (one predict call): ns since the profiling session started."""

    start_ns: int
    end_ns: int
    step: int


class TfEvent(NamedTuple):
    """One op (or FunctionRun) event: ns since the profiling session started."""

    start_ns: int
    end_ns: int
    name: str
    node: str
    thread: str


class TfProfile(NamedTuple):
    """The markers, ops and FunctionRun events of one XSpace, each sorted by start."""

    calls: list[TfCall]
    ops: list[TfEvent]
    functions: list[TfEvent]


def _import_tensorflow() -> Any:
    try:
        import tensorflow as tf
    except ImportError as e:
        raise FrameworkUnavailableError(
            "TensorFlow is not installed in this runtime, so its profile cannot be taken or read.",
            hint="`pip install 'mlmodelscope-agent[tensorflow]'`.",
        ) from e
    return tf


def _xplane_pb2() -> Any:
    try:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    except ImportError as e:
        raise FrameworkUnavailableError(
            "this TensorFlow build does not ship the XPlane protobuf classes "
            "(tensorflow.tsl.profiler.protobuf.xplane_pb2), so its profile cannot be read.",
            hint="Install tensorflow-cpu or tensorflow >= 2.16 (make setup pins a version that has them).",
        ) from e
    return xplane_pb2


def read_profile(path: Path) -> TfProfile:
    """Parse an ``.xplane.pb``; EvaluationError saying what is wrong where when it is not a usable one."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EvaluationError(f"cannot read the TensorFlow profile {path}: {e}", hint=_PROFILE_HINT) from e
    space = _xplane_pb2().XSpace()
    try:
        space.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError, whichever backend raises it
        raise EvaluationError(
            f"the TensorFlow profile {path} is not an XSpace protobuf ({e}).", hint=_PROFILE_HINT
        ) from e
    planes = [plane for plane in space.planes if plane.name == HOST_PLANE]
    if not planes:
        found = ", ".join(plane.name for plane in space.planes) or "none"
        raise EvaluationError(
            f"the TensorFlow profile {path} has no '{HOST_PLANE}' plane (planes: {found}).", hint=_PROFILE_HINT
        )
    calls: list[TfCall] = []
    ops: list[TfEvent] = []
    functions: list[TfEvent] = []
    for plane in planes:
        _read_plane(plane, calls, ops, functions)
    calls.sort()
    ops.sort()
    functions.sort()
    return TfProfile(calls=calls, ops=ops, functions=functions)


def _read_plane(plane: Any, calls: list[TfCall], ops: list[TfEvent], functions: list[TfEvent]) -> None:
    # What each event metadata id is, decided once: the marker, FunctionRun, an op (node, op type), or other.
    kinds: dict[int, tuple[str, str, str]] = {}
    for metadata_id, metadata in plane.event_metadata.items():
        if metadata.name == MARKER:
            kinds[metadata_id] = ("marker", "", "")
        elif metadata.name == FUNCTION_EVENT:
            kinds[metadata_id] = ("function", FUNCTION_EVENT, "")
        elif (match := _OP_EVENT.match(metadata.name)) and match["op_type"] not in PLUMBING_OPS:
            kinds[metadata_id] = ("op", metadata.display_name or match["op_type"], match["node"])
    step_stat = next((k for k, v in plane.stat_metadata.items() if v.name == "step_num"), None)
    for line in plane.lines:
        base_ns = line.timestamp_ns
        thread = line.display_name or line.name
        for event in line.events:
            kind = kinds.get(event.metadata_id)
            if kind is None:
                continue
            start_ns = base_ns + event.offset_ps // 1000
            end_ns = start_ns + event.duration_ps // 1000
            what, name, node = kind
            if what == "marker":
                step = next((s.int64_value or s.uint64_value for s in event.stats if s.metadata_id == step_stat), -1)
                calls.append(TfCall(start_ns, end_ns, int(step)))
            elif what == "op":
                ops.append(TfEvent(start_ns, end_ns, name, node, thread))
            else:
                functions.append(TfEvent(start_ns, end_ns, name, node, thread))


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
        self.profile_path = self._newest_profile()

    def _newest_profile(self) -> Path:
        started_ns = (self._started_wall_ns or 0) - 2_000_000_000  # file times are coarser than time_ns()
        written = [p for p in self.directory.glob(PROFILE_GLOB) if p.stat().st_mtime_ns >= started_ns]
        if not written:
            raise EvaluationError(
                f"the TensorFlow profiler wrote no {PROFILE_GLOB} under {self.directory}.", hint=_PROFILE_HINT
            )
        return max(written, key=lambda p: p.stat().st_mtime_ns)

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
    """FRAMEWORK-level spans of ``profile`` under ``model_spans`` (see the module docstring for the alignment).

    ``model_spans[0]`` is profiled call ``first_call`` (the calls before it lost their model spans).
    """
    if not tracer.enabled(TraceLevel.FRAMEWORK) or not model_spans:
        return []
    calls = profile.calls
    if len(calls) < first_call + len(model_spans):
        skipped = f" after {first_call} profiled calls whose model spans were discarded" if first_call else ""
        raise EvaluationError(
            f"{source} has {len(calls)} '{MARKER}' markers but {len(model_spans)} model spans were recorded"
            f"{skipped}, so ops cannot be attributed to queries.",
            hint="Profile with the TensorFlow predictor's own profiler (it marks every call), start it after the "
            "warm-up and stop it right after the run.",
        )
    calls = calls[len(calls) - len(model_spans) :]
    offset_ns = _clock_offset_ns(calls, model_spans)

    starts = [call.start_ns for call in calls]
    ops_by_call: list[list[TfEvent]] = [[] for _ in calls]
    functions_by_call: list[list[TfEvent]] = [[] for _ in calls]
    for events, by_call in ((profile.ops, ops_by_call), (profile.functions, functions_by_call)):
        for event in events:
            k = bisect.bisect_right(starts, event.start_ns) - 1
            if k >= 0 and event.start_ns <= calls[k].end_ns:
                by_call[k].append(event)

    out: list[Span] = []
    for call, ops, functions, parent in zip(calls, ops_by_call, functions_by_call, model_spans, strict=True):
        _, parent_start_ns, parent_end_ns = parent
        parent_ns = max(parent_end_ns - parent_start_ns, 0)
        call_ns = call.end_ns - call.start_ns
        scale = parent_ns / call_ns if call_ns > parent_ns else 1.0
        call_start_ns = shift_into(call.start_ns + offset_ns, round(call_ns * scale), parent_start_ns, parent_end_ns)

        if functions:
            outermost = max(functions, key=lambda f: f.end_ns - f.start_ns)
            attributes: dict[str, AttributeValue] = {"kind": "function", "step": call.step}
            start_ns, end_ns = _place(outermost, call, call_start_ns, scale)
            out.append(
                framework_span(tracer, parent, start_ns, end_ns, FUNCTION_EVENT, attributes, framework=FRAMEWORK)
            )
        for op in ops:
            op_attributes: dict[str, AttributeValue] = {
                "kind": "op",
                "node": op.node,
                "thread": op.thread,
            }
            start_ns, end_ns = _place(op, call, call_start_ns, scale)
            out.append(
                framework_span(
                    tracer, parent, start_ns, end_ns, op.name[:256], op_attributes, framework=FRAMEWORK, op=op.name
                )
            )
    return out


def _place(event: TfEvent, call: TfCall, call_start_ns: int, scale: float) -> tuple[int, int]:
    """The event on the tracer's clock: its offset from its call's start kept (scaled with the call)."""
    start_ns = call_start_ns + round((event.start_ns - call.start_ns) * scale)
    return start_ns, start_ns + round((event.end_ns - event.start_ns) * scale)


def _clock_offset_ns(calls: Sequence[TfCall], model_spans: Sequence[ModelSpanTimes]) -> int:
    """The offset from the profile's clock to the tracer's (see the module docstring)."""
    lower = [span_start - call.start_ns for call, (_, span_start, _) in zip(calls, model_spans, strict=True)]
    upper = [span_end - call.end_ns for call, (_, _, span_end) in zip(calls, model_spans, strict=True)]
    if max(lower) <= min(upper):
        return max(lower)
    return round(statistics.median(lower))
