"""Columnar span batches: thousands of spans as a handful of numpy arrays (``SpanColumns``).

Why: a span as a JSON object per row cost the collector a pydantic model per span on decode (53% of its time)
and a SQL row per span on insert (44%); reading a 1M-span run back built a million ``Span`` objects. A batch of
spans is instead stored and sent as columns: ``span_id``, ``parent_id``, ``start_ns``, ``end_ns`` (int64),
``level`` (int8), ``name`` (an index into the batch's distinct names) and attributes split in two: every
attribute key whose values are all integers becomes an int64 column (with a presence mask when some spans lack
it: ``seq``, ``first_item``, ``item_count`` of MODEL spans), and the rest of each span's attributes is one JSON
object text, dictionary-encoded (an operator's ``node``/``op_type`` repeat for every query, so the table of
distinct texts stays small). How the columns travel and are stored, compressed into one blob, is
``mlmodelscope.core.span_blob``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlmodelscope.core.tracing.spans import AttributeValue, Span, TraceLevel

TRACE_LEVELS = np.array([int(level) for level in TraceLevel], dtype=np.int8)
Int64Array = NDArray[np.int64]


@dataclass(frozen=True)
class IntAttribute:
    """One integer attribute key as a column; ``present`` is None when every span has it."""

    values: Int64Array
    present: NDArray[np.bool_] | None = None


@dataclass(frozen=True)
class SpanColumns:
    """The spans of one batch (or of a whole run, ``concat``) as columns; see the module docstring."""

    span_id: Int64Array
    parent_id: Int64Array
    start_ns: Int64Array
    end_ns: Int64Array
    level: NDArray[np.int8]
    name_index: NDArray[np.int32]
    names: tuple[str, ...]
    attribute_index: NDArray[np.int32]
    attribute_texts: tuple[str, ...]  # JSON objects of the attributes not in an int column ("{}" among them)
    ints: dict[str, IntAttribute] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.span_id)

    # --- building ---------------------------------------------------------------------------------------------

    @classmethod
    def from_spans(cls, spans: Sequence[Span]) -> SpanColumns:
        """Columns of ``spans`` (any levels and attributes), in the given order."""
        count = len(spans)
        names: dict[str, int] = {}
        name_index = np.fromiter((names.setdefault(s.name, len(names)) for s in spans), np.int32, count)
        int_keys: dict[str, bool] = {}  # key -> still all-integer
        for span in spans:
            for key, value in span.attributes.items():
                is_int = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
                int_keys[key] = int_keys.get(key, True) and is_int
        int_columns = [key for key, all_int in int_keys.items() if all_int]
        ints: dict[str, IntAttribute] = {}
        for key in int_columns:
            present = np.fromiter((key in s.attributes for s in spans), np.bool_, count)
            values = np.fromiter((int(s.attributes.get(key, 0)) for s in spans), np.int64, count)
            ints[key] = IntAttribute(values, None if present.all() else present)
        texts: dict[str, int] = {}
        by_items: dict[tuple[tuple[str, type, AttributeValue], ...], int] = {}  # type in the key: 1 is not True
        skip = set(int_columns)
        indices = []
        for span in spans:
            items = tuple((k, type(v), v) for k, v in span.attributes.items() if k not in skip)
            index = by_items.get(items)
            if index is None:
                text = json.dumps({k: v for k, _t, v in items}, separators=(",", ":"))
                index = by_items[items] = texts.setdefault(text, len(texts))
            indices.append(index)
        attribute_index = np.array(indices, dtype=np.int32)
        return cls(
            span_id=np.fromiter((s.span_id for s in spans), np.int64, count),
            parent_id=np.fromiter((s.parent_id for s in spans), np.int64, count),
            start_ns=np.fromiter((s.start_ns for s in spans), np.int64, count),
            end_ns=np.fromiter((s.end_ns for s in spans), np.int64, count),
            level=np.fromiter((int(s.level) for s in spans), np.int8, count),
            name_index=name_index,
            names=tuple(names),
            attribute_index=attribute_index,
            attribute_texts=tuple(texts),
            ints=ints,
        )

    @classmethod
    def uniform(
        cls,
        *,
        span_id: Int64Array,
        parent_id: Int64Array,
        start_ns: Int64Array,
        end_ns: Int64Array,
        level: TraceLevel,
        name: str,
        ints: dict[str, Int64Array],
    ) -> SpanColumns:
        """Spans of one level and name whose attributes are all integer columns (the streamed MODEL spans)."""
        count = len(span_id)
        return cls(
            span_id=span_id,
            parent_id=parent_id,
            start_ns=start_ns,
            end_ns=end_ns,
            level=np.full(count, int(level), np.int8),
            name_index=np.zeros(count, np.int32),
            names=(name,),
            attribute_index=np.zeros(count, np.int32),
            attribute_texts=("{}",),
            ints={key: IntAttribute(values) for key, values in ints.items()},
        )

    @classmethod
    def concat(cls, parts: Sequence[SpanColumns]) -> SpanColumns:
        """One set of columns from several (a run's batches): names and attribute texts re-indexed."""
        if len(parts) == 1:
            return parts[0]
        names: dict[str, int] = {}
        texts: dict[str, int] = {}
        name_parts, text_parts = [], []
        for part in parts:
            name_map = np.array([names.setdefault(n, len(names)) for n in part.names], np.int32)
            text_map = np.array([texts.setdefault(t, len(texts)) for t in part.attribute_texts], np.int32)
            name_parts.append(name_map[part.name_index] if len(part) else part.name_index)
            text_parts.append(text_map[part.attribute_index] if len(part) else part.attribute_index)
        keys = list(dict.fromkeys(key for part in parts for key in part.ints))
        ints: dict[str, IntAttribute] = {}
        for key in keys:
            values, present = [], []
            for part in parts:
                column = part.ints.get(key)
                if column is None:
                    values.append(np.zeros(len(part), np.int64))
                    present.append(np.zeros(len(part), np.bool_))
                else:
                    values.append(column.values)
                    present.append(np.ones(len(part), np.bool_) if column.present is None else column.present)
            mask = np.concatenate(present)
            ints[key] = IntAttribute(np.concatenate(values), None if mask.all() else mask)

        def joined(name: str) -> Any:
            return np.concatenate([getattr(part, name) for part in parts]) if parts else np.zeros(0, np.int64)

        return cls(
            span_id=joined("span_id"),
            parent_id=joined("parent_id"),
            start_ns=joined("start_ns"),
            end_ns=joined("end_ns"),
            level=joined("level").astype(np.int8),
            name_index=np.concatenate(name_parts) if parts else np.zeros(0, np.int32),
            names=tuple(names),
            attribute_index=np.concatenate(text_parts) if parts else np.zeros(0, np.int32),
            attribute_texts=tuple(texts),
            ints=ints,
        )

    @classmethod
    def empty(cls) -> SpanColumns:
        zeros = np.zeros(0, np.int64)
        return cls(
            zeros, zeros, zeros, zeros, np.zeros(0, np.int8), np.zeros(0, np.int32), (), np.zeros(0, np.int32), ()
        )

    # --- reading ----------------------------------------------------------------------------------------------

    def select(self, rows: NDArray[Any]) -> SpanColumns:
        """The spans at ``rows`` (a boolean mask or indices), tables kept as they are."""
        return SpanColumns(
            span_id=self.span_id[rows],
            parent_id=self.parent_id[rows],
            start_ns=self.start_ns[rows],
            end_ns=self.end_ns[rows],
            level=self.level[rows],
            name_index=self.name_index[rows],
            names=self.names,
            attribute_index=self.attribute_index[rows],
            attribute_texts=self.attribute_texts,
            ints={
                key: IntAttribute(c.values[rows], None if c.present is None else c.present[rows])
                for key, c in self.ints.items()
            },
        )

    def named(self, name: str) -> NDArray[np.bool_]:
        """Mask of the spans called ``name``."""
        if name not in self.names:
            return np.zeros(len(self), np.bool_)
        return np.asarray(self.name_index == self.names.index(name))

    def int_attribute(self, key: str) -> tuple[Int64Array, NDArray[np.bool_]] | None:
        """(values, present) of an integer attribute column, None when no span has it as a column."""
        column = self.ints.get(key)
        if column is None:
            return None
        return column.values, np.ones(len(self), np.bool_) if column.present is None else column.present

    def attribute_dicts(self) -> list[dict[str, AttributeValue]]:
        """The distinct attribute texts, parsed (index with ``attribute_index``)."""
        return [json.loads(text) for text in self.attribute_texts]

    def spans(self, run_id: str) -> Iterable[Span]:
        """The spans as ``Span`` objects (for a few of them: a timeline, a test; not a 1M-span export)."""
        tables = self.attribute_dicts()
        levels = [TraceLevel(int(level)) for level in TRACE_LEVELS]
        int_columns = [
            (key, c.values.tolist(), None if c.present is None else c.present.tolist()) for key, c in self.ints.items()
        ]
        for i, (span_id, parent_id, start_ns, end_ns, level, name, text) in enumerate(
            zip(
                self.span_id.tolist(),
                self.parent_id.tolist(),
                self.start_ns.tolist(),
                self.end_ns.tolist(),
                self.level.tolist(),
                self.name_index.tolist(),
                self.attribute_index.tolist(),
                strict=True,
            )
        ):
            attributes: dict[str, AttributeValue] = dict(tables[text])
            for key, values, present in int_columns:
                if present is None or present[i]:
                    attributes[key] = values[i]
            yield Span.model_construct(
                run_id=run_id,
                span_id=span_id,
                parent_id=parent_id,
                name=self.names[name],
                level=levels[level],
                start_ns=start_ns,
                end_ns=end_ns,
                attributes=attributes,
            )
