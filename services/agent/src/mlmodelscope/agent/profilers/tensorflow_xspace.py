"""Reading TensorFlow's XSpace profile (``.xplane.pb``) into plain records of its markers, ops and functions.

The part of the TensorFlow adapter that knows the XSpace format and where TensorFlow writes it, kept apart from
``profilers/tensorflow.py`` (which drives TensorFlow's profiler and aligns these records under the model spans)
so that each stays one concern. What the ``/host:CPU`` plane holds and which events are ops: docs/tracing.md,
section "TensorFlow".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

from mlmodelscope.core.errors import EvaluationError, FrameworkUnavailableError

MARKER = "mlmodelscope_predict"
PROFILE_GLOB = "plugins/profile/*/*.xplane.pb"
"""Where, under the profiler's logdir, TensorFlow writes each session's XSpace."""
HOST_PLANE = "/host:CPU"
FUNCTION_EVENT = "FunctionRun"
PLUMBING_OPS = frozenset({"_Arg", "_Retval", "_DeviceArg", "_DeviceRetval"})
"""The function's argument and return nodes, traced at level 3: plumbing, not computation, so not spans."""
PROFILE_HINT = (
    "TensorFlow writes the profile when profiling stops; a run cut short leaves none or a partial one: run it again."
)
_OP_EVENT = re.compile(r"^(?P<node>[^:\s]+):(?P<op_type>[A-Za-z_][A-Za-z0-9_]*)$")


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


def newest_profile(directory: Path, started_wall_ns: int) -> Path:
    """The newest XSpace written under the logdir ``directory`` since ``started_wall_ns``; EvaluationError if none."""
    started_ns = started_wall_ns - 2_000_000_000  # file times are coarser than time_ns()
    written = [p for p in directory.glob(PROFILE_GLOB) if p.stat().st_mtime_ns >= started_ns]
    if not written:
        raise EvaluationError(f"the TensorFlow profiler wrote no {PROFILE_GLOB} under {directory}.", hint=PROFILE_HINT)
    return max(written, key=lambda p: p.stat().st_mtime_ns)


def read_profile(path: Path) -> TfProfile:
    """Parse an ``.xplane.pb``; EvaluationError saying what is wrong where when it is not a usable one."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EvaluationError(f"cannot read the TensorFlow profile {path}: {e}", hint=PROFILE_HINT) from e
    space = _xplane_pb2().XSpace()
    try:
        space.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError, whichever backend raises it
        raise EvaluationError(
            f"the TensorFlow profile {path} is not an XSpace protobuf ({e}).", hint=PROFILE_HINT
        ) from e
    planes = [plane for plane in space.planes if plane.name == HOST_PLANE]
    if not planes:
        found = ", ".join(plane.name for plane in space.planes) or "none"
        raise EvaluationError(
            f"the TensorFlow profile {path} has no '{HOST_PLANE}' plane (planes: {found}).", hint=PROFILE_HINT
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
