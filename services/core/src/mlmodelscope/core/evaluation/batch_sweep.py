"""Batch-size sweep: throughput per batch size and the optimal batch size of one model on one framework.

Throughput grows with the batch size until the hardware is saturated; past that point a bigger batch only adds
latency. The optimal batch size is the smallest batch after which doubling gains less than ``gain_threshold``
(5%) throughput: with the sorted sweep b1 < b2 < ..., the first b_i whose next point b_{i+1} (normally 2 x b_i)
has throughput(b_{i+1}) < throughput(b_i) x (1 + threshold). If every step still gains, it is the largest batch
measured (and the sweep says so: measure further).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from pydantic import BaseModel, ConfigDict, Field

from mlmodelscope.core.errors import EvaluationError
from mlmodelscope.core.evaluation.results import RunResult

DEFAULT_GAIN_THRESHOLD = 0.05


class BatchPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(ge=1)
    samples_per_s: float = Field(ge=0)
    p50_ns: float = Field(ge=0, description="Latency per predictor call (one batch).")
    p99_ns: float = Field(ge=0)
    valid: bool
    run_id: str


class BatchSweep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    framework: str
    device: str
    scenario: str
    points: list[BatchPoint]
    optimal_batch_size: int
    saturated: bool = Field(description="False: throughput still grew at the largest batch measured.")
    gain_threshold: float


def optimal_batch_size(
    points: Sequence[BatchPoint], gain_threshold: float = DEFAULT_GAIN_THRESHOLD
) -> tuple[int, bool]:
    """(optimal batch size, saturated) of points sorted by batch size (see the module docstring)."""
    if not points:
        raise EvaluationError("a batch-size sweep needs at least one measured batch size.")
    for current, following in pairwise(points):
        if following.samples_per_s < current.samples_per_s * (1.0 + gain_threshold):
            return current.batch_size, True
    return points[-1].batch_size, False


def batch_sweeps(results: Sequence[RunResult], gain_threshold: float = DEFAULT_GAIN_THRESHOLD) -> list[BatchSweep]:
    """One sweep per (model, framework, device, scenario) that was measured at two or more batch sizes."""
    groups: dict[tuple[str, str, str, str], list[RunResult]] = {}
    for result in results:
        if result.performance is None:
            continue
        key = (result.model.name, result.framework.name, result.device, result.requested_settings.scenario)
        groups.setdefault(key, []).append(result)
    sweeps: list[BatchSweep] = []
    for (model, framework, device, scenario), members in groups.items():
        points = sorted(
            (
                BatchPoint(
                    batch_size=r.requested_settings.batch_size,
                    samples_per_s=r.performance.throughput.samples_per_s,
                    p50_ns=r.performance.latency.p50_ns,
                    p99_ns=r.performance.latency.p99_ns,
                    valid=r.performance.verdict.valid,
                    run_id=r.id,
                )
                for r in members
                if r.performance is not None
            ),
            key=lambda point: point.batch_size,
        )
        if len({point.batch_size for point in points}) < 2:
            continue
        optimal, saturated = optimal_batch_size(points, gain_threshold)
        sweeps.append(
            BatchSweep(
                model=model,
                framework=framework,
                device=device,
                scenario=scenario,
                points=points,
                optimal_batch_size=optimal,
                saturated=saturated,
                gain_threshold=gain_threshold,
            )
        )
    return sweeps
