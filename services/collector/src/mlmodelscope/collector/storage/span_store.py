"""Columnar span storage: a ``span_columns`` message becomes one ``span_batches`` row; reads decode with numpy.

Why: a row per span made ingest an SQL insert per span and a 1M-span run page a million-row query turned into a
million ``Span`` objects. A batch row holds the message's compressed columns as they came (validated once), plus
the figures listings and metrics need without decoding it. Reads of a run (``run_columns``, ``run_queries``)
decode its batch rows into one ``SpanColumns`` (a few hundred ms per million spans) and select with numpy; rows
a read cannot need (another time window, levels it does not ask for) are skipped on their stored range/levels.

The query records of a columnar run are not stored twice: they are its MODEL ``predict`` spans whose parent is
one of the batches' query parents (the phase spans ``accuracy_run`` / ``performance_run``), with their ``seq``,
``first_item`` and ``item_count`` attributes. Runs stored row-wise (older agents, spool files) keep their
``spans`` / ``queries`` rows; every read combines both, so a run may even hold some of each.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Connection, func, select

from mlmodelscope.collector.errors import RejectedMessageError
from mlmodelscope.collector.metrics import LATENCY_BUCKETS_NS
from mlmodelscope.collector.storage import schema
from mlmodelscope.core.messages import SpanColumnBatch
from mlmodelscope.core.span_blob import decode_columns
from mlmodelscope.core.span_columns import SpanColumns
from mlmodelscope.core.tracing.spans import Span, TraceLevel

MODEL_SPAN_NAME = "predict"
QUERY_MODES = ("accuracy", "performance")
_BUCKETS = np.array(LATENCY_BUCKETS_NS, dtype=np.int64)
_batches = schema.span_batches


@dataclass(frozen=True)
class QueryColumns:
    """Query records as columns; ``mode`` indexes ``QUERY_MODES``."""

    mode: NDArray[np.int8]
    seq: NDArray[np.int64]
    first_item: NDArray[np.int64]
    item_count: NDArray[np.int64]
    start_ns: NDArray[np.int64]
    end_ns: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.seq)

    def ordered(self) -> QueryColumns:
        """Sorted by (mode, seq), as the API lists them."""
        order = np.lexsort((self.seq, self.mode))
        return QueryColumns(*(getattr(self, name)[order] for name in _QUERY_FIELDS))

    def rows(self) -> list[dict[str, Any]]:
        """Plain dicts (mode, seq, first_item, item_count, start_ns, end_ns) for the API."""
        modes = [QUERY_MODES[m] for m in self.mode.tolist()]
        return [
            {"mode": m, "seq": s, "first_item": f, "item_count": c, "start_ns": a, "end_ns": b}
            for m, s, f, c, a, b in zip(
                modes,
                self.seq.tolist(),
                self.first_item.tolist(),
                self.item_count.tolist(),
                self.start_ns.tolist(),
                self.end_ns.tolist(),
                strict=True,
            )
        ]


_QUERY_FIELDS = ("mode", "seq", "first_item", "item_count", "start_ns", "end_ns")


def concat_queries(parts: Iterable[QueryColumns]) -> QueryColumns:
    parts = list(parts)
    if not parts:
        return QueryColumns(np.zeros(0, np.int8), *(np.zeros(0, np.int64) for _ in range(5)))
    return QueryColumns(*(np.concatenate([getattr(p, name) for p in parts]) for name in _QUERY_FIELDS))


def query_columns(columns: SpanColumns, parents: Mapping[int, str]) -> QueryColumns:
    """The query records among ``columns``: MODEL ``predict`` spans under a query parent, with their integers."""
    if not parents or not len(columns):
        return concat_queries([])
    parent_ids = np.array(list(parents), dtype=np.int64)
    mask = (columns.level == int(TraceLevel.MODEL)) & columns.named(MODEL_SPAN_NAME)
    mask &= np.isin(columns.parent_id, parent_ids)
    attributes = [columns.int_attribute(key) for key in ("seq", "first_item", "item_count")]
    if any(a is None for a in attributes):
        return concat_queries([])
    for attribute in attributes:
        assert attribute is not None
        mask &= attribute[1]
    parent_modes = np.array([QUERY_MODES.index(parents[p]) for p in parent_ids.tolist()], dtype=np.int8)
    order = np.argsort(parent_ids)
    where = np.searchsorted(parent_ids[order], columns.parent_id[mask])
    seq, first_item, item_count = (a[0][mask] for a in attributes if a is not None)
    return QueryColumns(
        parent_modes[order][where], seq, first_item, item_count, columns.start_ns[mask], columns.end_ns[mask]
    )


_last = threading.local()  # the payload decoded last in this thread: the check, then the ingest, decode it once


def decode_payload(payload: SpanColumnBatch) -> tuple[bytes, SpanColumns]:
    """(the blob, its columns), or RejectedMessageError (invalid) when they are not the valid spans it says."""
    last = getattr(_last, "value", None)
    if last is not None and last[0] is payload:
        return last[1], last[2]
    try:
        blob = base64.b64decode(payload.columns, validate=True)
        columns = decode_columns(blob)
    except (ValueError, binascii.Error) as e:
        raise RejectedMessageError(f"span_columns payload: {e}", reason="invalid") from e
    if len(columns) != payload.span_count:
        raise RejectedMessageError(
            f"span_columns payload says {payload.span_count} spans but its columns hold {len(columns)}",
            reason="invalid",
        )
    ids = columns.span_id
    increasing = len(ids) < 2 or bool((ids[1:] > ids[:-1]).all())  # the agent's order: no sort needed
    if not increasing and len(np.unique(ids)) != len(ids):
        raise RejectedMessageError("span_columns payload holds the same span id twice", reason="invalid")
    _last.value = (payload, blob, columns)  # holds the payload, so its identity is not reused meanwhile
    return blob, columns


@dataclass(frozen=True)
class BatchFigures:
    """What ingesting one batch adds: the row's values and the metric changes (items of every query record, the
    latencies of the performance-mode ones)."""

    values: dict[str, Any]
    query_items: int
    performance_latencies_ns: NDArray[np.int64]


def batch_row(run_id: str, sequence: int, payload: SpanColumnBatch) -> BatchFigures:
    """The ``span_batches`` row of a message (decoded and checked here)."""
    blob, columns = decode_payload(payload)
    parents = {int(parent): mode for parent, mode in payload.query_parents}
    queries = query_columns(columns, parents)
    performance = queries.mode == QUERY_MODES.index("performance")
    latencies = (queries.end_ns - queries.start_ns)[performance]
    levels = np.flatnonzero(np.bincount(columns.level.astype(np.int64), minlength=8)).tolist()
    values = {
        "run_id": run_id,
        "sequence": sequence,
        "span_count": len(columns),
        "query_count": len(queries),
        "query_items": int(queries.item_count.sum()),
        "latency_histogram": latency_histogram(latencies),
        "min_start_ns": int(columns.start_ns.min()),
        "max_end_ns": int(columns.end_ns.max()),
        "level_mask": sum(1 << int(level) for level in levels),
        "query_parents": [[parent, mode] for parent, mode in parents.items()],
        "content_sha256": hashlib.sha256(blob).hexdigest(),
        "columns": blob,
    }
    return BatchFigures(values, int(queries.item_count.sum()), latencies)


def latency_histogram(latencies_ns: NDArray[np.int64]) -> list[int] | None:
    """[count per bucket (``le`` inclusive, the last +Inf)..., sum_ns]; None without latencies."""
    if not len(latencies_ns):
        return None
    counts = np.bincount(np.searchsorted(_BUCKETS, latencies_ns, side="left"), minlength=len(_BUCKETS) + 1)
    total = int(latencies_ns.sum()) if int(latencies_ns.max()) < 2**40 else sum(latencies_ns.tolist())  # no overflow
    return [*map(int, counts), int(total)]


# --- reads ----------------------------------------------------------------------------------------------------


def batch_counts(connection: Connection, run_id: str) -> tuple[int, int]:
    """(spans, query records) stored columnar for the run."""
    spans, queries = connection.execute(
        select(
            func.coalesce(func.sum(_batches.c.span_count), 0), func.coalesce(func.sum(_batches.c.query_count), 0)
        ).where(_batches.c.run_id == run_id)
    ).one()
    return int(spans), int(queries)


def query_parents(connection: Connection, run_id: str) -> dict[int, str]:
    parents: dict[int, str] = {}
    for (pairs,) in connection.execute(select(_batches.c.query_parents).where(_batches.c.run_id == run_id)):
        parents.update((int(parent), str(mode)) for parent, mode in pairs)
    return parents


# Decoded columns of whole runs, most recent last, within CACHE_SPANS spans in all (~70 bytes a span). A run's
# batch rows are only ever inserted, never changed or removed, so (database, run, row count, highest sequence,
# lowest and highest content hash) names one set of rows: a page, its timeline and a compare or export after it
# decode a run once, and a batch that arrives later makes a new key (replacing the run's earlier one: a page
# polled while a run ingests keeps one copy of it, not one per state).
CACHE_SPANS = 2_500_000
_cache: OrderedDict[tuple[str, str, int, int, str, str], SpanColumns] = OrderedDict()
_cache_lock = threading.Lock()


def _batch_columns(connection: Connection, run_id: str) -> SpanColumns | None:
    """Every batch row of the run decoded and joined (cached, see above); None when it has none."""
    rows, last, low, high = connection.execute(
        select(
            func.count(),
            func.coalesce(func.max(_batches.c.sequence), -1),
            func.min(_batches.c.content_sha256),
            func.max(_batches.c.content_sha256),
        ).where(_batches.c.run_id == run_id)
    ).one()
    if not rows:
        return None
    key = (str(connection.engine.url), run_id, int(rows), int(last), str(low), str(high))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
    blobs = connection.execute(
        select(_batches.c.columns).where(_batches.c.run_id == run_id).order_by(_batches.c.sequence)
    ).scalars()
    columns = SpanColumns.concat([decode_columns(bytes(blob), check=False) for blob in blobs])  # checked at ingest
    if len(columns) <= CACHE_SPANS:
        with _cache_lock:
            for stale in [k for k in _cache if k[:2] == key[:2]]:  # an earlier state of a run still ingesting
                del _cache[stale]
            _cache[key] = columns
            while sum(len(c) for c in _cache.values()) > CACHE_SPANS:
                _cache.popitem(last=False)
    return columns


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def run_columns(
    connection: Connection,
    run_id: str,
    *,
    levels: Iterable[TraceLevel] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> SpanColumns:
    """The run's spans as one set of columns (batch rows and row-wise spans), optionally only those of ``levels``
    that overlap [start_ns, end_ns]; batch order (roughly time order), not sorted. Without a time window the run's
    batches are read whole, once (``_batch_columns``); with one, only the rows whose range overlaps it."""
    wanted = None if levels is None else sorted({int(level) for level in levels})
    parts: list[SpanColumns] = []
    if start_ns is None and end_ns is None:
        whole = _batch_columns(connection, run_id)
        if whole is not None:
            parts.append(whole)
    else:
        statement = select(_batches.c.columns).where(_batches.c.run_id == run_id)
        if wanted is not None:
            statement = statement.where(_batches.c.level_mask.op("&")(sum(1 << level for level in wanted)) != 0)
        if start_ns is not None:
            statement = statement.where(_batches.c.max_end_ns >= start_ns)
        if end_ns is not None:
            statement = statement.where(_batches.c.min_start_ns <= end_ns)
        blobs = connection.execute(statement.order_by(_batches.c.sequence)).scalars()
        parts += [decode_columns(bytes(blob), check=False) for blob in blobs]
    legacy = _legacy_spans(connection, run_id, wanted, start_ns, end_ns)
    if legacy:
        parts.append(SpanColumns.from_spans(legacy))
    if not parts:
        return SpanColumns.empty()
    columns = SpanColumns.concat(parts)
    if wanted is None and start_ns is None and end_ns is None:
        return columns
    mask = np.ones(len(columns), np.bool_)
    if wanted is not None:
        mask &= np.isin(columns.level, np.array(wanted, dtype=np.int8))
    if start_ns is not None:
        mask &= columns.end_ns >= start_ns
    if end_ns is not None:
        mask &= columns.start_ns <= end_ns
    return columns if mask.all() else columns.select(mask)


def _legacy_spans(
    connection: Connection, run_id: str, levels: list[int] | None, start_ns: int | None, end_ns: int | None
) -> list[Span]:
    spans = schema.spans
    statement = select(spans).where(spans.c.run_id == run_id)
    if levels is not None:
        statement = statement.where(spans.c.level.in_(levels))
    if start_ns is not None:
        statement = statement.where(spans.c.end_ns >= start_ns)
    if end_ns is not None:
        statement = statement.where(spans.c.start_ns <= end_ns)
    return [
        Span(
            run_id=row.run_id,
            span_id=row.span_id,
            parent_id=row.parent_id,
            name=row.name,
            level=TraceLevel(row.level),
            start_ns=row.start_ns,
            end_ns=row.end_ns,
            attributes=row.attributes,
        )
        for row in connection.execute(statement)
    ]


def run_queries(connection: Connection, run_id: str, mode: str | None = None) -> QueryColumns:
    """The run's query records (derived from its columnar MODEL spans, plus row-wise ones), sorted by (mode, seq)."""
    parts = []
    parents = query_parents(connection, run_id)
    if mode is not None:
        parents = {parent: m for parent, m in parents.items() if m == mode}
    if parents:
        parts.append(query_columns(run_columns(connection, run_id), parents))  # masks, no copy of the rest
    queries = schema.queries
    statement = select(
        queries.c.mode, queries.c.seq, queries.c.first_item, queries.c.item_count, queries.c.start_ns, queries.c.end_ns
    ).where(queries.c.run_id == run_id)
    if mode is not None:
        statement = statement.where(queries.c.mode == mode)
    rows = connection.execute(statement).all()
    if rows:
        mode_codes = np.array([QUERY_MODES.index(row[0]) for row in rows], dtype=np.int8)
        numbers = np.array([row[1:] for row in rows], dtype=np.int64).reshape(len(rows), 5)
        parts.append(QueryColumns(mode_codes, *(np.ascontiguousarray(numbers[:, i]) for i in range(5))))
    return concat_queries(parts).ordered()
