"""Check a downloaded Perfetto trace before it replaces the user's file, and count its slices.

Why: ``trace export`` writes to a ``.partial`` file and renames it only when the document is whole; for Chrome JSON
that check is ``validate_chrome_trace``, for Perfetto's protobuf it is this walk of the wire format: every packet is
a well-formed ``Trace.packet`` field, and every slice that begins on a track also ends (a cut-off download, a
collector that died mid-stream or an HTML error page all fail here, naming the byte offset).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mlmodelscope.core.errors import MLModelScopeError

_TRACK_EVENT_FIELD, _TYPE_FIELD, _TRACK_UUID_FIELD = 11, 9, 11
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
_SLICE_BEGIN, _SLICE_END = 1, 2
_VARINT_MAX = 10
# One-byte tags (field number << 3 | wire type): Trace.packet, TracePacket.timestamp and .track_event,
# TrackEvent.type and .track_uuid.
_PACKET_TAG, _TIMESTAMP_TAG, _TRACK_EVENT_TAG, _TYPE_TAG, _TRACK_UUID_TAG = 0x0A, 0x40, 0x5A, 0x48, 0x58


class PerfettoFileError(MLModelScopeError):
    """The bytes are not a whole Perfetto trace."""


def count_slices(data: bytes) -> int:
    """The number of slices in a Perfetto trace (begins, each matched by an end on its track)."""
    starts, ends = _packets(data)
    kinds, tracks = _events(data, starts, ends)
    if not len(kinds):
        return 0
    steps = np.where(kinds == _SLICE_BEGIN, 1, np.where(kinds == _SLICE_END, -1, 0))
    by_track = np.argsort(tracks, kind="stable")  # each track's events in file order
    depth = np.cumsum(steps[by_track])
    track_sorted = tracks[by_track]
    first_of_track = np.flatnonzero(np.r_[True, track_sorted[1:] != track_sorted[:-1]])
    before_track = np.repeat(np.r_[0, depth[first_of_track[1:] - 1]], np.diff(np.r_[first_of_track, len(depth)]))
    open_depth = depth - before_track  # slices open on each event's track after it
    if (open_depth < 0).any():
        first = int(np.argmax(open_depth < 0))
        where, track = int(starts[by_track[first]]), int(track_sorted[first])
        raise PerfettoFileError(f"byte {where}: a slice ends on track {track} where none began")
    last_of_track = np.r_[first_of_track[1:] - 1, len(depth) - 1]
    unfinished = int(open_depth[last_of_track].sum())
    if unfinished:
        raise PerfettoFileError(f"{unfinished} slice(s) never end: the trace is cut off")
    return int((kinds == _SLICE_BEGIN).sum())


def _packets(data: bytes) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Where each packet's content starts and ends: the walk of the ``Trace.packet`` fields, in one loop."""
    starts: list[int] = []
    ends: list[int] = []
    size, position = len(data), 0
    while position < size:
        if data[position] != _PACKET_TAG:
            field, wire_type, _ = _tag(data, position)
            raise PerfettoFileError(f"byte {position}: field {field} (wire type {wire_type}) is not a trace packet")
        length = data[position + 1] if position + 1 < size else 0x80
        if length < 0x80:  # the common one-byte length, inline
            position += 2
            end = position + length
            if end > size:
                raise PerfettoFileError(f"byte {position}: {length} bytes announced, {size - position} left: cut off")
        else:
            end, position = _length(data, position + 1)
        starts.append(position)
        ends.append(end)
        position = end
    return np.array(starts, np.int64), np.array(ends, np.int64)


def _events(
    data: bytes, starts: NDArray[np.int64], ends: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(type, track uuid) of each packet's track event (type 0 for other packets). Packets laid out as the
    collector writes them (timestamp, then a short track event whose first fields are its type and track) are read
    with numpy at once; any other packet field by field."""
    padded = np.frombuffer(data + bytes(2 * _VARINT_MAX), np.uint8)
    timestamp_length = _varint_lengths(padded, starts + 1)
    event = starts + 1 + timestamp_length  # the track event's tag, where the timestamp comes first
    fast = (
        (padded[starts] == _TIMESTAMP_TAG)
        & (padded[event] == _TRACK_EVENT_TAG)
        & (padded[event + 1] < 0x80)  # a one-byte length
        & (event + 2 + padded[event + 1] <= ends)
        & (padded[event + 2] == _TYPE_TAG)
        & ((padded[event + 3] == _SLICE_BEGIN) | (padded[event + 3] == _SLICE_END))
        & (padded[event + 4] == _TRACK_UUID_TAG)
        & (padded[event + 5] < 0x80)  # a one-byte track uuid
        & (event + 6 <= event + 2 + padded[event + 1])
    )
    kinds = np.where(fast, padded[event + 3], 0).astype(np.int64)
    tracks = np.where(fast, padded[event + 5], 0).astype(np.int64)
    for index in np.flatnonzero(~fast).tolist():
        found = _track_event(data, int(starts[index]), int(ends[index]))
        if found is not None:
            kinds[index], tracks[index] = found
    return kinds, tracks


def _varint_lengths(padded: NDArray[np.uint8], positions: NDArray[np.int64]) -> NDArray[np.int64]:
    """The length of the varint at each position (10 where none ends within 10 bytes)."""
    window = padded[positions[:, None] + np.arange(_VARINT_MAX)]
    ended = window < 0x80
    lengths: NDArray[np.int64] = np.where(ended.any(axis=1), ended.argmax(axis=1) + 1, _VARINT_MAX)
    return lengths


def _track_event(data: bytes, position: int, end: int) -> tuple[int, int] | None:
    """(type, track uuid) of the packet's track event, or None for another packet."""
    while position < end:
        field, wire_type, position = _tag(data, position)
        if field == _TRACK_EVENT_FIELD and wire_type == _LENGTH_DELIMITED:
            event_end, position = _length(data, position)
            return _event_fields(data, position, event_end)
        position = _skip(data, position, wire_type)
    if position != end:
        raise PerfettoFileError(f"byte {position}: a field runs past the end of its packet")
    return None


def _event_fields(data: bytes, position: int, end: int) -> tuple[int, int]:
    kind = track = 0
    while position < end:
        field, wire_type, position = _tag(data, position)
        if wire_type == _VARINT and field in (_TYPE_FIELD, _TRACK_UUID_FIELD):
            value, position = _varint(data, position)
            kind, track = (value, track) if field == _TYPE_FIELD else (kind, value)
        else:
            position = _skip(data, position, wire_type)
    if position != end:
        raise PerfettoFileError(f"byte {position}: a field runs past the end of its track event")
    return kind, track


def _tag(data: bytes, position: int) -> tuple[int, int, int]:
    key, position = _varint(data, position)
    return key >> 3, key & 7, position


def _length(data: bytes, position: int) -> tuple[int, int]:
    """(end of the length-delimited content, its start)."""
    length, position = _varint(data, position)
    if position + length > len(data):
        raise PerfettoFileError(f"byte {position}: {length} bytes announced, {len(data) - position} left: cut off")
    return position + length, position


def _skip(data: bytes, position: int, wire_type: int) -> int:
    if wire_type == _VARINT:
        return _varint(data, position)[1]
    if wire_type == _LENGTH_DELIMITED:
        return _length(data, position)[0]
    if wire_type in (_FIXED64, _FIXED32):
        return position + (8 if wire_type == _FIXED64 else 4)
    raise PerfettoFileError(f"byte {position}: wire type {wire_type} is not one a trace uses")


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    for index in range(position, min(position + 10, len(data))):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, index + 1
        shift += 7
    raise PerfettoFileError(f"byte {position}: a varint is cut off or longer than 10 bytes")
