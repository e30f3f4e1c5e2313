"""The rows each kind of message adds to a run, and the metric changes that those rows (and only those) make.

Called inside ``Ingestor.ingest``'s transaction once its message id was new. Every insert is ``ON CONFLICT DO
NOTHING`` on its natural key, so a batch re-sent under a new message id adds nothing; data for a run whose
``run_started`` has not arrived creates a placeholder run and is counted in the metrics when the labels arrive.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pydantic_core
from sqlalchemy import Connection, case, select, update

from mlmodelscope.collector.errors import RejectedMessageError
from mlmodelscope.collector.metrics import LatestValue, MetricEffects, RunLabels
from mlmodelscope.collector.storage import schema, span_store
from mlmodelscope.collector.storage.aggregates import LABEL_COLUMNS, labels_of
from mlmodelscope.collector.storage.dialects import conflict_insert
from mlmodelscope.collector.storage.timeutil import now, utc
from mlmodelscope.core.messages import (
    Envelope,
    Progress,
    QueryBatch,
    RunFinished,
    RunStarted,
    SpanBatch,
    SpanColumnBatch,
)

log = logging.getLogger(__name__)


def write_payload(connection: Connection, envelope: Envelope) -> MetricEffects:
    """Insert the rows of ``envelope``'s payload; returns the metric changes of what was inserted."""
    payload = envelope.payload
    effects = MetricEffects(kind=payload.kind)
    run_id = envelope.run_id
    match payload:
        case RunStarted():
            _run_started(connection, run_id, payload, effects)
        case SpanBatch():
            _ensure_run(connection, run_id)
            _spans(connection, run_id, payload, effects)
        case SpanColumnBatch():
            effects.labels = _ensure_run(connection, run_id)
            _span_columns(connection, run_id, envelope.sequence, payload, effects)
        case QueryBatch():
            effects.labels = _ensure_run(connection, run_id)
            _queries(connection, run_id, payload, effects)
        case Progress():
            _ensure_run(connection, run_id)
            _progress(connection, run_id, envelope.sequence, payload)
        case RunFinished():
            effects.labels = _ensure_run(connection, run_id)
            _run_finished(connection, run_id, payload, effects)
    return effects


def _run_labels(connection: Connection, run_id: str) -> tuple[bool, RunLabels | None]:
    """(the run exists, its labels if its run_started arrived)."""
    row = connection.execute(select(*LABEL_COLUMNS).where(schema.runs.c.run_id == run_id)).first()
    if row is None:
        return False, None
    return True, (labels_of(row) if row.model is not None else None)


def _ensure_run(connection: Connection, run_id: str) -> RunLabels | None:
    """The run's labels, creating a placeholder run (status pending) when this is the first we hear of it."""
    exists, labels = _run_labels(connection, run_id)
    if exists:
        return labels
    runs = schema.runs
    created = connection.execute(
        conflict_insert(connection, runs)
        .values(run_id=run_id, status="pending", error="", created_at=now())
        .on_conflict_do_nothing(index_elements=[runs.c.run_id])
        .returning(runs.c.run_id)
    ).first()
    return None if created is not None else _run_labels(connection, run_id)[1]


def _run_started(connection: Connection, run_id: str, payload: RunStarted, effects: MetricEffects) -> None:
    runs = schema.runs
    values: dict[str, Any] = {
        "evaluation_id": payload.evaluation_id,
        "model": payload.model,
        "framework": payload.framework,
        "dataset": payload.dataset,
        "scenario": payload.scenario,
        "mode": payload.mode,
        "batch_size": payload.batch_size,
        "arch": payload.arch,
        "accelerator": payload.accelerator,
        "trace_level": payload.trace_level,
        "epoch_offset_ns": payload.epoch_offset_ns,
        "started_at": utc(payload.started_at),
    }
    labels = labels_of([values[column.name] for column in LABEL_COLUMNS])
    _ensure_run(connection, run_id)
    updated = connection.execute(
        update(runs)
        .where(runs.c.run_id == run_id, runs.c.model.is_(None))
        .values(**values, status=case((runs.c.status == "pending", "running"), else_=runs.c.status))
        .returning(
            runs.c.finished_at,
            runs.c.accuracy_top1,
            runs.c.throughput_samples_per_s,
            runs.c.accuracy_metric,
            runs.c.accuracy_value,
        )
    ).first()
    if updated is None:
        log.info("run %s: run_started again under a new message id; the first one's labels stay", run_id)
        return
    # Data that arrived before the labels is counted now, under them (a counter series never goes down).
    effects.labels = labels
    queries = schema.queries
    for mode, item_count, start_ns, end_ns in connection.execute(
        select(queries.c.mode, queries.c.item_count, queries.c.start_ns, queries.c.end_ns).where(
            queries.c.run_id == run_id
        )
    ):
        effects.items += int(item_count)
        if mode == "performance":
            effects.latencies_ns.append(int(end_ns) - int(start_ns))
    batches = schema.span_batches
    for query_items, histogram in connection.execute(
        select(batches.c.query_items, batches.c.latency_histogram).where(batches.c.run_id == run_id)
    ):
        effects.items += int(query_items)
        effects.latency_histograms.append(histogram)
    finished_at, top1, throughput, metric, value = updated
    if finished_at is not None:
        if top1 is not None:
            effects.accuracy_top1 = LatestValue(utc(finished_at), float(top1))
        if metric is not None and value is not None:
            effects.accuracy = LatestValue(utc(finished_at), float(value), str(metric))
        if throughput is not None:
            effects.throughput = LatestValue(utc(finished_at), float(throughput))


def _spans(connection: Connection, run_id: str, payload: SpanBatch, effects: MetricEffects) -> None:
    """The hot path of ingestion (thousands of rows per message): plain tuples through the driver's executemany,
    attributes serialised by pydantic-core, and the inserted count from the cursor instead of RETURNING rows.
    Measured: 12.6 -> 4.8 us per span against SQLAlchemy's ``insert().returning()`` with dicts."""
    to_json = pydantic_core.to_json
    rows = [
        (
            run_id,
            span.span_id,
            span.parent_id,
            span.name,
            int(span.level),
            span.start_ns,
            span.end_ns,
            to_json(span.attributes).decode(),
        )
        for span in payload.spans
    ]
    result = connection.exec_driver_sql(_SPAN_INSERT[connection.dialect.name], rows)
    effects.spans_inserted = result.rowcount


_SPAN_COLUMNS = "run_id, span_id, parent_id, name, level, start_ns, end_ns, attributes"
_SPAN_INSERT = {
    "sqlite": f"INSERT INTO spans ({_SPAN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, span_id) DO NOTHING",
    "postgresql": f"INSERT INTO spans ({_SPAN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, CAST(%s AS JSON)) "
    "ON CONFLICT (run_id, span_id) DO NOTHING",
}


def _span_columns(
    connection: Connection, run_id: str, sequence: int, payload: SpanColumnBatch, effects: MetricEffects
) -> None:
    """One row for the whole batch (its compressed columns as they came); the same spans stored before under
    another sequence (same content hash) add nothing."""
    figures = span_store.batch_row(run_id, sequence, payload)
    batches = schema.span_batches
    inserted = connection.execute(
        conflict_insert(connection, batches)
        .values(**figures.values)
        .on_conflict_do_nothing()
        .returning(batches.c.sequence)
    ).first()
    if inserted is None:
        return
    effects.spans_inserted = int(figures.values["span_count"])
    if effects.labels is None:
        return  # counted when the run's labels arrive
    effects.items += figures.query_items
    effects.latency_histograms.append(figures.values["latency_histogram"])


def _queries(connection: Connection, run_id: str, payload: QueryBatch, effects: MetricEffects) -> None:
    queries = schema.queries
    rows = [{"run_id": run_id, **query.model_dump()} for query in payload.queries]
    statement = (
        conflict_insert(connection, queries)
        .on_conflict_do_nothing(index_elements=[queries.c.run_id, queries.c.mode, queries.c.seq])
        .returning(queries.c.mode, queries.c.seq)
    )
    inserted = {(str(mode), int(seq)) for mode, seq in connection.execute(statement, rows)}
    if effects.labels is None:
        return  # counted when the run's labels arrive
    for query in payload.queries:
        if (query.mode, query.seq) in inserted:
            effects.items += query.item_count
            if query.mode == "performance":
                effects.latencies_ns.append(query.end_ns - query.start_ns)


def _progress(connection: Connection, run_id: str, sequence: int, payload: Progress) -> None:
    progress = schema.progress
    statement = conflict_insert(connection, progress).values(
        run_id=run_id,
        sequence=sequence,
        phase=payload.phase,
        completed_queries=payload.completed_queries,
        elapsed_s=payload.elapsed_s,
        updated_at=now(),
    )
    excluded = statement.excluded
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[progress.c.run_id],
            set_={
                "sequence": excluded.sequence,
                "phase": excluded.phase,
                "completed_queries": excluded.completed_queries,
                "elapsed_s": excluded.elapsed_s,
                "updated_at": excluded.updated_at,
            },
            where=progress.c.sequence < excluded.sequence,  # progress may arrive out of order: keep the latest
        )
    )


def _run_finished(connection: Connection, run_id: str, payload: RunFinished, effects: MetricEffects) -> None:
    """The run's outcome, once: a run already finished is never rewritten (the transaction is rolled back and the
    message dead-lettered). ``finished_at`` is the agent's finish time; older agents do not send it (ingest time).
    The result is stored as the run's result.json holds it: a NaN or an infinity as the string pydantic writes
    ("NaN", "Infinity"), which every JSON column accepts (PostgreSQL's refuses the bare literals)."""
    runs = schema.runs
    result = payload.result
    accuracy = result.accuracy if result is not None else None
    top1 = accuracy.top1 if accuracy is not None else None
    primary = accuracy.primary if accuracy is not None else None
    performance = result.performance if result is not None else None
    throughput = performance.throughput.samples_per_s if performance is not None else None
    finished_at = connection.execute(
        update(runs)
        .where(runs.c.run_id == run_id, runs.c.finished_at.is_(None))
        .values(
            status=payload.status,
            error=payload.error,
            result=None if result is None else json.loads(result.model_dump_json()),  # as the run's result.json
            accuracy_top1=top1,
            accuracy_metric=None if primary is None else primary[0],
            accuracy_value=None if primary is None else primary[1],
            throughput_samples_per_s=throughput,
            expected_span_count=payload.span_count,
            expected_query_count=payload.query_count,
            finished_at=now() if payload.finished_at is None else utc(payload.finished_at),
        )
        .returning(runs.c.finished_at)
    ).scalar_one_or_none()
    if finished_at is None:
        raise RejectedMessageError(
            f"run '{run_id}' has already finished; a later run_finished cannot rewrite its outcome",
            reason="run_already_finished",
        )
    if effects.labels is not None:
        at = utc(finished_at)
        effects.accuracy_top1 = None if top1 is None else LatestValue(at, top1)
        effects.accuracy = None if primary is None else LatestValue(at, primary[1], primary[0])
        effects.throughput = None if throughput is None else LatestValue(at, throughput)
