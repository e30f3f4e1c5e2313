"""A run's Chrome trace, streamed from its span columns: the layout of ``core.tracing.chrome``, without a document.

Why: ``to_chrome_trace`` builds the whole document (a dict per span) and the API then serialised it at once: a
1.2M-span run took minutes and gigabytes, and ``mlmodelscope trace export`` timed out. Here the spans stay in
numpy columns, sorted once (start, -end, level, span id: the same order), and the events are written as JSON text
in chunks: a first pass places each span on its level's lanes (``chrome._place``'s rule, so the same tids), a
second formats the events, a few thousand at a time, so memory stays at the columns plus one chunk. Attribute
objects are rendered once per distinct value (non-finite numbers become ``null``, as ``finite_json`` does).

The document is the same as ``to_chrome_trace``'s for one run except for the order of the events: process
metadata, thread metadata, then the complete events in time order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlmodelscope.collector.storage.finite_json import finite_json
from mlmodelscope.core.span_columns import SpanColumns
from mlmodelscope.core.tracing.chrome import EXTRA_LANE_TID_FACTOR
from mlmodelscope.core.tracing.chrome import _place as place  # the lane rule itself, so the tids are the same
from mlmodelscope.core.tracing.spans import TraceLevel

CHUNK_SPANS = 8_192
_ID_KEYS = frozenset({"span_id", "parent_id"})


@dataclass(frozen=True)
class TraceExport:
    """What the response needs before its body: the non-finite values replaced, and the body's chunks."""

    replaced: list[str]
    chunks: Iterator[bytes]


def chrome_trace(columns: SpanColumns, run_id: str, *, epoch_offset_ns: int, process_name: str) -> TraceExport:
    """The streamed Chrome trace of one run's spans (see the module docstring)."""
    order = np.lexsort((columns.span_id, columns.level, -columns.end_ns, columns.start_ns))
    replaced: list[str] = []
    rendered = []
    for index, attributes in enumerate(columns.attribute_dicts()):
        attributes = {k: v for k, v in attributes.items() if k not in _ID_KEYS}  # the ids win, as in chrome.py
        finite, bad = finite_json(attributes, f"attributes[{index}]")
        replaced += bad
        rendered.append(json.dumps(finite, separators=(",", ":"))[1:-1])
    tids, lanes_used = _lanes(columns, order, epoch_offset_ns)
    return TraceExport(
        replaced, _chunks(columns, order, tids, lanes_used, rendered, run_id, epoch_offset_ns, process_name)
    )


def _lanes(columns: SpanColumns, order: np.ndarray, epoch_offset_ns: int) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """The tid of each span (in ``order``) and the (level, lane) pairs used, placed on the µs times written."""
    ts_us, end_us = _times_us(columns, order, epoch_offset_ns)
    return place_lanes(columns.level[order], ts_us, end_us)


def place_lanes(
    levels: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[NDArray[np.int64], set[tuple[int, int]]]:
    """The tid of each span (given in sorted order) and the (level, lane) pairs used: ``chrome._place`` per level.
    A level whose spans each start after every earlier one ended (sequential queries) is all lane 0 without the
    loop."""
    tids = levels.astype(np.int64)
    used: set[tuple[int, int]] = set()
    for level in np.unique(tids).tolist():
        rows = np.flatnonzero(tids == level)
        level_starts, level_ends = starts[rows], ends[rows]
        if len(rows) < 2 or (level_starts[1:] >= np.maximum.accumulate(level_ends[:-1])).all():
            used.add((level, 0))
            continue
        stacks: list[list[float]] = []
        lanes = [place(stacks, ts, end) for ts, end in zip(level_starts.tolist(), level_ends.tolist(), strict=True)]
        used.update((level, lane) for lane in set(lanes))
        lane_array = np.array(lanes, np.int64)
        tids[rows] = np.where(lane_array == 0, level, level * EXTRA_LANE_TID_FACTOR + lane_array)
    return tids, used


def lane_names(lanes_used: set[tuple[int, int]]) -> list[tuple[int, str, int]]:
    """(tid, name, sort index) of each lane used, in sort order: ``MODEL``, ``MODEL #2``, ``FRAMEWORK``..."""
    named = []
    for level, lane in sorted(lanes_used):
        tid = level if lane == 0 else level * EXTRA_LANE_TID_FACTOR + lane
        name = TraceLevel(level).name if lane == 0 else f"{TraceLevel(level).name} #{lane + 1}"
        named.append((tid, name, level * EXTRA_LANE_TID_FACTOR + lane))
    return named


def _times_us(columns: SpanColumns, rows: np.ndarray, epoch_offset_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """(ts, end) in wall-clock µs as ``chrome.py`` computes them, ``(ns + offset) / 1000`` correctly rounded:
    ``q + r / 1000`` with q, r = divmod(ns + offset, 1000) is that value (q is exact below 2**53, and r / 1000 is
    never close enough to a rounding midpoint to change it); the end is at least the start."""
    start, end = columns.start_ns[rows], columns.end_ns[rows]
    if len(rows) and not (-(2**62) < epoch_offset_ns < 2**62 and int(end.max()) + epoch_offset_ns < 2**62):
        ts = np.array([(int(ns) + epoch_offset_ns) / 1000 for ns in start.tolist()])  # beyond int64 arithmetic
        te = np.array([(int(ns) + epoch_offset_ns) / 1000 for ns in end.tolist()])
        return ts, np.maximum(te, ts)
    offset = np.int64(epoch_offset_ns)
    q, r = np.divmod(start + offset, 1000)
    ts = q.astype(np.float64) + r / 1000.0
    q, r = np.divmod(end + offset, 1000)
    return ts, np.maximum(q.astype(np.float64) + r / 1000.0, ts)


_QUARTERS = np.array(["0", "25", "5", "75"], dtype=object)


def _time_fields(
    start_ns: np.ndarray, ts_us: np.ndarray, end_us: np.ndarray, epoch_offset_ns: int
) -> tuple[list[list[Any]], str]:
    """The ``ts``/``dur`` fields of a chunk and their template. At today's epochs (every time in [2**50, 2**53)
    µs, where a double's step is 0.25 µs or more) they are written from integers, which formats several times
    faster than ``repr`` of a float and parses to the same doubles: ts as the exact decimal of (ns + offset) /
    1000 (whose nearest double is what ``chrome.py`` computes), dur as the exact multiple of 0.25 µs that the
    difference of two such doubles is. Otherwise (small clocks, as in tests) both are ``repr`` of the floats."""
    if len(ts_us) and ts_us.min() >= 2.0**50 and end_us.max() < 2.0**53:
        q, r = np.divmod(start_ns + np.int64(epoch_offset_ns), 1000)
        quarters = ((end_us - ts_us) * 4).astype(np.int64)
        fields = [q.tolist(), r.tolist(), (quarters >> 2).tolist(), _QUARTERS[quarters & 3].tolist()]
        return fields, '"ts":%d.%03d,"dur":%d.%s'
    return [ts_us.tolist(), (end_us - ts_us).tolist()], '"ts":%r,"dur":%r'


_PID = 1


def _chunks(
    columns: SpanColumns,
    order: np.ndarray,
    tids: np.ndarray,
    lanes_used: set[tuple[int, int]],
    rendered: list[str],
    run_id: str,
    epoch_offset_ns: int,
    process_name: str,
) -> Iterator[bytes]:
    yield _head(lanes_used, f"{process_name} {run_id}")
    names = np.array([json.dumps(name) for name in columns.names] or [""], dtype=object)
    categories = np.array([json.dumps(TraceLevel(level).name.lower()) for level in range(len(TraceLevel))], object)
    prefixes = np.array([text + "," if text else "" for text in rendered] or [""], dtype=object)
    int_columns = [
        (json.dumps(key), column.values, column.present) for key, column in columns.ints.items() if key not in _ID_KEYS
    ]
    for begin in range(0, len(order), CHUNK_SPANS):
        rows = order[begin : begin + CHUNK_SPANS]
        ts_us, end_us = _times_us(columns, rows, epoch_offset_ns)
        times, time_format = _time_fields(columns.start_ns[rows], ts_us, end_us, epoch_offset_ns)
        common = [
            names[columns.name_index[rows]],
            categories[columns.level[rows]],
            *times,
            tids[begin : begin + len(rows)].tolist(),
            prefixes[columns.attribute_index[rows]],
        ]
        ids = [columns.span_id[rows].tolist(), columns.parent_id[rows].tolist()]
        yield ("," + ",".join(_events(rows, common, ids, int_columns, time_format))).encode()
    metadata = {
        "generator": "mlmodelscope",
        "clock": "wall clock: perf_counter_ns + epoch_offset_ns, in microseconds",
        "epoch_offset_ns": epoch_offset_ns,
        "runs": {run_id: _PID},
    }
    yield ('],"displayTimeUnit":"ns","metadata":' + json.dumps(metadata, separators=(",", ":")) + "}").encode()


def _head(lanes_used: set[tuple[int, int]], process_label: str) -> bytes:
    """The document's start: the process's and each lane's metadata events."""
    head: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": _PID, "tid": 0, "args": {"name": process_label}},
        {"name": "process_sort_index", "ph": "M", "pid": _PID, "tid": 0, "args": {"sort_index": _PID}},
    ]
    for tid, name, sort_index in lane_names(lanes_used):
        head.append({"name": "thread_name", "ph": "M", "pid": _PID, "tid": tid, "args": {"name": name}})
        args = {"sort_index": sort_index}
        head.append({"name": "thread_sort_index", "ph": "M", "pid": _PID, "tid": tid, "args": args})
    return ('{"traceEvents":[' + ",".join(json.dumps(event, separators=(",", ":")) for event in head)).encode()


def _events(
    rows: np.ndarray,
    common: list[Any],
    ids: list[list[int]],
    int_columns: list[tuple[str, np.ndarray, np.ndarray | None]],
    time_format: str,
) -> list[str]:
    """One chunk's complete events, in ``rows`` order. Rows are grouped by which integer attributes they have:
    one %-template per group, formatted in C."""
    count = len(rows)
    pattern = np.zeros(count, np.int64)
    for bit, (_key, _values, present) in enumerate(int_columns):
        pattern |= (np.ones(count, np.bool_) if present is None else present[rows]).astype(np.int64) << bit
    events: list[str] = [""] * count
    for shape in np.unique(pattern).tolist():
        members = np.flatnonzero(pattern == shape)
        chosen = [(key, values) for bit, (key, values, _p) in enumerate(int_columns) if shape >> bit & 1]
        template = (
            '{"name":%s,"cat":%s,"ph":"X",'
            + time_format
            + f',"pid":{_PID},"tid":%d,"args":{{%s'
            + "".join(f"{key}:%d," for key, _values in chosen)
            + '"span_id":%d,"parent_id":%d}}'
        )
        picked = members.tolist()
        parts = [
            common[0][members].tolist(),
            common[1][members].tolist(),
            *([column[i] for i in picked] for column in common[2:-2]),
            [common[-2][i] for i in picked],
            common[-1][members].tolist(),
            *(values[rows][members].tolist() for _key, values in chosen),
            *([column[i] for i in picked] for column in ids),
        ]
        for i, text in zip(picked, (template % values for values in zip(*parts, strict=True)), strict=True):
            events[i] = text
    return events
