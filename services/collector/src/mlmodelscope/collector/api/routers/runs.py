"""``/api/v1/runs``: list and filter runs, one run, its result, its per-query latencies and its trace (Chrome JSON
or Perfetto's protobuf)."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse

from mlmodelscope.collector import perfetto_export
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
from mlmodelscope.collector.storage import reads, span_store
from mlmodelscope.collector.storage.finite_json import describe_replaced, finite_json
from mlmodelscope.collector.trace_export import chrome_trace
from mlmodelscope.core.tracing.spans import TraceLevel, TraceLevelName

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])

QUERY_CSV_COLUMNS = ("mode", "seq", "first_item", "item_count", "start_ns", "end_ns", "latency_ns")
NON_FINITE_HEADER = "X-MLModelScope-Non-Finite"
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No run with this id."}}


def _no_run(run_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no run '{run_id}'")


@router.get("", response_model=RunList)
def list_runs(runtime: RuntimeDep, query: Annotated[RunListQuery, Query()]) -> RunList:
    with runtime.database.read() as connection:
        total, rows = reads.list_runs(connection, query.filters(), limit=query.limit, offset=query.offset)
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
    responses={
        200: {
            "description": (
                "The RunResult document the agent sent, as stored (its schema_version says which version of "
                "RunResult it is). Numbers JSON cannot express (NaN, Infinity) are null, and the "
                f"{NON_FINITE_HEADER} header says which and why."
            ),
            "content": {"application/json": {"schema": {"type": "object", "title": "RunResult document"}}},
            "headers": {
                NON_FINITE_HEADER: {
                    "description": "Present when stored numbers were not finite: how many, and their JSON paths.",
                    "schema": {"type": "string"},
                }
            },
        },
        404: {"description": "No run with this id, or the run has no result (not finished, failed, or none sent)."},
    },
)
def get_result(runtime: RuntimeDep, run_id: RunIdPath) -> JSONResponse:
    with runtime.database.read() as connection:
        row = reads.get_result(connection, run_id)
    if row is None:
        raise _no_run(run_id)
    if row["result"] is None:
        raise HTTPException(status_code=404, detail=_why_no_result(run_id, row["status"]))
    document, replaced = finite_json(row["result"])
    headers = {NON_FINITE_HEADER: describe_replaced(replaced)} if replaced else None
    return JSONResponse(content=document, headers=headers)


def _why_no_result(run_id: str, status: str) -> str:
    if status == "failed":
        return f"run '{run_id}' failed without a result (see its error: GET /api/v1/runs/{run_id})"
    if status == "succeeded":
        return (
            f"run '{run_id}' succeeded but its agent sent no result document (run_finished carried none); "
            "its query records and spans are still available"
        )
    return f"run '{run_id}' has not finished (status {status}): its result arrives with run_finished"


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


@router.get(
    "/{run_id}/trace",
    response_model=dict[str, Any],
    responses={200: {"content": {"application/json": {}, perfetto_export.MEDIA_TYPE: {}}}, **_NOT_FOUND},
)
def get_trace(
    runtime: RuntimeDep,
    run_id: RunIdPath,
    level: Annotated[
        TraceLevelName | None, Query(description="Deepest trace level to include (model, framework, ...); default all.")
    ] = None,
    from_ns: Annotated[
        int | None, Query(ge=0, description="Only spans ending at or after this agent monotonic ns.")
    ] = None,
    to_ns: Annotated[int | None, Query(ge=0, description="Only spans starting at or before this ns.")] = None,
    trace_format: Annotated[
        Literal["chrome", "perfetto"],
        Query(alias="format", description="chrome: Chrome-trace JSON; perfetto: Perfetto's native protobuf trace."),
    ] = "chrome",
) -> StreamingResponse:
    """The run's spans as a Chrome trace (open it in Perfetto or chrome://tracing) or as Perfetto's own protobuf
    trace (smaller, nanoseconds; ``format=perfetto``), streamed as it is written; ``level`` and
    ``from_ns``/``to_ns`` cut a large run down to the part to look at."""
    deepest = None if level is None else TraceLevel.parse(level)  # a name the query's schema admits
    levels = None if deepest is None else [lvl for lvl in TraceLevel if TraceLevel.NO < lvl <= deepest]
    with runtime.database.read() as connection:
        row = reads.get_run(connection, run_id)
        if row is None:
            raise _no_run(run_id)
        columns = span_store.run_columns(connection, run_id, levels=levels, start_ns=from_ns, end_ns=to_ns)
    process_name = " ".join(part for part in (row["model"], row["framework"]) if part) or "run"
    epoch_offset_ns = row["epoch_offset_ns"] or 0
    if trace_format == "perfetto":
        export = perfetto_export.perfetto_trace(
            columns, run_id, epoch_offset_ns=epoch_offset_ns, process_name=process_name
        )
        return StreamingResponse(export.chunks, media_type=perfetto_export.MEDIA_TYPE)
    export = chrome_trace(columns, run_id, epoch_offset_ns=epoch_offset_ns, process_name=process_name)
    headers = {NON_FINITE_HEADER: describe_replaced(export.replaced)} if export.replaced else None
    return StreamingResponse(export.chunks, media_type="application/json", headers=headers)
