"""Run results read from the collector's REST API (``/api/v1/runs/{id}``, ``.../result``, ``.../regression``).

The operator never computes a figure itself: p50/p90/p99 latency, throughput, the accuracy run's primary metric
(top-1, mAP or mIoU: ``AccuracyResult.primary``) and the verdict are copied from the RunResult the agent published
and the collector stored, validated as the core's ``RunResult`` (one that does not validate gives no figures and a
reason). A run the collector does not know yet is
``None`` (ingestion may lag the Job's completion); an unreachable collector is ``ResultsUnavailableError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mlmodelscope.core.collector_client import NOT_FOUND, AsyncCollectorClient, CollectorClientError
from mlmodelscope.core.collector_paths import run_api_path
from mlmodelscope.core.evaluation.results import SCHEMA_VERSION, RunResult
from mlmodelscope.operator.errors import ResultsUnavailableError
from mlmodelscope.operator.evaluation import RunFigures

_NS_PER_MS = 1e6


@dataclass(frozen=True)
class CollectedRun:
    """What the collector knows of one run: its status, error, and the summary of its result when finished."""

    status: str
    error: str
    result: RunFigures | None


def _ms(value_ns: int | None) -> float | None:
    return round(value_ns / _NS_PER_MS, 6) if value_ns is not None else None


def summarize(result: RunResult) -> RunFigures:
    """The status figures of a run's result: the performance run's verdict and latency, else the accuracy run's."""
    performance, accuracy = result.performance, result.accuracy
    verdict = performance.verdict if performance is not None else accuracy.verdict if accuracy is not None else None
    failed = [c for c in verdict.constraints if not c.satisfied] if verdict is not None else []
    latency = performance.latency if performance is not None else None
    primary = accuracy.primary if accuracy is not None else None
    return RunFigures(
        p50_ms=_ms(latency.p50_ns if latency is not None else None),
        p90_ms=_ms(latency.p90_ns if latency is not None else None),
        p99_ms=_ms(latency.p99_ns if latency is not None else None),
        throughput_samples_per_s=performance.throughput.samples_per_s if performance is not None else None,
        top1=accuracy.top1 if accuracy is not None else None,
        accuracy_metric=primary[0] if primary is not None else None,
        accuracy_value=primary[1] if primary is not None else None,
        valid=verdict.valid if verdict is not None else None,
        reason="; ".join(f"{c.name}: {c.reason}" for c in failed)[:1000],
    )


def unreadable(document: Any, error: ValidationError) -> RunFigures:
    """The figures of a stored document that is no ``RunResult`` of this version (a collector of another release
    stored it): none, and a reason that says so instead of a guess from whatever keys it has."""
    version = document.get("schema_version") if isinstance(document, dict) else None
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": str(error)}
    where = ".".join(str(part) for part in first["loc"]) or "the document"
    return RunFigures(
        reason=f"the collector's result (schema_version {version}) is not a RunResult of this operator "
        f"(schema_version {SCHEMA_VERSION}): {where}: {first['msg']}"[:1000]
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
            result = None if document is None else figures_of(document)
            regression = (
                await self._client.get_json(run_api_path(run_id, "regression"), missing=NOT_FOUND)
                if result is not None
                else None
            )
            if result is not None and regression is not None:
                result = with_regression(result, regression)
        return CollectedRun(status=status, error=str(detail.get("error") or ""), result=result)


def figures_of(document: Any) -> RunFigures:
    """The figures of the document the collector serves as a run's result."""
    try:
        return summarize(RunResult.model_validate(document))
    except ValidationError as e:
        return unreadable(document, e)
