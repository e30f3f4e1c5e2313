"""``GET /metrics``: the Prometheus exposition of this app's own registry (a route, so no /metrics/ redirect)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mlmodelscope.collector.api.dependencies import RuntimeDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, include_in_schema=False)
def prometheus_metrics(runtime: RuntimeDep) -> Response:
    return Response(content=generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)
