"""The catalog of assets and ``POST /api/v1/evaluations``: launch an evaluation (local agents, or an Evaluation
resource in a cluster), token required."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from mlmodelscope.collector.analysis_models import CatalogResponse, LaunchRequest, LaunchResponse
from mlmodelscope.collector.api.auth import TokenDep
from mlmodelscope.collector.api.dependencies import RuntimeDep
from mlmodelscope.collector.catalog import catalog
from mlmodelscope.collector.runtime import CollectorRuntime

router = APIRouter(prefix="/api/v1", tags=["launch"])


@router.get("/catalog", response_model=CatalogResponse, responses={503: {"description": "An asset folder is broken."}})
async def get_catalog(request: Request) -> CatalogResponse:
    """Models, frameworks and datasets of the configured asset folders."""
    return await run_in_threadpool(catalog, request.app.state.settings)


@router.post(
    "/evaluations",
    response_model=LaunchResponse,
    status_code=202,
    responses={401: {}, 403: {}, 409: {"description": "Launching is not configured."}, 422: {}, 502: {}},
)
async def launch_evaluation(runtime: RuntimeDep, _token: TokenDep, request: LaunchRequest) -> LaunchResponse:
    """Start one agent per framework x batch size; the runs appear under /api/v1/runs as they report."""
    return await start_evaluation(runtime, request)


async def start_evaluation(runtime: CollectorRuntime, request: LaunchRequest) -> LaunchResponse:
    """In a cluster (``kube_api_url`` set): create an Evaluation resource; locally: start agent processes."""
    if runtime.kube is not None:
        return await runtime.kube.launch(request)
    return await run_in_threadpool(runtime.launcher.launch, request)
