"""Analyses of stored runs: per-run statistics with bootstrap intervals, timelines, comparisons, batch sweeps."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from mlmodelscope.collector import analysis
from mlmodelscope.collector.analysis import MAX_COMPARED_RUNS
from mlmodelscope.collector.analysis_models import CompareView, SweepList
from mlmodelscope.collector.api.dependencies import RunIdPath, RuntimeDep
from mlmodelscope.collector.api.models import FilterText
from mlmodelscope.core.analysis.compare import BootstrapSettings
from mlmodelscope.core.analysis.run_analysis import RunAnalysis
from mlmodelscope.core.analysis.timeline import Timeline

router = APIRouter(prefix="/api/v1", tags=["analysis"])

RunIdList = Annotated[
    list[Annotated[str, Query(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]],
    Query(
        alias="run",
        min_length=2,
        max_length=MAX_COMPARED_RUNS,
        description="Run ids; the first is the baseline the others are compared with.",
    ),
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No run with this id."},
    422: {"description": "The run cannot be analysed."},
}


@router.get("/runs/{run_id}/analysis", response_model=RunAnalysis, responses=_ERRORS)
def get_analysis(
    runtime: RuntimeDep,
    run_id: RunIdPath,
    top: Annotated[int, Query(ge=1, le=100, description="Layers in the top list.")] = 10,
) -> RunAnalysis:
    """Percentiles with 95% bootstrap intervals, throughput, latency histogram and CDF, per-layer time."""
    with runtime.database.read() as connection:
        return analysis.run_analysis(connection, run_id, top=top, settings=BootstrapSettings())


@router.get("/runs/{run_id}/timeline", response_model=Timeline, responses=_ERRORS)
def get_timeline(
    runtime: RuntimeDep,
    run_id: RunIdPath,
    queries: Annotated[int, Query(ge=1, le=200, description="Queries in the zoomed window.")] = 8,
) -> Timeline:
    """The application phases and a window of the first queries with their operators."""
    with runtime.database.read() as connection:
        return analysis.run_timeline(connection, run_id, queries=queries)


@router.get("/compare", response_model=CompareView, responses=_ERRORS)
def get_comparison(runtime: RuntimeDep, run_ids: RunIdList) -> CompareView:
    """Each run against the first: bootstrap intervals of p50/p90/p99 and throughput, and a verdict at 95%."""
    with runtime.database.read() as connection:
        return analysis.compare_runs(connection, run_ids, BootstrapSettings())


@router.get("/sweeps", response_model=SweepList)
def get_sweeps(
    runtime: RuntimeDep,
    evaluation_id: Annotated[FilterText, Query(description="Evaluation id (a cluster's is 'namespace/name').")],
) -> SweepList:
    """Throughput vs batch size, and the optimal batch size, of each framework the evaluation swept."""
    with runtime.database.read() as connection:
        return SweepList(evaluation_id=evaluation_id, sweeps=analysis.evaluation_sweeps(connection, evaluation_id))
