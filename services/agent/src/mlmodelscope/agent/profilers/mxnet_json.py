"""Reading MXNet's profile dump (Chrome-trace JSON) into plain records of its operators and ``predict`` calls.

The part of the MXNet adapter that knows MXNet's dump format (begin/end event pairs, the engine's own events, the
continuation fragments of later dumps), kept apart from ``profilers/mxnet.py`` (which drives MXNet's profiler,
marks each call with a profiler task and aligns these records under the model spans) so that each stays one
concern. Which events MXNet writes and in which clock: docs/tracing.md, section "MXNet".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.tracing.framework import read_trace_events

DOMAIN = "mlmodelscope"
CALL_TASK = "predict"
"""The profiler task the predictor's ``predict`` runs in (in ``DOMAIN``): the events that delimit each call."""
ENGINE_EVENTS = frozenset({"WaitForVar", "WaitForAll", "DeleteVariable"})
"""The engine's own bookkeeping, recorded as operators but not operators: no spans."""
PROFILE_HINT = (
    "MXNet writes the profile when the run stops; a run cut short leaves none or a partial one: run it again."
)


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


def read_profile(path: Path, *, domain: str = DOMAIN) -> MXNetProfile:
    """Pair MXNet's begin/end events into operators and ``predict`` calls; EvaluationError when unreadable."""
    events = read_trace_events(path, "the MXNet profile", PROFILE_HINT, continuation=True)
    calls: list[MXNetEvent] = []
    operators: list[MXNetEvent] = []
    open_operators: dict[tuple[Any, Any, str], list[int]] = {}
    open_calls: dict[Any, int] = {}
    for index, raw in enumerate(events):
        phase, name, ts = raw.get("ph"), raw.get("name"), raw.get("ts")
        if phase == "M":
            continue
        if not isinstance(name, str) or not isinstance(ts, int) or ts < 0:
            raise EvaluationError(
                f"event {index} of the MXNet profile {path} lacks a name or an integer 'ts': {raw!r:.200}.",
                hint=PROFILE_HINT,
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
