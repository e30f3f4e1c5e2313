"""``/api/v1/runs``: list and filter runs, one run, its result, its per-query latencies and its Chrome trace."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import JSONResponse

from mlmodelscope.collector.api.dependencies import RunIdPath, RuntimeDep
from mlmodelscope.collector.api.models import (
    QueryList,
    QueryMode,
    QueryView,
    RunDetail,
    RunList,
    RunListQuery,
    RunSummary,
)
from mlmodelscope.collector.storage import reads
from mlmodelscope.core.evaluation.results import EvaluationResult
from mlmodelscope.core.tracing.chrome import to_chrome_trace

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])

QUERY_CSV_COLUMNS = ("mode", "seq", "first_item", "item_count", "start_ns", "end_ns", "latency_ns")
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No run with this id."}}


def _no_run(run_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no run '{run_id}'")


@router.get("", response_model=RunList)
def list_runs(runtime: RuntimeDep, query: Annotated[RunListQuery, Query()]) -> RunList:
    filters = reads.RunFilters(
        model=query.model,
        framework=query.framework,
        scenario=query.scenario,
        status=query.status,
        evaluation_id=query.evaluation_id,
    )
    with runtime.database.read() as connection:
        total, rows = reads.list_runs(connection, filters, limit=query.limit, offset=query.offset)
    return RunList(
        items=[RunSummary.model_validate(dict(row)) for row in rows],
        total=total,
        limit=query.limit,
        offset=query.offset,
    )


@router.get("/{run_id}", response_model=RunDetail, responses=_NOT_FOUND)
def get_run(runtime: RuntimeDep, run_id: RunIdPath) -> RunDetail:
    with runtime.database.read() as connection:
        row = reads.get_run(connection, run_id)
    if row is None:
        raise _no_run(run_id)
    finished = row["finished_at"] is not None and row["expected_span_count"] is not None
    row["complete"] = (
        row["received_span_count"] >= row["expected_span_count"]
        and row["received_query_count"] >= row["expected_query_count"]
        if finished
        else None
    )
    return RunDetail.model_validate(row)


@router.get(
    "/{run_id}/result",
    response_model=None,
    responses={200: {"model": EvaluationResult, "description": "The EvaluationResult the agent sent."}, **_NOT_FOUND},
)
def get_result(runtime: RuntimeDep, run_id: RunIdPath) -> JSONResponse:
    with runtime.database.read() as connection:
        row = reads.get_result(connection, run_id)
    if row is None:
        raise _no_run(run_id)
    if row["result"] is None:
        status = row["status"]
        reason = "failed without a result" if status == "failed" else f"has not finished (status {status})"
        raise HTTPException(status_code=404, detail=f"run '{run_id}' {reason}")
    return JSONResponse(content=row["result"])


@router.get(
    "/{run_id}/queries",
    response_model=QueryList,
    responses={200: {"content": {"text/csv": {}}}, **_NOT_FOUND},
)
def get_queries(
    runtime: RuntimeDep,
    run_id: RunIdPath,
    output_format: Annotated[Literal["json", "csv"], Query(alias="format", description="json or csv.")] = "json",
    mode: Annotated[QueryMode | None, Query(description="Only this mode's query records.")] = None,
) -> Response | QueryList:
    with runtime.database.read() as connection:
        if not reads.run_exists(connection, run_id):
            raise _no_run(run_id)
        rows = reads.list_queries(connection, run_id, mode)
    records = [{**row, "latency_ns": row["end_ns"] - row["start_ns"]} for row in rows]
    if output_format == "json":
        return QueryList(run_id=run_id, queries=[QueryView.model_validate(record) for record in records])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=QUERY_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return Response(
        content=buffer.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{run_id}-queries.csv"'},
    )


@router.get("/{run_id}/trace", response_model=dict[str, Any], responses=_NOT_FOUND)
def get_trace(runtime: RuntimeDep, run_id: RunIdPath) -> JSONResponse:
    """The run's spans as a Chrome trace (open it in Perfetto or chrome://tracing)."""
    with runtime.database.read() as connection:
        row = reads.get_run(connection, run_id)
        if row is None:
            raise _no_run(run_id)
        spans = reads.list_spans(connection, run_id)
    process_name = " ".join(part for part in (row["model"], row["framework"]) if part) or "run"
    document = to_chrome_trace(spans, epoch_offset_ns=row["epoch_offset_ns"] or 0, process_name=process_name)
    return JSONResponse(content=document)
