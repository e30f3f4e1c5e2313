"""Export spans as a Chrome trace (the JSON Perfetto, chrome://tracing and speedscope open).

Layout, chosen so Perfetto's nest-by-time rule shows the stack correctly:

* one process (``pid``) per run: runs sorted by ``run_id`` get pids 1, 2, ...; its name is
  ``"<process_name> <run_id>"``;
* one thread (``tid``) per trace level: tid = the level's number, named after the level (``MODEL``,
  ``FRAMEWORK``, ``HARDWARE``...), sorted in level order. A child on the *same* level as its parent shares its
  track and nests under it by time; a child on a deeper level (a FRAMEWORK operator under a MODEL ``predict``)
  sits on the deeper level's track, directly below, inside the same time range. The parent/child relation
  itself is in every event's ``args`` (``span_id``, ``parent_id``), next to the span's attributes;
* spans of one level that overlap *partially* (concurrent calls on several threads) cannot share a track, so
  such a span moves to an extra lane of its level: tid = 1000 * level + lane, named ``"MODEL #2"`` etc.

Every span is a complete event (``"ph": "X"``). ``ts``/``dur`` are microseconds as floats on the wall clock:
monotonic ns + ``epoch_offset_ns``, divided by 1000. At today's epochs a double resolves about 0.25 µs, so both
ends are rounded (monotonically) and ``dur`` is the difference of the rounded ends: a child inside its parent
in ns stays inside it in the JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeGuard

from mlmodelscope.core.tracing.spans import Span, TraceLevel

EXTRA_LANE_TID_FACTOR = 1000

# Event types (the "ph" field) of the Trace Event Format that Perfetto's JSON importer understands.
ALLOWED_PHASES = frozenset("BEXiICbneMsftPNODR")
_METADATA_NAMES = frozenset(
    {"process_name", "process_labels", "process_sort_index", "thread_name", "thread_sort_index", "process_uptime"}
)
_NEEDS_TID = frozenset("BEXiIsft")
_NEEDS_ID = frozenset("bnesft")


def to_chrome_trace(spans: Iterable[Span], *, epoch_offset_ns: int, process_name: str) -> dict[str, Any]:
    """The trace document: ``{"traceEvents": [...], "displayTimeUnit": "ns", "metadata": {...}}``."""
    ordered = sorted(spans, key=lambda s: (s.start_ns, -s.end_ns, s.level, s.span_id))
    run_ids = sorted({s.run_id for s in ordered})
    pids = {run_id: index + 1 for index, run_id in enumerate(run_ids)}

    events: list[dict[str, Any]] = []
    for run_id, pid in pids.items():
        events.append(_meta("process_name", pid, 0, {"name": f"{process_name} {run_id}"}))
        events.append(_meta("process_sort_index", pid, 0, {"sort_index": pid}))

    lanes: dict[tuple[int, TraceLevel], list[list[float]]] = {}
    tids_used: set[tuple[int, TraceLevel, int]] = set()
    complete: list[dict[str, Any]] = []
    for span in ordered:
        ts_us = (span.start_ns + epoch_offset_ns) / 1000
        end_us = max((span.end_ns + epoch_offset_ns) / 1000, ts_us)
        pid = pids[span.run_id]
        lane = _place(lanes.setdefault((pid, span.level), []), ts_us, end_us)
        tids_used.add((pid, span.level, lane))
        args: dict[str, Any] = dict(span.attributes)
        args["span_id"] = span.span_id
        args["parent_id"] = span.parent_id
        complete.append(
            {
                "name": span.name,
                "cat": span.level.name.lower(),
                "ph": "X",
                "ts": ts_us,
                "dur": end_us - ts_us,
                "pid": pid,
                "tid": _tid(span.level, lane),
                "args": args,
            }
        )

    for pid, level, lane in sorted(tids_used):
        tid = _tid(level, lane)
        name = level.name if lane == 0 else f"{level.name} #{lane + 1}"
        events.append(_meta("thread_name", pid, tid, {"name": name}))
        events.append(_meta("thread_sort_index", pid, tid, {"sort_index": int(level) * EXTRA_LANE_TID_FACTOR + lane}))
    events.extend(complete)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "metadata": {
            "generator": "mlmodelscope",
            "clock": "wall clock: perf_counter_ns + epoch_offset_ns, in microseconds",
            "epoch_offset_ns": epoch_offset_ns,
            "runs": pids,
        },
    }


def write_chrome_trace(doc: Mapping[str, Any], path: Path) -> Path:
    """Validate ``doc`` and write it as JSON to ``path`` (parents created); returns ``path``."""
    validate_chrome_trace(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    return path


def validate_chrome_trace(doc: Mapping[str, Any]) -> None:
    """ValueError naming the first event (index, ph, name) and field that Perfetto's JSON importer would reject."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"a Chrome trace is a JSON object, got {type(doc).__name__}")
    events = doc.get("traceEvents")
    if not isinstance(events, list):
        raise ValueError("a Chrome trace object needs 'traceEvents': a list of events")
    unit = doc.get("displayTimeUnit", "ms")
    if unit not in ("ms", "ns"):
        raise ValueError(f"displayTimeUnit must be 'ms' or 'ns', got {unit!r}")
    if "metadata" in doc and not isinstance(doc["metadata"], Mapping):
        raise ValueError("'metadata' must be a JSON object")
    for index, event in enumerate(events):
        _validate_event(index, event)


def _validate_event(index: int, event: Any) -> None:
    if not isinstance(event, Mapping):
        raise ValueError(f"traceEvents[{index}] must be a JSON object, got {type(event).__name__}")
    ph = event.get("ph")
    where = f"traceEvents[{index}] (ph {ph!r}, name {event.get('name')!r})"
    if not isinstance(ph, str) or ph not in ALLOWED_PHASES:
        raise ValueError(f"{where}: 'ph' must be one of {''.join(sorted(ALLOWED_PHASES))}")
    _require_int(where, event, "pid")
    if ph in _NEEDS_TID:
        _require_int(where, event, "tid")
    if "args" in event and not isinstance(event["args"], Mapping):
        raise ValueError(f"{where}: 'args' must be a JSON object")
    if ph == "M":
        name = event.get("name")
        if name not in _METADATA_NAMES:
            raise ValueError(f"{where}: a metadata event's name must be one of {sorted(_METADATA_NAMES)}")
        args = event.get("args")
        if not isinstance(args, Mapping):
            raise ValueError(f"{where}: a metadata event needs 'args'")
        if name in ("process_name", "thread_name") and not isinstance(args.get("name"), str):
            raise ValueError(f"{where}: args.name must be a string")
        if name.endswith("sort_index") and not _is_int(args.get("sort_index")):
            raise ValueError(f"{where}: args.sort_index must be an integer")
        return
    _require_time(where, event, "ts")
    if ph != "E" and not (isinstance(event.get("name"), str) and event["name"]):
        raise ValueError(f"{where}: 'name' must be a non-empty string")
    if ph == "X":
        _require_time(where, event, "dur")
    elif ph in _NEEDS_ID and not isinstance(event.get("id"), str | int):
        raise ValueError(f"{where}: 'id' (string or integer) is required for this event type")
    elif ph == "C":
        args = event.get("args")
        if not isinstance(args, Mapping) or not all(_is_number(v) for v in args.values()):
            raise ValueError(f"{where}: a counter event needs 'args' mapping series names to numbers")


def _place(lanes: list[list[float]], ts_us: float, end_us: float) -> int:
    """The first lane whose open spans nest [ts, end] properly; lanes hold stacks of open spans' end times."""
    for index, stack in enumerate(lanes):
        while stack and stack[-1] <= ts_us:
            stack.pop()
        if not stack or end_us <= stack[-1]:
            stack.append(end_us)
            return index
    lanes.append([end_us])
    return len(lanes) - 1


def _tid(level: TraceLevel, lane: int) -> int:
    return int(level) if lane == 0 else int(level) * EXTRA_LANE_TID_FACTOR + lane


def _meta(name: str, pid: int, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": args}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _require_int(where: str, event: Mapping[str, Any], key: str) -> None:
    if not _is_int(event.get(key)):
        raise ValueError(f"{where}: {key!r} must be an integer, got {event.get(key)!r}")


def _require_time(where: str, event: Mapping[str, Any], key: str) -> None:
    value = event.get(key)
    if not (_is_number(value) and value >= 0):
        raise ValueError(f"{where}: {key!r} must be a finite number >= 0 (microseconds), got {value!r}")
