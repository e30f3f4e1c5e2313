"""A run's trace in Perfetto's native protobuf format, streamed from its span columns.

Why: the Chrome JSON of a 1M-span run is ~200 MB and Perfetto's UI parses JSON slowly and in one piece; its own
format (``perfetto.protos.Trace``: a stream of ``TracePacket``s) is several times smaller, is read as it streams,
and keeps nanoseconds. Same layout as the JSON (``trace_export``): one process per run, one thread track per trace
level, extra lanes ``MODEL #2``... for spans of one level that overlap partially, each span's ``span_id``,
``parent_id`` and attributes as debug annotations.

The file: a track descriptor for the process and one per lane, one packet of interned names (event names, the
level categories, the annotation keys) that clears the sequence's incremental state, then a slice-begin and a
slice-end packet per span, in time order. Times are wall-clock nanoseconds (monotonic ns + ``epoch_offset_ns``) on
Perfetto's default clock. Lanes are placed on those nanoseconds (the JSON places them on its rounded
microseconds), so a track's slices nest exactly, and events at one instant are written in the order the nesting
needs: ends of slices that end there (innermost first), then begins (outermost first), a zero-length slice's end
right after its begin. Packets are encoded a chunk at a time with ``protobuf_rows``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlmodelscope.collector import protobuf_rows as pb
from mlmodelscope.collector.trace_export import TraceExport, lane_names, place_lanes
from mlmodelscope.core.span_columns import SpanColumns
from mlmodelscope.core.tracing.spans import TraceLevel

MEDIA_TYPE = "application/x-protobuf"
CHUNK_EVENTS = 16_384
SEQUENCE_ID = 1
PROCESS_UUID = 1
PID = 1
_ID_KEYS = ("span_id", "parent_id")

# Field numbers of perfetto/protos/perfetto/trace/*.proto (the messages used here).
_TRACE_PACKET = 1  # Trace.packet
_TIMESTAMP, _SEQUENCE, _TRACK_EVENT, _INTERNED, _FLAGS, _DESCRIPTOR = 8, 10, 11, 12, 13, 60  # TracePacket
_CLEARED, _NEEDS_STATE = 1, 2  # TracePacket.SequenceFlags
_CATEGORY_IIDS, _ANNOTATIONS, _TYPE, _NAME_IID, _TRACK_UUID = 3, 4, 9, 10, 11  # TrackEvent
_SLICE_BEGIN, _SLICE_END = 1, 2  # TrackEvent.Type
_ANNOTATION_NAME_IID, _BOOL, _INT, _DOUBLE, _STRING = 1, 2, 4, 5, 6  # DebugAnnotation
_UUID, _PROCESS, _THREAD = 1, 3, 4  # TrackDescriptor
_PROCESS_PID, _PROCESS_NAME = 1, 6  # ProcessDescriptor
_THREAD_PID, _THREAD_TID, _THREAD_NAME = 1, 2, 5  # ThreadDescriptor
_INTERNED_CATEGORIES, _INTERNED_NAMES, _INTERNED_ANNOTATION_NAMES = 1, 2, 3  # InternedData
_IID, _INTERNED_NAME = 1, 2  # EventCategory / EventName / DebugAnnotationName


def perfetto_trace(columns: SpanColumns, run_id: str, *, epoch_offset_ns: int, process_name: str) -> TraceExport:
    """The streamed Perfetto trace of one run's spans (see the module docstring)."""
    order = np.lexsort((columns.span_id, columns.level, -columns.end_ns, columns.start_ns))
    begin_ns = np.maximum(columns.start_ns[order] + np.int64(epoch_offset_ns), 0)
    end_ns = np.maximum(columns.end_ns[order] + np.int64(epoch_offset_ns), begin_ns)
    tids, lanes_used = place_lanes(columns.level[order], begin_ns, end_ns)
    lanes = lane_names(lanes_used)
    lane_tids = np.array([tid for tid, _name, _sort in lanes], np.int64)
    track_uuids = PROCESS_UUID + 1 + np.searchsorted(lane_tids, tids)  # lanes are sorted by tid
    attribute_sets = columns.attribute_dicts()  # parsed once: for the interned keys and for the annotations
    annotation_keys = _annotation_keys(columns, attribute_sets)
    attributes = _attribute_annotations(attribute_sets, annotation_keys)
    head = _descriptors(lanes, f"{process_name} {run_id}") + _interned(columns, annotation_keys)
    events = _event_order(begin_ns, end_ns)
    chunks = _chunks(head, columns, order, begin_ns, end_ns, track_uuids, events, attributes, annotation_keys)
    return TraceExport([], chunks)


def _event_order(begin_ns: NDArray[np.int64], end_ns: NDArray[np.int64]) -> NDArray[np.int64]:
    """The 2n events (k < n: begin of span k, n + k: its end) in the order they are written (module docstring)."""
    count = len(begin_ns)
    rank = np.arange(count, dtype=np.int64)
    zero_length = end_ns == begin_ns
    times = np.concatenate([begin_ns, end_ns])
    ends_first = np.concatenate([np.ones(count, np.int64), zero_length.astype(np.int64)])  # 0: an end, written first
    within = np.concatenate([2 * rank, np.where(zero_length, 2 * rank + 1, -rank)])
    return np.lexsort((within, ends_first, times))


def _annotation_keys(columns: SpanColumns, attribute_sets: list[dict[str, Any]]) -> dict[str, int]:
    """The interned id of every annotation key: the ids, the integer columns, the other attributes."""
    keys = dict.fromkeys([*_ID_KEYS, *columns.ints, *(key for attributes in attribute_sets for key in attributes)])
    return {key: iid for iid, key in enumerate(keys, start=1)}


def _descriptors(lanes: list[tuple[int, str, int]], process_label: str) -> bytes:
    process = pb.varint_field_bytes(_PROCESS_PID, PID) + pb.bytes_field(_PROCESS_NAME, process_label.encode())
    packets = [pb.varint_field_bytes(_UUID, PROCESS_UUID) + pb.bytes_field(_PROCESS, process)]
    for index, (tid, name, _sort) in enumerate(lanes):
        thread = (
            pb.varint_field_bytes(_THREAD_PID, PID)
            + pb.varint_field_bytes(_THREAD_TID, tid)
            + pb.bytes_field(_THREAD_NAME, name.encode())
        )
        packets.append(pb.varint_field_bytes(_UUID, PROCESS_UUID + 1 + index) + pb.bytes_field(_THREAD, thread))
    return b"".join(pb.bytes_field(_TRACE_PACKET, pb.bytes_field(_DESCRIPTOR, packet)) for packet in packets)


def _interned(columns: SpanColumns, annotation_keys: dict[str, int]) -> bytes:
    """The packet that clears the sequence's state and interns every name the events refer to by id."""

    def entries(field: int, names: list[tuple[int, str]]) -> bytes:
        return b"".join(
            pb.bytes_field(field, pb.varint_field_bytes(_IID, iid) + pb.bytes_field(_INTERNED_NAME, name.encode()))
            for iid, name in names
        )

    interned = (
        entries(_INTERNED_CATEGORIES, [(int(level) + 1, level.name.lower()) for level in TraceLevel])
        + entries(_INTERNED_NAMES, [(index + 1, name) for index, name in enumerate(columns.names)])
        + entries(_INTERNED_ANNOTATION_NAMES, [(iid, key) for key, iid in annotation_keys.items()])
    )
    packet = (
        pb.varint_field_bytes(_SEQUENCE, SEQUENCE_ID)
        + pb.varint_field_bytes(_FLAGS, _CLEARED)
        + pb.bytes_field(_INTERNED, interned)
    )
    return pb.bytes_field(_TRACE_PACKET, packet)


def _attribute_annotations(attribute_sets: list[dict[str, Any]], annotation_keys: dict[str, int]) -> list[bytes]:
    """Each distinct attribute set (``attribute_texts``) as its encoded debug annotations."""
    return [
        b"".join(
            pb.bytes_field(_ANNOTATIONS, pb.varint_field_bytes(_ANNOTATION_NAME_IID, annotation_keys[key]) + _value(v))
            for key, v in attributes.items()
            if key not in _ID_KEYS
        )
        for attributes in attribute_sets
    ]


def _value(value: Any) -> bytes:
    """A DebugAnnotation's value field: bool, int64, double, or a string (an integer beyond int64 as its digits)."""
    if isinstance(value, bool):
        return pb.varint_field_bytes(_BOOL, int(value))
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return pb.varint_field_bytes(_INT, value & (2**64 - 1))
    if isinstance(value, float):
        return pb.tag(_DOUBLE, 1) + struct.pack("<d", value)
    return pb.bytes_field(_STRING, str(value).encode())


def _chunks(
    head: bytes,
    columns: SpanColumns,
    order: NDArray[np.int64],
    begin_ns: NDArray[np.int64],
    end_ns: NDArray[np.int64],
    track_uuids: NDArray[np.int64],
    events: NDArray[np.int64],
    attributes: list[bytes],
    annotation_keys: dict[str, int],
) -> Iterator[bytes]:
    yield head
    count = len(order)
    begin_trailer = pb.varint_field_bytes(_SEQUENCE, SEQUENCE_ID) + pb.varint_field_bytes(_FLAGS, _NEEDS_STATE)
    end_trailer = pb.varint_field_bytes(_SEQUENCE, SEQUENCE_ID)
    for first in range(0, len(events), CHUNK_EVENTS):
        chunk = events[first : first + CHUNK_EVENTS]
        is_begin = chunk < count
        begun, ended = chunk[is_begin], chunk[~is_begin] - count
        begin_events = _begin_events(columns, order[begun], track_uuids[begun], attributes, annotation_keys)
        end_events = _end_events(track_uuids[ended])
        yield _interleave(
            is_begin,
            _packets(begin_ns[begun], begin_events, begin_trailer),
            _packets(end_ns[ended], end_events, end_trailer),
        )


def _begin_events(
    columns: SpanColumns,
    rows: NDArray[np.int64],
    track_uuids: NDArray[np.int64],
    attributes: list[bytes],
    annotation_keys: dict[str, int],
) -> pb.Rows:
    """The ``TrackEvent`` of each slice begin: type, track, interned name and category, annotations."""
    annotations = [
        _int_annotation(annotation_keys[key], column.values[rows]).where(
            None if column.present is None else column.present[rows]
        )
        for key, column in columns.ints.items()
        if key not in _ID_KEYS
    ]
    return pb.join(
        [
            pb.constant(pb.varint_field_bytes(_TYPE, _SLICE_BEGIN), len(rows)),
            pb.varint_field(_TRACK_UUID, track_uuids),
            pb.varint_field(_NAME_IID, columns.name_index[rows].astype(np.int64) + 1),
            pb.varint_field(_CATEGORY_IIDS, columns.level[rows].astype(np.int64) + 1),
            *annotations,
            pb.table(attributes, columns.attribute_index[rows]),
            _int_annotation(annotation_keys["span_id"], columns.span_id[rows]),
            _int_annotation(annotation_keys["parent_id"], columns.parent_id[rows]),
        ]
    )


def _end_events(track_uuids: NDArray[np.int64]) -> pb.Rows:
    return pb.join(
        [
            pb.constant(pb.varint_field_bytes(_TYPE, _SLICE_END), len(track_uuids)),
            pb.varint_field(_TRACK_UUID, track_uuids),
        ]
    )


def _int_annotation(name_iid: int, values: NDArray[np.int64]) -> pb.Rows:
    name = pb.constant(pb.varint_field_bytes(_ANNOTATION_NAME_IID, name_iid), len(values))
    return pb.message_field(_ANNOTATIONS, pb.join([name, pb.varint_field(_INT, values)]))


def _packets(timestamps_ns: NDArray[np.int64], track_events: pb.Rows, trailer: bytes) -> pb.Rows:
    """Whole ``Trace.packet`` fields: timestamp, the track event, the sequence fields."""
    packet = pb.join(
        [
            pb.varint_field(_TIMESTAMP, timestamps_ns),
            pb.message_field(_TRACK_EVENT, track_events),
            pb.constant(trailer, len(timestamps_ns)),
        ]
    )
    return pb.message_field(_TRACE_PACKET, packet)


def _interleave(is_begin: NDArray[np.bool_], begins: pb.Rows, ends: pb.Rows) -> bytes:
    """The begin and end packets in event order (``is_begin`` says which each event is)."""
    width = max(begins.data.shape[1], ends.data.shape[1])
    data = np.zeros((len(is_begin), width), np.uint8)
    mask = np.zeros((len(is_begin), width), np.bool_)
    for rows, selected in ((begins, is_begin), (ends, ~is_begin)):
        data[selected, : rows.data.shape[1]] = rows.data
        mask[selected, : rows.mask.shape[1]] = rows.mask
    return pb.Rows(data, mask).tobytes()
