"""Run results read from the collector's REST API (``/api/v1/runs/{id}``, ``.../result``, ``.../regression``).

The operator never computes a figure itself: p50/p90/p99 latency, throughput, the accuracy run's primary metric
(top-1, mAP or mIoU, as ``AccuracyResult.primary`` names it) and the verdict are copied from the RunResult
the agent published and the collector stored. A run the collector does not know yet is
``None`` (ingestion may lag the Job's completion); an unreachable collector is ``ResultsUnavailableError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlmodelscope.core.collector_client import NOT_FOUND, AsyncCollectorClient, CollectorClientError
from mlmodelscope.core.collector_paths import run_api_path
from mlmodelscope.operator.errors import ResultsUnavailableError
from mlmodelscope.operator.evaluation import RunFigures

_NS_PER_MS = 1e6


@dataclass(frozen=True)
class CollectedRun:
    """What the collector knows of one run: its status, error, and the summary of its result when finished."""

    status: str
    error: str
    result: RunFigures | None


def _ms(value: Any) -> float | None:
    return round(float(value) / _NS_PER_MS, 6) if value is not None else None


def primary_metric(accuracy: dict[str, Any]) -> tuple[str, float] | None:
    """The accuracy document's headline figure, as ``AccuracyResult.primary`` picks it: ('top1', x) for
    classification, ('mAP', x) for object detection, ('mIoU', x) for semantic segmentation; None if it has none."""
    detection = accuracy.get("detection") or {}
    segmentation = accuracy.get("segmentation") or {}
    for name, value in (
        ("top1", accuracy.get("top1")),
        ("mAP", detection.get("map")),
        ("mIoU", segmentation.get("mean_iou")),
    ):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return name, float(value)
    return None


def summarize(document: dict[str, Any]) -> RunFigures:
    """The status summary of an RunResult document."""
    performance = document.get("performance") or None
    accuracy = document.get("accuracy") or None
    verdict = (performance or accuracy or {}).get("verdict") or {}
    failed = [c for c in verdict.get("constraints", []) if not c.get("satisfied", True)]
    reason = "; ".join(f"{c.get('name')}: {c.get('reason')}" for c in failed)
    latency = (performance or {}).get("latency") or {}
    throughput = (performance or {}).get("throughput") or {}
    primary = primary_metric(accuracy or {})
    return RunFigures(
        p50_ms=_ms(latency.get("p50_ns")),
        p90_ms=_ms(latency.get("p90_ns")),
        p99_ms=_ms(latency.get("p99_ns")),
        throughput_samples_per_s=throughput.get("samples_per_s"),
        top1=(accuracy or {}).get("top1"),
        accuracy_metric=primary[0] if primary is not None else None,
        accuracy_value=primary[1] if primary is not None else None,
        valid=verdict.get("valid"),
        reason=reason[:1000],
    )


def with_regression(result: RunFigures, regression: dict[str, Any]) -> RunFigures:
    """``result`` with the collector's regression check (``GET /api/v1/runs/{id}/regression``) added."""
    state = regression.get("state")
    if state not in ("no baseline", "baseline", "ok", "regressed"):
        return result
    reasons = (regression.get("verdict") or {}).get("reasons") or []
    return result.model_copy(update={"regression": state, "regression_reason": "; ".join(map(str, reasons))[:1000]})


class RunResultReader:
    """The collector's view of the operator's runs, through the core's ``AsyncCollectorClient``; any failure to
    read is ``ResultsUnavailableError`` (transient: the next reconcile reads again)."""

    def __init__(self, base_url: str, *, timeout_s: float) -> None:
        self._client = AsyncCollectorClient(base_url, timeout_s=timeout_s)

    async def close(self) -> None:
        await self._client.close()

    async def run(self, run_id: str) -> CollectedRun | None:
        """The run as the collector stored it; None when it has not heard of it."""
        try:
            return await self._read(run_id)
        except CollectorClientError as e:
            raise ResultsUnavailableError(e.message) from e

    async def _read(self, run_id: str) -> CollectedRun | None:
        detail = await self._client.run(run_id)
        if detail is None:
            return None
        status = str(detail.get("status", "pending"))
        result = None
        if status == "succeeded" and detail.get("complete") is not False:
            document = await self._client.result(run_id)
            result = summarize(document) if document is not None else None
            regression = (
                await self._client.get_json(run_api_path(run_id, "regression"), missing=NOT_FOUND)
                if result is not None
                else None
            )
            if result is not None and regression is not None:
                result = with_regression(result, regression)
        return CollectedRun(status=status, error=str(detail.get("error") or ""), result=result)
