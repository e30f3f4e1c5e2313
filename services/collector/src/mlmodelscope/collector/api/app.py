"""``create_app(settings)``: the FastAPI app, its lifespan (migrate, seed metrics, run the consumer) and errors.

Nothing is built at import time: the settings come from ``main`` (or a test) and the database, metrics and
consumer are created when the app starts, and closed when it stops. Errors become HTTP statuses here, once:
``DatabaseUnavailableError`` -> 503 with its message; bad parameters are FastAPI's 422; unknown ids are 404 in the
routers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mlmodelscope.collector.api.routers import evaluations, health, metrics, runs
from mlmodelscope.collector.consumer import JetStreamConsumer
from mlmodelscope.collector.errors import DatabaseUnavailableError
from mlmodelscope.collector.metrics import distribution_version
from mlmodelscope.collector.runtime import open_runtime
from mlmodelscope.collector.settings import CollectorSettings

log = logging.getLogger(__name__)


def create_app(settings: CollectorSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await asyncio.to_thread(open_runtime, settings)
        log.info("collector storing into %s", runtime.database.describe())
        if settings.nats_url is not None:
            runtime.consumer = JetStreamConsumer(settings, runtime.ingestor, runtime.metrics)
            await runtime.consumer.start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            app.state.runtime = None
            if runtime.consumer is not None:
                await runtime.consumer.stop()
            runtime.database.dispose()

    app = FastAPI(
        title="MLModelScope collector",
        version=distribution_version(),
        description="Runs, results, per-query latencies, traces and metrics ingested from MLModelScope agents.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.runtime = None
    app.add_exception_handler(DatabaseUnavailableError, _database_unavailable)
    app.include_router(health.router)
    app.include_router(runs.router)
    app.include_router(evaluations.router)
    app.include_router(metrics.router)
    return app


async def _database_unavailable(_request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": str(error)}, headers={"Retry-After": "5"})
