"""Protocol-buffer messages of one shape for many rows at once, encoded with numpy instead of a loop per message.

Why: Perfetto's native trace is two small messages per span (slice begin and end), two million for a 1M-span run;
encoding them one by one in Python takes seconds per million, so the export would be slower than the JSON it
replaces. A message of a fixed shape (the same fields in the same order, some optional) is a row of byte pieces:
each piece is a padded byte matrix (one row per message) and a mask of which bytes are real. Pieces are joined
side by side, a nested message becomes a tag + length + its pieces, and ``Rows.tobytes`` keeps the masked bytes in
row-major order: the messages, one after another, exactly as a protobuf encoder writes them (fields in the order
given, varints minimal).

Only the wire types the trace needs: varint (unsigned and non-negative signed), length-delimited (strings, bytes,
sub-messages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

_VARINT_MAX_BYTES = 10
_SHIFTS = np.arange(_VARINT_MAX_BYTES, dtype=np.uint64) * np.uint64(7)
_THRESHOLDS = [np.uint64(1 << (7 * k)) for k in range(1, _VARINT_MAX_BYTES)]


@dataclass(frozen=True)
class Rows:
    """One byte string per row: ``data[i][mask[i]]`` is row i's bytes."""

    data: NDArray[np.uint8]
    mask: NDArray[np.bool_]

    @property
    def lengths(self) -> NDArray[np.int64]:
        lengths: NDArray[np.int64] = self.mask.sum(axis=1, dtype=np.int64)
        return lengths

    def tobytes(self) -> bytes:
        """Every row's bytes, row after row."""
        return self.data[self.mask].tobytes()

    def where(self, present: NDArray[np.bool_] | None) -> Rows:
        """These bytes in the rows where ``present``, nothing in the others (an optional field)."""
        if present is None:
            return self
        return Rows(self.data, self.mask & present[:, None])


def varint_bytes(value: int) -> bytes:
    """One varint (a tag, a length), as a protobuf encoder writes it."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(field_number: int, wire_type: int) -> bytes:
    return varint_bytes(field_number << 3 | wire_type)


def constant(content: bytes, count: int) -> Rows:
    """The same bytes in every row."""
    data = np.broadcast_to(np.frombuffer(content, np.uint8), (count, len(content)))
    return Rows(data, np.ones((count, len(content)), np.bool_))


def varints(values: NDArray[np.integer]) -> Rows:
    """Each value as a minimal varint (values must be >= 0)."""
    unsigned = values.astype(np.uint64)
    lengths = np.ones(len(unsigned), np.int64)
    for threshold in _THRESHOLDS:  # one more byte for every 7 bits beyond the first 7
        lengths += unsigned >= threshold
    width = int(lengths.max()) if len(lengths) else 1
    groups = (unsigned[:, None] >> _SHIFTS[:width]) & np.uint64(0x7F)
    columns = np.arange(width)
    continued = columns[None, :] < (lengths[:, None] - 1)
    data = (groups | (continued.astype(np.uint64) << np.uint64(7))).astype(np.uint8)
    return Rows(data, columns[None, :] < lengths[:, None])


def table(contents: Sequence[bytes], index: NDArray[np.integer]) -> Rows:
    """Row i holds ``contents[index[i]]`` (pre-encoded pieces that repeat: a name, an attribute set)."""
    width = max((len(content) for content in contents), default=0)
    padded = np.zeros((len(contents), max(width, 1)), np.uint8)
    for row, content in enumerate(contents):
        padded[row, : len(content)] = np.frombuffer(content, np.uint8)
    lengths = np.array([len(content) for content in contents] or [0], np.int64)
    rows = index.astype(np.int64)
    return Rows(padded[rows], np.arange(padded.shape[1])[None, :] < lengths[rows][:, None])


def join(pieces: Sequence[Rows]) -> Rows:
    """The pieces side by side: each row's bytes are its pieces' bytes in order."""
    return Rows(np.hstack([piece.data for piece in pieces]), np.hstack([piece.mask for piece in pieces]))


def varint_field(field_number: int, values: NDArray[np.integer]) -> Rows:
    return join([constant(tag(field_number, 0), len(values)), varints(values)])


def message_field(field_number: int, content: Rows) -> Rows:
    """``content`` as a length-delimited field (a sub-message, or the packets of a ``Trace``)."""
    count = len(content.data)
    return join([constant(tag(field_number, 2), count), varints(content.lengths), content])


def bytes_field(field_number: int, content: bytes) -> bytes:
    """One length-delimited field, encoded once (a string, or a message built with the functions here)."""
    return tag(field_number, 2) + varint_bytes(len(content)) + content


def varint_field_bytes(field_number: int, value: int) -> bytes:
    return tag(field_number, 0) + varint_bytes(value)
