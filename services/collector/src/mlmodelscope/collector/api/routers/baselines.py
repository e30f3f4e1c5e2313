"""Baselines and regression checks: mark a run as the baseline of its labels, read a run's regression status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response

from mlmodelscope.collector import analysis
from mlmodelscope.collector.analysis_models import BaselineList, BaselineRequest, BaselineView, RegressionStatus
from mlmodelscope.collector.api.auth import TokenDep
from mlmodelscope.collector.api.dependencies import RunIdPath, RuntimeDep
from mlmodelscope.collector.storage import baselines as store
from mlmodelscope.core.analysis.regression import RegressionPolicy

router = APIRouter(prefix="/api/v1", tags=["baselines"])
_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "No token."},
    403: {"description": "Wrong token, or mutations disabled."},
}


def policy_of(runtime: RuntimeDep) -> RegressionPolicy:
    settings = runtime.settings
    return RegressionPolicy(
        p99_threshold=settings.regression_p99_threshold,
        throughput_threshold=settings.regression_throughput_threshold,
    )


@router.get("/baselines", response_model=BaselineList)
def list_baselines(runtime: RuntimeDep) -> BaselineList:
    """Every baseline, by (model, framework, arch, accelerator, scenario, batch size), and the regression policy."""
    with runtime.database.read() as connection:
        rows = store.list_baselines(connection)
    return BaselineList(items=[BaselineView.model_validate(row) for row in rows], policy=policy_of(runtime))


@router.put("/baselines", response_model=BaselineView, responses={**_AUTH, 404: {}, 409: {}})
def set_baseline(runtime: RuntimeDep, _token: TokenDep, request: BaselineRequest) -> BaselineView:
    """Make this succeeded run the baseline of its labels; later runs with the same labels are checked against it."""
    with runtime.database.write() as connection:
        row = analysis.run_row(connection, request.run_id)
        labels = store.labels_of_run(row)
        if labels is None or row["status"] != "succeeded":
            raise HTTPException(
                status_code=409,
                detail=f"run '{request.run_id}' is {row['status']}: only a succeeded run can be a baseline",
            )
        stored = store.set_baseline(connection, labels, request.run_id)
    return BaselineView.model_validate(stored)


@router.delete("/baselines/{run_id}", status_code=204, responses={**_AUTH, 404: {}})
def delete_baseline(runtime: RuntimeDep, _token: TokenDep, run_id: RunIdPath) -> Response:
    """Stop using this run as a baseline."""
    with runtime.database.write() as connection:
        if store.delete_baseline_of_run(connection, run_id) == 0:
            raise HTTPException(status_code=404, detail=f"run '{run_id}' is not a baseline")
    return Response(status_code=204)


@router.get("/runs/{run_id}/regression", response_model=RegressionStatus, responses={404: {}, 422: {}})
def get_regression(runtime: RuntimeDep, run_id: RunIdPath) -> RegressionStatus:
    """Whether the run regressed against the baseline of its labels (p99 or throughput beyond the thresholds)."""
    with runtime.database.read() as connection:
        return analysis.regression_status(connection, run_id, policy_of(runtime))
