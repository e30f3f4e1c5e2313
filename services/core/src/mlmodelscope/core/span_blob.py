"""The compressed blob of span columns: how a ``SpanColumns`` batch travels (agent -> collector) and is stored.

Blob layout (``encode_columns``), zlib-compressed as a whole: a little-endian uint32 header length, the header
(JSON: ``v``, ``count``, ``names``, ``attributes``, ``ints`` = [[key, masked], ...]), then the arrays in a fixed
order: span_id and start_ns as deltas from the previous value (a run's ids and times grow: small deltas
compress), parent_id, duration (end - start), level, name index, attribute index, then per integer key its
delta-coded values and, when masked, its uint8 mask. Each int64 column is written in the narrowest of 1, 2, 4 or
8 bytes that holds it (header ``widths``): a third of the bytes to compress for MODEL spans. Integer arithmetic
wraps in int64 both ways, so any value round-trips exactly. ``decode_columns`` refuses (``ValueError`` saying
what) a blob whose sizes, indices, levels, names or intervals are not those of valid spans: the collector's
storability check.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlmodelscope.core.span_columns import TRACE_LEVELS, Int64Array, IntAttribute, SpanColumns

FORMAT_VERSION = 1
COMPRESSION_LEVEL = 1  # zlib level 1: ~4x smaller than raw for span columns, at a few ms per 10k spans
MAX_NAME_CHARS = 256
_HEADER = struct.Struct("<I")


def _delta(values: Int64Array) -> Int64Array:
    out = np.empty_like(values)
    if len(values):
        out[0] = values[0]
        np.subtract(values[1:], values[:-1], out=out[1:])
    return out


def encode_columns(columns: SpanColumns) -> bytes:
    """The compressed blob of ``columns`` (see the module docstring for the layout)."""
    header = {
        "v": FORMAT_VERSION,
        "count": len(columns),
        "names": list(columns.names),
        "attributes": list(columns.attribute_texts),
        "ints": [[key, column.present is not None] for key, column in columns.ints.items()],
    }
    wide: list[NDArray[Any]] = [  # int64 columns, each written in the narrowest width that holds its values
        _delta(columns.span_id.astype(np.int64, copy=False)),
        _delta(columns.start_ns.astype(np.int64, copy=False)),
        columns.parent_id.astype(np.int64, copy=False),
        (columns.end_ns - columns.start_ns).astype(np.int64, copy=False),
    ]
    wide += [_delta(column.values.astype(np.int64, copy=False)) for column in columns.ints.values()]
    narrowed = [_narrowest(array) for array in wide]
    header["widths"] = [array.dtype.itemsize for array in narrowed]
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    arrays: list[NDArray[Any]] = [
        *narrowed[:4],
        columns.level.astype(np.int8, copy=False),
        columns.name_index.astype("<i4", copy=False),
        columns.attribute_index.astype("<i4", copy=False),
    ]
    for column, values in zip(columns.ints.values(), narrowed[4:], strict=True):
        arrays.append(values)
        if column.present is not None:
            arrays.append(column.present.astype(np.uint8))
    body = b"".join([_HEADER.pack(len(header_bytes)), header_bytes, *(a.tobytes() for a in arrays)])
    return zlib.compress(body, COMPRESSION_LEVEL)


def _narrowest(values: Int64Array) -> NDArray[Any]:
    """``values`` as little-endian int8/16/32/64, the narrowest that holds them (deltas are mostly small: less to
    compress and decompress)."""
    if not len(values):
        return values.astype("<i8")
    low, high = int(values.min()), int(values.max())
    for dtype in ("<i1", "<i2", "<i4"):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return values.astype(dtype)
    return values.astype("<i8", copy=False)


def decode_columns(blob: bytes, *, check: bool = True) -> SpanColumns:
    """The columns of a blob from ``encode_columns``; ValueError naming the first thing that is not valid.
    ``check=False`` skips the span rules (not the layout checks): for blobs checked when they were stored."""
    try:
        body = zlib.decompress(blob)
    except zlib.error as e:
        raise ValueError(f"span columns are not zlib data: {e}") from e
    if len(body) < _HEADER.size:
        raise ValueError("span columns are shorter than their header")
    (header_size,) = _HEADER.unpack_from(body)
    try:
        header = json.loads(body[_HEADER.size : _HEADER.size + header_size])
        version, count = header["v"], header["count"]
        names, texts, int_specs, widths = header["names"], header["attributes"], header["ints"], header["widths"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"span columns have no valid header: {e}") from e
    if version != FORMAT_VERSION:
        raise ValueError(f"span columns of format version {version!r}; this code reads version {FORMAT_VERSION}")
    if not isinstance(count, int) or count < 0:
        raise ValueError(f"span columns' count {count!r} is not a number of spans")
    if not _strings(names) or not _strings(texts) or not isinstance(int_specs, list):
        raise ValueError("span columns' header tables are not lists of strings")
    if not isinstance(widths, list) or len(widths) != 4 + len(int_specs) or not set(widths) <= {1, 2, 4, 8}:
        raise ValueError(f"span columns' widths {widths!r} are not one of 1, 2, 4, 8 bytes per integer column")
    wide = iter(f"<i{width}" for width in widths)
    offset = _HEADER.size + header_size

    def take(dtype: str) -> NDArray[Any]:
        nonlocal offset
        size = np.dtype(dtype).itemsize * count
        if offset + size > len(body):
            raise ValueError(f"span columns end early: {count} spans need more than {len(body)} bytes")
        array = np.frombuffer(body, dtype, count, offset)
        offset += size
        return array

    span_id = np.cumsum(take(next(wide)), dtype=np.int64)
    start_ns = np.cumsum(take(next(wide)), dtype=np.int64)
    parent_id = take(next(wide)).astype(np.int64)
    end_ns = start_ns + take(next(wide)).astype(np.int64)
    level = take("i1").astype(np.int8)
    name_index = take("<i4").astype(np.int32)
    attribute_index = take("<i4").astype(np.int32)
    ints: dict[str, IntAttribute] = {}
    for spec in int_specs:
        if not (isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], bool)):
            raise ValueError(f"span columns' integer attribute {spec!r} is not [key, masked]")
        values = np.cumsum(take(next(wide)), dtype=np.int64)
        present = take("u1").astype(np.bool_) if spec[1] else None
        ints[spec[0]] = IntAttribute(values, present)
    if offset != len(body):
        raise ValueError(f"span columns have {len(body) - offset} bytes beyond their {count} spans")
    columns = SpanColumns(
        span_id, parent_id, start_ns, end_ns, level, name_index, tuple(names), attribute_index, tuple(texts), ints
    )
    if check:
        _check(columns)
    return columns


def _strings(values: Any) -> bool:
    return isinstance(values, list) and all(isinstance(value, str) for value in values)


def _check(columns: SpanColumns) -> None:
    """The rules of ``Span`` (and of the collector's columns), on whole arrays."""
    if not len(columns):
        return
    first = ""
    if columns.span_id.min() < 1:
        first = "a span id below 1"
    elif columns.parent_id.min() < 0:
        first = "a negative parent id"
    elif columns.start_ns.min() < 0:
        first = "a negative start_ns"
    elif (columns.end_ns < columns.start_ns).any():
        row = int(np.argmax(columns.end_ns < columns.start_ns))
        first = f"span {int(columns.span_id[row])} ends before it starts"
    elif not np.isin(columns.level, TRACE_LEVELS).all():
        first = "a trace level that does not exist"
    elif columns.name_index.min() < 0 or columns.name_index.max() >= len(columns.names):
        first = "a name index outside the name table"
    elif columns.attribute_index.min() < 0 or columns.attribute_index.max() >= len(columns.attribute_texts):
        first = "an attribute index outside the attribute table"
    elif any(not 1 <= len(name) <= MAX_NAME_CHARS or "\x00" in name for name in columns.names):
        first = f"a name that is empty, longer than {MAX_NAME_CHARS} characters or holds a NUL"
    if first:
        raise ValueError(f"span columns hold {first}")
    for text in columns.attribute_texts:
        try:
            value = json.loads(text)
        except ValueError as e:
            raise ValueError(f"span columns' attributes {text[:80]!r} are not JSON: {e}") from e
        if not isinstance(value, dict) or not all(
            isinstance(v, str | int | float | bool) and not isinstance(v, dict | list) for v in value.values()
        ):
            raise ValueError(f"span columns' attributes {text[:80]!r} are not an object of scalars")


def span_columns_payload(columns: SpanColumns, query_parents: Sequence[tuple[int, str]] = ()) -> str:
    """The JSON text of a ``span_columns`` payload (``messages.SpanColumnBatch``), formatted directly: its only
    large field is the base64 of the blob; ``messages.envelope_json`` wraps it."""
    blob = base64.b64encode(encode_columns(columns)).decode("ascii")
    parents = json.dumps([list(pair) for pair in query_parents])
    return f'{{"kind":"span_columns","span_count":{len(columns)},"query_parents":{parents},"columns":"{blob}"}}'
