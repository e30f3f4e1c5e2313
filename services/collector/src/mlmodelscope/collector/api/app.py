"""``create_app(settings)``: the FastAPI app, its lifespan (migrate, seed metrics, run the consumer and the
regression monitor) and errors.

Nothing is built at import time: the settings come from ``main`` (or a test) and the database, metrics and
consumer are created when the app starts, and closed when it stops. Errors become HTTP statuses here, once:
``DatabaseUnavailableError`` -> 503 with its message; ``StoredDataError`` (data the database cannot read back)
-> 500 with a problem detail naming the run and the fix, never "unavailable"; bad parameters are FastAPI's 422;
unknown ids are 404 in the routers (``UnknownRunError`` -> 404); a run that cannot be analysed (``AnalysisError``)
and a launch request the launcher refuses (``LaunchError``) are 422, launching while unconfigured is 409, broken
asset folders 503; a 405 names every method of its path. The web pages (``mlmodelscope.collector.web``), whose
errors are HTML pages, and the offline ``/docs`` (``api.docs``) are mounted here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlmodelscope.collector.api import docs, openapi_document
from mlmodelscope.collector.api.allowed_methods import with_complete_allow
from mlmodelscope.collector.api.routers import (
    analysis,
    baselines,
    dead_letters,
    evaluations,
    health,
    launch,
    metrics,
    runs,
)
from mlmodelscope.collector.consumer import JetStreamConsumer
from mlmodelscope.collector.errors import (
    DatabaseUnavailableError,
    KubernetesApiError,
    LaunchError,
    LaunchNotConfiguredError,
    StoredDataError,
    UnknownRunError,
)
from mlmodelscope.collector.metrics import distribution_version
from mlmodelscope.collector.runtime import CollectorRuntime, open_runtime
from mlmodelscope.collector.settings import CollectorSettings
from mlmodelscope.collector.web import pages
from mlmodelscope.core.analysis.errors import AnalysisError
from mlmodelscope.core.errors import ManifestError, MLModelScopeError, RegistryError

log = logging.getLogger(__name__)


def lower_priority(niceness: int) -> None:
    """Take the nice value ``niceness`` (the process's threads too: Linux's nice is per thread, and the ones
    started so far, the storing threads among them, are raised one by one); a no-op for 0, off POSIX, or when
    the OS refuses."""
    if niceness <= 0:
        return
    tasks = Path("/proc/self/task")
    with contextlib.suppress(AttributeError, OSError):
        for thread in [int(task.name) for task in tasks.iterdir()] if tasks.is_dir() else [os.getpid()]:
            os.setpriority(os.PRIO_PROCESS, thread, niceness)


def create_app(settings: CollectorSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await asyncio.to_thread(open_runtime, settings)
        log.info("collector storing into %s", runtime.database.describe())
        if settings.nats_url is not None:
            runtime.consumer = JetStreamConsumer(settings, runtime.ingestor, runtime.metrics)
            await runtime.consumer.start()
        app.state.runtime = runtime
        lower_priority(settings.ingest_niceness)
        monitor = asyncio.create_task(_monitor_regressions(runtime, settings.regression_check_interval_s))
        try:
            yield
        finally:
            app.state.runtime = None
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
            await asyncio.to_thread(runtime.launcher.close)
            if runtime.consumer is not None:
                await runtime.consumer.stop()
            runtime.database.dispose()

    app = FastAPI(
        title="MLModelScope collector",
        version=distribution_version(),
        description="Runs, results, per-query latencies, traces and metrics ingested from MLModelScope agents.",
        lifespan=lifespan,
        docs_url=None,  # served by api.docs from local files (no CDN)
        redoc_url=None,
    )
    openapi_document.install(app)
    app.state.settings = settings
    app.state.runtime = None
    app.add_exception_handler(DatabaseUnavailableError, _database_unavailable)
    app.add_exception_handler(StoredDataError, _stored_data_error)
    app.add_exception_handler(UnknownRunError, _status(404))
    app.add_exception_handler(AnalysisError, _status(422))
    app.add_exception_handler(LaunchNotConfiguredError, _status(409))
    app.add_exception_handler(KubernetesApiError, _status(502))
    app.add_exception_handler(LaunchError, _status(422))
    app.add_exception_handler(ManifestError, _status(503))
    app.add_exception_handler(RegistryError, _status(503))
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(health.router)
    app.include_router(runs.router)
    app.include_router(evaluations.router)
    app.include_router(analysis.router)
    app.include_router(baselines.router)
    app.include_router(launch.router)
    app.include_router(metrics.router)
    app.include_router(dead_letters.router)
    pages.mount(app)
    docs.mount(app, settings)
    return app


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's HTTP errors: a 405 names every method of the path; a page's error is an HTML page."""
    assert isinstance(error, StarletteHTTPException)
    error = with_complete_allow(request, error)
    if pages.is_page(request):
        return pages.error_page(request, error.status_code, str(error.detail), dict(error.headers or {}))
    return await http_exception_handler(request, error)


async def _invalid_request(request: Request, error: Exception) -> Response:
    """Invalid parameters: the API's 422 JSON, or an HTML page for the pages (404 for a malformed id)."""
    assert isinstance(error, RequestValidationError)
    if pages.is_page(request):
        return pages.invalid_request_page(request, error)
    return await request_validation_exception_handler(request, error)


async def _monitor_regressions(runtime: CollectorRuntime, interval_s: float) -> None:
    """Check new runs against their baselines until cancelled; a database outage only delays the next round."""
    while True:
        try:
            await asyncio.to_thread(runtime.monitor.check_pending)
        except DatabaseUnavailableError as e:
            log.warning("regression check postponed: %s", e)
        except Exception:
            log.exception("regression check failed")
        await asyncio.sleep(interval_s)


def _status(code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """A handler answering ``code`` with the error's message (and its hint, when there is one)."""

    async def handler(_request: Request, error: Exception) -> JSONResponse:
        detail = str(error)
        if isinstance(error, MLModelScopeError):
            detail = error.message + (f" ({error.hint})" if error.hint else "")
        return JSONResponse(status_code=code, content={"detail": detail})

    return handler


async def _database_unavailable(_request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": str(error)}, headers={"Retry-After": "5"})


STORED_DATA_PROBLEM_TYPE = "https://mlmodelscope.org/problems/stored-data-error"
STORED_DATA_FIX = (
    "The request is valid; retrying it will not help. See the collector's log for the statement, then repair the "
    "database (restore a backup; for SQLite, `sqlite3 FILE .recover`) or delete the run's rows and store it again "
    "(`mlmodelscope runs import` of its run folder)."
)


async def _stored_data_error(request: Request, error: Exception) -> Response:
    """The database refused a read because of the data it holds (``StoredDataError``): 500, a problem detail.

    Status: the request is well formed and names a run that exists, so nothing the client changes fixes it (not a
    4xx); it is not transient either, so not 503 and no ``Retry-After``, and never "database unavailable" (that
    sends users to check a server that is up). The fault is the server's: it stored, or its database holds, data
    it cannot read back. So it is a 500 whose RFC 9457 problem detail (``application/problem+json``) names the run
    (``run_id``, when the path names one), what the database said (``detail``) and how to fix it (``hint``). A page
    gets the same as its HTML error page.
    """
    assert isinstance(error, StoredDataError)
    run_id = request.path_params.get("run_id")
    subject = f"the stored data of run {run_id!r}" if run_id else "the stored data"
    detail = f"{subject} cannot be read: {error.message}"
    hint = error.hint or STORED_DATA_FIX
    log.error("%s %s: %s", request.method, request.url.path, detail)
    if pages.is_page(request):
        return pages.error_page(request, 500, f"{detail}. {hint}")
    problem: dict[str, Any] = {
        "type": STORED_DATA_PROBLEM_TYPE,
        "title": "Stored data cannot be read",
        "status": 500,
        "detail": detail,
        "hint": hint,
        "instance": request.url.path,
    }
    if run_id:
        problem["run_id"] = run_id
    return JSONResponse(status_code=500, content=problem, media_type="application/problem+json")
