"""The read side: the queries behind the REST API, returning plain row mappings for the API to shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, RowMapping, func, select

from mlmodelscope.collector.storage import schema, span_store
from mlmodelscope.core.tracing.spans import Span

_runs = schema.runs


@dataclass(frozen=True)
class RunFilters:
    model: str | None = None
    framework: str | None = None
    scenario: str | None = None
    status: str | None = None
    evaluation_id: str | None = None


def list_runs(connection: Connection, filters: RunFilters, *, limit: int, offset: int) -> tuple[int, list[RowMapping]]:
    """(how many runs match, the page of them), newest first."""
    conditions = [
        column == value
        for column, value in (
            (_runs.c.model, filters.model),
            (_runs.c.framework, filters.framework),
            (_runs.c.scenario, filters.scenario),
            (_runs.c.status, filters.status),
            (_runs.c.evaluation_id, filters.evaluation_id),
        )
        if value is not None
    ]
    total = connection.execute(select(func.count()).select_from(_runs).where(*conditions)).scalar_one()
    rows = connection.execute(
        select(_runs.c.run_id, *_summary_columns())
        .where(*conditions)
        .order_by(_runs.c.created_at.desc(), _runs.c.run_id)
        .limit(limit)
        .offset(offset)
    )
    return int(total), list(rows.mappings())


def _summary_columns() -> list[Any]:
    excluded = {"run_id", "result"}
    return [column for column in _runs.c if column.name not in excluded]


def get_run(connection: Connection, run_id: str) -> dict[str, Any] | None:
    """One run (without its result document) plus received span/query counts and its latest progress."""
    row = connection.execute(select(_runs.c.run_id, *_summary_columns()).where(_runs.c.run_id == run_id)).first()
    if row is None:
        return None
    span_count = connection.execute(
        select(func.count()).select_from(schema.spans).where(schema.spans.c.run_id == run_id)
    ).scalar_one()
    query_count = connection.execute(
        select(func.count()).select_from(schema.queries).where(schema.queries.c.run_id == run_id)
    ).scalar_one()
    progress = connection.execute(select(schema.progress).where(schema.progress.c.run_id == run_id)).first()
    batch_spans, batch_queries = span_store.batch_counts(connection, run_id)
    detail: dict[str, Any] = dict(row._mapping)
    detail["received_span_count"] = int(span_count) + batch_spans
    detail["received_query_count"] = int(query_count) + batch_queries
    detail["progress"] = None if progress is None else dict(progress._mapping)
    return detail


def get_result(connection: Connection, run_id: str) -> RowMapping | None:
    """(status, result) of the run, or None when it does not exist."""
    return connection.execute(select(_runs.c.status, _runs.c.result).where(_runs.c.run_id == run_id)).mappings().first()


def run_exists(connection: Connection, run_id: str) -> bool:
    return connection.execute(select(_runs.c.run_id).where(_runs.c.run_id == run_id)).first() is not None


def list_queries(connection: Connection, run_id: str, mode: str | None) -> list[dict[str, Any]]:
    """The run's query records (columnar and row-wise), ordered by (mode, seq)."""
    return span_store.run_queries(connection, run_id, mode).rows()


def list_spans(connection: Connection, run_id: str) -> list[Span]:
    """Every span of the run as ``Span`` objects, by (start_ns, span_id): for small runs and tests; the trace
    export streams from columns instead (``trace_export``)."""
    columns = span_store.run_columns(connection, run_id)
    order = np.lexsort((columns.span_id, columns.start_ns))
    return list(columns.select(order).spans(run_id))


def list_evaluations(connection: Connection, *, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
    """Runs grouped by evaluation id (placeholder runs, whose evaluation is not known yet, are left out)."""
    known = _runs.c.evaluation_id.is_not(None)
    total = connection.execute(select(func.count(func.distinct(_runs.c.evaluation_id))).where(known)).scalar_one()
    groups = connection.execute(
        select(
            _runs.c.evaluation_id,
            func.count().label("run_count"),
            func.min(_runs.c.started_at).label("first_started_at"),
            func.max(_runs.c.finished_at).label("last_finished_at"),
        )
        .where(known)
        .group_by(_runs.c.evaluation_id)
        .order_by(func.min(_runs.c.created_at).desc(), _runs.c.evaluation_id)
        .limit(limit)
        .offset(offset)
    ).mappings()
    evaluations = {row["evaluation_id"]: {**row, "statuses": {}, "models": [], "run_ids": []} for row in groups}
    if evaluations:
        members = connection.execute(
            select(_runs.c.evaluation_id, _runs.c.run_id, _runs.c.status, _runs.c.model)
            .where(_runs.c.evaluation_id.in_(list(evaluations)))
            .order_by(_runs.c.run_id)
        )
        for evaluation_id, run_id, status, model in members:
            group = evaluations[evaluation_id]
            group["statuses"][status] = group["statuses"].get(status, 0) + 1
            group["run_ids"].append(run_id)
            if model not in group["models"]:
                group["models"].append(model)
    return int(total), list(evaluations.values())
