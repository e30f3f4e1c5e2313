"""``GET /api/v1/evaluations``: runs grouped by the evaluation that launched them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mlmodelscope.collector.api.dependencies import RuntimeDep
from mlmodelscope.collector.api.models import EvaluationList, EvaluationListItem, PageQuery
from mlmodelscope.collector.storage import reads

router = APIRouter(prefix="/api/v1/evaluations", tags=["evaluations"])


@router.get("", response_model=EvaluationList)
def list_evaluations(runtime: RuntimeDep, page: Annotated[PageQuery, Query()]) -> EvaluationList:
    with runtime.database.read() as connection:
        total, groups = reads.list_evaluations(connection, limit=page.limit, offset=page.offset)
    return EvaluationList(
        items=[EvaluationListItem.model_validate(group) for group in groups],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )
