"""Liveness (the process answers) and readiness (the database answers and, if configured, NATS is connected)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from mlmodelscope.collector.api.dependencies import RuntimeDep
from mlmodelscope.collector.api.models import Health, Readiness
from mlmodelscope.collector.errors import DatabaseUnavailableError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    database = "ok"
    try:
        await run_in_threadpool(runtime.database.ping)
    except DatabaseUnavailableError as e:
        database = str(e)
    nats = "not configured"
    if runtime.consumer is not None:
        nats = "ok" if runtime.consumer.connected else "not connected"
    readiness = Readiness(ready=database == "ok" and nats in ("ok", "not configured"), database=database, nats=nats)
    return JSONResponse(status_code=200 if readiness.ready else 503, content=readiness.model_dump())
