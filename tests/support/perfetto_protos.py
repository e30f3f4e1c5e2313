"""Perfetto's trace messages for the tests, declared from Perfetto's .proto field numbers (the subset the export
writes) and decoded by the protobuf library itself, not by our encoder's code: a wrong field number, wire type or
length shows up as a decode error or a missing field.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_TYPES = descriptor_pb2.FieldDescriptorProto
_MESSAGES: dict[str, list[tuple[str, int, int, str]]] = {  # name -> (field, number, type, message type)
    "Trace": [("packet", 1, _TYPES.TYPE_MESSAGE, "TracePacket")],
    "TracePacket": [
        ("timestamp", 8, _TYPES.TYPE_UINT64, ""),
        ("trusted_packet_sequence_id", 10, _TYPES.TYPE_UINT32, ""),
        ("track_event", 11, _TYPES.TYPE_MESSAGE, "TrackEvent"),
        ("interned_data", 12, _TYPES.TYPE_MESSAGE, "InternedData"),
        ("sequence_flags", 13, _TYPES.TYPE_UINT32, ""),
        ("track_descriptor", 60, _TYPES.TYPE_MESSAGE, "TrackDescriptor"),
    ],
    "TrackEvent": [
        ("category_iids", 3, _TYPES.TYPE_UINT64, "repeated"),
        ("debug_annotations", 4, _TYPES.TYPE_MESSAGE, "DebugAnnotation"),
        ("type", 9, _TYPES.TYPE_INT32, ""),
        ("name_iid", 10, _TYPES.TYPE_UINT64, ""),
        ("track_uuid", 11, _TYPES.TYPE_UINT64, ""),
    ],
    "DebugAnnotation": [
        ("name_iid", 1, _TYPES.TYPE_UINT64, ""),
        ("bool_value", 2, _TYPES.TYPE_BOOL, ""),
        ("int_value", 4, _TYPES.TYPE_INT64, ""),
        ("double_value", 5, _TYPES.TYPE_DOUBLE, ""),
        ("string_value", 6, _TYPES.TYPE_STRING, ""),
    ],
    "TrackDescriptor": [
        ("uuid", 1, _TYPES.TYPE_UINT64, ""),
        ("process", 3, _TYPES.TYPE_MESSAGE, "ProcessDescriptor"),
        ("thread", 4, _TYPES.TYPE_MESSAGE, "ThreadDescriptor"),
    ],
    "ProcessDescriptor": [("pid", 1, _TYPES.TYPE_INT32, ""), ("process_name", 6, _TYPES.TYPE_STRING, "")],
    "ThreadDescriptor": [
        ("pid", 1, _TYPES.TYPE_INT32, ""),
        ("tid", 2, _TYPES.TYPE_INT32, ""),
        ("thread_name", 5, _TYPES.TYPE_STRING, ""),
    ],
    "InternedData": [
        ("event_categories", 1, _TYPES.TYPE_MESSAGE, "Interned"),
        ("event_names", 2, _TYPES.TYPE_MESSAGE, "Interned"),
        ("debug_annotation_names", 3, _TYPES.TYPE_MESSAGE, "Interned"),
    ],
    "Interned": [("iid", 1, _TYPES.TYPE_UINT64, ""), ("name", 2, _TYPES.TYPE_STRING, "")],
}
_REPEATED = {("Trace", "packet"), ("TrackEvent", "debug_annotations"), ("TrackEvent", "category_iids")}
_REPEATED |= {("InternedData", name) for name in ("event_categories", "event_names", "debug_annotation_names")}


def _trace_class() -> Any:
    file = descriptor_pb2.FileDescriptorProto(name="perfetto_subset.proto", package="perfetto.protos", syntax="proto2")
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        for field_name, number, field_type, type_name in fields:
            repeated = (name, field_name) in _REPEATED
            field = message.field.add(name=field_name, number=number, type=field_type)
            field.label = _TYPES.LABEL_REPEATED if repeated else _TYPES.LABEL_OPTIONAL
            if field_type == _TYPES.TYPE_MESSAGE:
                field.type_name = f".perfetto.protos.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("perfetto.protos.Trace"))


TRACE = _trace_class()


def slices(trace: Any) -> tuple[dict[int, str], list[dict[str, Any]]]:
    """(track names by uuid, one dict per slice) from the decoded packets, checking that every track's begins
    and ends nest like a stack, as Perfetto requires, and that interned ids are declared before use."""
    tracks, interned, stacks = {}, {}, defaultdict(list)
    found: list[dict[str, Any]] = []
    for packet in trace.packet:
        if packet.HasField("track_descriptor"):
            descriptor = packet.track_descriptor
            label = descriptor.thread.thread_name if descriptor.HasField("thread") else descriptor.process.process_name
            tracks[descriptor.uuid] = label
        if packet.HasField("interned_data"):
            assert packet.sequence_flags == 1 and packet.trusted_packet_sequence_id == 1
            for field in ("event_categories", "event_names", "debug_annotation_names"):
                interned[field] = {entry.iid: entry.name for entry in getattr(packet.interned_data, field)}
        if not packet.HasField("track_event"):
            continue
        event = packet.track_event
        assert event.track_uuid in tracks and packet.trusted_packet_sequence_id == 1
        if event.type == 1:
            assert packet.sequence_flags == 2  # it uses the interned names
            names = interned["debug_annotation_names"]
            args = {names[a.name_iid]: _annotation_value(a) for a in event.debug_annotations}
            record = {
                "name": interned["event_names"][event.name_iid],
                "category": interned["event_categories"][event.category_iids[0]],
                "track": tracks[event.track_uuid],
                "begin_ns": packet.timestamp,
                "args": args,
            }
            stacks[event.track_uuid].append(record)
            found.append(record)
        else:
            assert event.type == 2 and stacks[event.track_uuid], "an end without a begin on its track"
            stacks[event.track_uuid].pop()["end_ns"] = packet.timestamp
    assert not any(stacks.values()), "slices left open"
    return tracks, found


def _annotation_value(annotation: Any) -> Any:
    for field in ("bool_value", "int_value", "double_value", "string_value"):
        if annotation.HasField(field):
            return getattr(annotation, field)
    raise AssertionError(f"an annotation without a value: {annotation}")


def decode(data: bytes) -> Any:
    trace = TRACE()
    trace.ParseFromString(data)
    return trace
