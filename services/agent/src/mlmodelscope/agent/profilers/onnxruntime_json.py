"""Reading ONNX Runtime's profile JSON into plain records of its session runs and node runs.

The part of the ONNX Runtime adapter that knows ORT's profile format (one JSON array of Chrome-trace events, with
ORT's own ``args``), kept apart from ``profilers/onnxruntime.py`` (which drives ORT's profiler, picks the runs of
the profiled window and aligns these records under the model spans) so that each stays one concern. Which
events ORT writes and in which clock: docs/tracing.md, section "ONNX Runtime".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.tracing.framework import read_trace_events

RUN_EVENT = "model_run"
PROFILE_HINT = (
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
    events = read_trace_events(path, "the ONNX Runtime profile", PROFILE_HINT)
    runs: list[OrtEvent] = []
    nodes: list[OrtEvent] = []
    for index, raw in enumerate(events):
        cat, name = raw.get("cat"), raw.get("name")
        if not ((cat == "Session" and name == RUN_EVENT) or cat == "Node"):
            continue
        try:
            event = OrtEvent.model_validate(raw)
        except ValidationError as e:
            problem = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise EvaluationError(
                f"event {index} ({cat} {name!r}) of the ONNX Runtime profile {path} is malformed: {problem}.",
                hint=PROFILE_HINT,
            ) from e
        (runs if cat == "Session" else nodes).append(event)
    runs.sort(key=lambda e: e.ts)
    nodes.sort(key=lambda e: e.ts)
    return OrtProfile(runs=runs, nodes=nodes, event_count=len(events))


def shapes_text(value: Any) -> str:
    """ORT's ``[{"float": [4, 1, 8, 8]}, ...]`` (a node's ``input_type_shape``) as ``"float[4,1,8,8] ..."``."""
    if not isinstance(value, list):
        return ""
    parts: list[str] = []
    for entry in value:
        if isinstance(entry, dict):
            parts.extend(f"{dtype}[{','.join(map(str, dims))}]" for dtype, dims in entry.items())
    return " ".join(parts)
