"""The pages: evaluations and runs (with filters), catalog, run detail, evaluation progress, compare, baselines and
the launch form. Mutating forms (launch, mark as baseline) carry the collector's token in a password field.

Pages call the same functions as the API (``collector.analysis``, ``storage.reads``) and show their numbers through
the filters below (``ns``, ``pct``, ``num``); raw values are also in ``data-value`` attributes.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import Connection

from mlmodelscope.collector import analysis
from mlmodelscope.collector.analysis_models import BaselineList, BaselineView, CatalogResponse, LaunchRequest
from mlmodelscope.collector.api.auth import check_token
from mlmodelscope.collector.api.dependencies import RunIdPath, RuntimeDep
from mlmodelscope.collector.api.models import EvaluationListItem, RunListQuery, RunSummary
from mlmodelscope.collector.api.routers.baselines import policy_of
from mlmodelscope.collector.api.routers.launch import start_evaluation
from mlmodelscope.collector.catalog import catalog
from mlmodelscope.collector.errors import KubernetesApiError, LaunchError, LaunchNotConfiguredError, UnknownRunError
from mlmodelscope.collector.runtime import CollectorRuntime
from mlmodelscope.collector.storage import baselines as baseline_store
from mlmodelscope.collector.storage import reads
from mlmodelscope.collector.storage.schema import RUN_STATUSES
from mlmodelscope.collector.storage.timeutil import utc
from mlmodelscope.collector.task_metrics import TaskComparison, comparison_charts, result_charts, task_comparisons
from mlmodelscope.collector.web.charts import compare_charts, run_charts
from mlmodelscope.core.analysis.compare import BootstrapSettings
from mlmodelscope.core.analysis.errors import AnalysisError
from mlmodelscope.core.analysis.svg import format_ns
from mlmodelscope.core.errors import MLModelScopeError

HERE = FilePath(__file__).parent
router = APIRouter(prefix="/ui", include_in_schema=False)
_LAUNCH_DEFAULTS: dict[str, Any] = {
    "model": "",
    "frameworks": [],
    "dataset": "",
    "scenario": "single-stream",
    "mode": "both",
    "batch_sizes": "1",
    "min_duration_s": "10",
    "trace_level": "model",
    "device": "cpu",
    "arch": "amd64",
}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _figure(value: float | None) -> str:
    """An accuracy figure (mAP, IoU, ...) in %; COCO's -1 (nothing to average) as n/a."""
    return "n/a" if value is not None and value < 0 else _pct(value)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _when(value: datetime | None) -> str:
    return "-" if value is None else utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmtv(value: float, kind: str) -> str:
    return format_ns(value) if kind == "ns" else _num(value)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(ns=format_ns, pct=_pct, figure=_figure, num=_num, fmtv=_fmtv, when=_when)
    return templates


def mount(app: FastAPI) -> None:
    """Add the pages, their static files and ``/`` -> ``/ui/runs`` to the app."""
    app.state.templates = _templates()
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/runs", status_code=307)


def _render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, template, {"error": None, **context}, status_code=status_code)


def _error(request: Request, status_code: int, message: str) -> HTMLResponse:
    return _render(request, "error.html", status_code=status_code, error=message, status_code_text=status_code)


def is_page(request: Request) -> bool:
    """Whether the request is for a page (HTML answers, errors included) rather than the JSON API."""
    return request.url.path == "/ui" or request.url.path.startswith("/ui/")


def error_page(request: Request, status_code: int, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    """An HTTP error of a page (unknown page, wrong method, collector not started) as the error page."""
    response = _error(request, status_code, message)
    response.headers.update(headers or {})
    return response


def invalid_request_page(request: Request, error: RequestValidationError) -> HTMLResponse:
    """A page's parameters that fail validation: a malformed id in the path names no page (404); bad query or
    form values are a 422, both as the error page rather than the API's JSON."""
    problems = error.errors()
    if any(problem.get("loc", ("",))[0] == "path" for problem in problems):
        return _error(request, 404, f"no such page: {request.url.path} (the id in it is not a valid id)")
    parts = [f"{'.'.join(str(p) for p in problem.get('loc', ()))}: {problem.get('msg', '')}" for problem in problems]
    return _error(request, 422, "invalid request: " + "; ".join(parts))


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    params = {k: v for k, v in request.query_params.items() if v.strip()}
    try:
        query = RunListQuery.model_validate(params)
    except ValidationError as e:
        return _error(request, 422, f"invalid filter: {_problems(e)}")
    with runtime.database.read() as connection:
        total, rows = reads.list_runs(connection, query.filters(), limit=query.limit, offset=query.offset)
        evaluation_total, groups = reads.list_evaluations(connection, limit=20, offset=0)
    runs = {"rows": [RunSummary.model_validate(dict(row)) for row in rows], "total": total}
    evaluations = {"rows": [EvaluationListItem.model_validate(g) for g in groups], "total": evaluation_total}
    return _render(request, "runs.html", runs=runs, evaluations=evaluations, filters=query, statuses=RUN_STATUSES)


@router.get("/catalog", response_class=HTMLResponse)
def catalog_page(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    try:
        found: CatalogResponse | None = catalog(runtime.settings)
    except MLModelScopeError as e:
        return _render(request, "catalog.html", status_code=503, catalog=None, error=str(e))
    return _render(request, "catalog.html", catalog=found)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, runtime: RuntimeDep, run_id: RunIdPath) -> HTMLResponse:
    run_analysis = timeline = regression = None
    analysis_error = regression_error = ""
    with runtime.database.read() as connection:
        try:
            run = analysis.run_row(connection, run_id)
        except UnknownRunError as e:
            return _error(request, 404, e.message)
        result = analysis.result_of(connection, run_id)
        if run["status"] == "succeeded":
            try:
                run_analysis = analysis.run_analysis(connection, run_id, top=10, settings=BootstrapSettings())
            except AnalysisError as e:
                analysis_error = e.message
            try:
                regression = analysis.regression_status(connection, run_id, policy_of(runtime))
            except AnalysisError as e:
                regression_error = e.message
        timeline = analysis.run_timeline(connection, run_id, queries=8)
        sweeps = analysis.evaluation_sweeps(connection, run["evaluation_id"]) if run["evaluation_id"] else []
        sweeps = [s for s in sweeps if s.model == run["model"]]  # every framework the evaluation swept, side by side
    return _render(
        request,
        "run.html",
        run=run,
        result=result,
        analysis=run_analysis,
        analysis_error=analysis_error,
        timeline=timeline,
        sweeps=sweeps,
        regression=regression,
        regression_error=regression_error,
        charts={**run_charts(run_analysis, sweeps, timeline), **result_charts(result)},
    )


@router.get("/evaluations/{evaluation_id:path}", response_class=HTMLResponse)
def evaluation_page(
    request: Request,
    runtime: RuntimeDep,
    evaluation_id: Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_./-]+$")],
    launched: Annotated[list[str] | None, Query()] = None,
    cluster: bool = False,
) -> HTMLResponse:
    with runtime.database.read() as connection:
        _, rows = reads.list_runs(connection, reads.RunFilters(evaluation_id=evaluation_id), limit=1000, offset=0)
        runs = [reads.get_run(connection, row["run_id"]) for row in rows]
    present = {r["run_id"] for r in runs if r is not None}
    waiting = [r for r in (launched or []) if r not in present]
    finished = not waiting and all(r is not None and r["status"] in ("succeeded", "failed", "cancelled") for r in runs)
    if cluster and not runs:
        finished = False  # the operator has not started its Jobs yet: keep refreshing
    elif not runs and not waiting:
        return _error(request, 404, f"no evaluation '{evaluation_id}'")
    return _render(
        request,
        "evaluation.html",
        evaluation_id=evaluation_id,
        runs=sorted((r for r in runs if r is not None), key=lambda r: r["run_id"]),
        waiting=waiting,
        finished=finished,
        cluster=cluster,
    )


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request, runtime: RuntimeDep, run: Annotated[list[str] | None, Query()] = None
) -> HTMLResponse:
    run_ids = [r.strip() for r in (run or []) if r.strip()]
    settings = BootstrapSettings()
    if len(run_ids) < 2:
        message = "Pick two or more runs (on the Evaluations page, or add run ids here); the first is the baseline."
        return _render(request, "compare.html", view=None, run_ids=run_ids, settings=settings, error=message)
    context: dict[str, Any] = {"view": None, "run_ids": run_ids, "settings": settings}
    with runtime.database.read() as connection:
        # Accuracy of detection/segmentation runs is shown even when their latency cannot be compared.
        context["accuracy"], context["accuracy_charts"] = accuracy_of(connection, run_ids)
        try:
            view = analysis.compare_runs(connection, run_ids, settings)
            analyses = {
                r: analysis.run_analysis(connection, r, top=10, settings=settings) for r in dict.fromkeys(run_ids)
            }
        except UnknownRunError as e:
            return _render(request, "compare.html", 404, **context, error=e.message)
        except AnalysisError as e:
            return _render(request, "compare.html", 422, **context, error=e.message)
    return _render(request, "compare.html", **{**context, "view": view, "charts": compare_charts(view, analyses)})


def accuracy_of(connection: Connection, run_ids: list[str]) -> tuple[list[TaskComparison], dict[str, str]]:
    """The task comparisons of the runs and their charts (the PR curves of the detection runs), by task."""
    results = {r: analysis.result_of(connection, r) for r in dict.fromkeys(run_ids)}
    comparisons = task_comparisons(list(results.items()))
    found = {run_id: result for run_id, result in results.items() if result is not None}
    return comparisons, {c.task: comparison_charts(c, found) for c in comparisons}


@router.get("/baselines", response_class=HTMLResponse)
def baselines_page(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    with runtime.database.read() as connection:
        rows = baseline_store.list_baselines(connection)
    listing = BaselineList(items=[BaselineView.model_validate(r) for r in rows], policy=policy_of(runtime))
    return _render(request, "baselines.html", baselines=listing)


async def _form(request: Request) -> dict[str, list[str]]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return parse_qs(body, keep_blank_values=True)


def _first(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0].strip()


@router.post("/runs/{run_id}/baseline", response_class=HTMLResponse)
async def mark_baseline(request: Request, runtime: RuntimeDep, run_id: RunIdPath) -> Response:
    form = await _form(request)
    try:
        check_token(runtime.settings, _first(form, "token") or None)
    except HTTPException as e:
        return _error(request, e.status_code, str(e.detail))
    with runtime.database.write() as connection:
        try:
            row = analysis.run_row(connection, run_id)
        except UnknownRunError as e:
            return _error(request, 404, e.message)
        labels = baseline_store.labels_of_run(row)
        if labels is None or row["status"] != "succeeded":
            return _error(request, 409, f"run '{run_id}' is {row['status']}: only a succeeded run can be a baseline")
        baseline_store.set_baseline(connection, labels, run_id)
    return RedirectResponse(f"/ui/runs/{run_id}", status_code=303)


def _launch_context(runtime: CollectorRuntime, form: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = {"form": form, "configured": True, "not_configured": ""}
    try:
        if runtime.kube is None:
            runtime.launcher.check_configured()
    except LaunchError as e:
        context.update(configured=False, not_configured=str(e))
    context["cluster"] = runtime.kube is not None
    try:
        context["catalog"] = catalog(runtime.settings)
    except MLModelScopeError as e:
        context["catalog"] = CatalogResponse(assets=[], models=[], frameworks=[], datasets=[])
        context["error"] = str(e)
    return context


@router.get("/launch", response_class=HTMLResponse)
def launch_page(request: Request, runtime: RuntimeDep, model: str = "") -> HTMLResponse:
    form = {**_LAUNCH_DEFAULTS, "model": model}
    return _render(request, "launch.html", **_launch_context(runtime, form))


@router.post("/launch", response_class=HTMLResponse)
async def launch_submit(request: Request, runtime: RuntimeDep) -> Response:
    raw = await _form(request)
    form = {**_LAUNCH_DEFAULTS, **{k: _first(raw, k) for k in _LAUNCH_DEFAULTS if k != "frameworks" and k in raw}}
    form["frameworks"] = [f for f in raw.get("frameworks", []) if f.strip()]

    def refuse(status_code: int, message: str) -> HTMLResponse:
        context = _launch_context(runtime, form)
        context["error"] = message
        return _render(request, "launch.html", status_code=status_code, **context)

    try:
        check_token(runtime.settings, _first(raw, "token") or None)
    except HTTPException as e:
        return refuse(e.status_code, str(e.detail))
    try:
        sizes = [int(part) for part in form["batch_sizes"].replace(" ", "").split(",") if part]
    except ValueError:
        return refuse(422, f"batch sizes '{form['batch_sizes']}': give integers separated by commas, e.g. 1,4,16")
    values: dict[str, Any] = {k: v for k, v in form.items() if k not in ("batch_sizes", "dataset") and v != ""}
    values["batch_sizes"] = sizes
    if form["dataset"]:
        values["dataset"] = form["dataset"]
    try:
        launch_request = LaunchRequest.model_validate(values)
    except ValidationError as e:
        return refuse(422, f"invalid evaluation: {_problems(e)}")
    try:
        response = await start_evaluation(runtime, launch_request)
    except LaunchNotConfiguredError as e:
        return refuse(409, str(e))
    except KubernetesApiError as e:
        return refuse(502, str(e))
    except LaunchError as e:
        return refuse(422, str(e))
    if runtime.kube is not None:
        return RedirectResponse(f"/ui/evaluations/{response.evaluation_id}?cluster=1", status_code=303)
    query = "&".join(f"launched={run_id}" for run_id in response.run_ids)
    return RedirectResponse(f"/ui/evaluations/{response.evaluation_id}?{query}", status_code=303)


def _problems(error: ValidationError) -> str:
    parts = []
    for problem in error.errors():
        where = ".".join(str(p) for p in problem["loc"])
        parts.append(f"{where}: {problem['msg']}" if where else str(problem["msg"]))
    return "; ".join(parts)
