"""The Kubernetes Events the operator posts about an Evaluation, through kopf's queue.

A pass posts what changed since the status it replaces (a run finished, the phase moved), so each change is said
once however often the pass runs; outside the operator (no posting queue) the message is logged instead.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

from mlmodelscope.operator import status
from mlmodelscope.operator.evaluation import EvaluationStatus, RunStatus
from mlmodelscope.operator.kube import JsonObject

logger = logging.getLogger(__name__)


def post(poster: Any, raw: JsonObject, reason: str, message: str) -> None:
    """Post a Kubernetes Event through kopf (queued; kopf retries and logs failures itself)."""
    try:
        poster(kopf.Body(cast(Any, raw)), reason=reason, message=message[:1000])
    except LookupError:  # outside the operator's context (no posting queue): the log line is enough
        logger.info("%s: %s", reason, message)


def post_status_changes(body: JsonObject, previous: EvaluationStatus | None, new: EvaluationStatus) -> None:
    """One Event per run that finished since ``previous``, and one when the Evaluation's phase changed."""
    before = {r.run_id: r.state for r in previous.runs} if previous is not None else {}
    for run in new.runs:
        if run.state in status.FINISHED and before.get(run.run_id) != run.state:
            if run.state == "Succeeded":
                post(kopf.info, body, "RunSucceeded", f"run {run.name}: {_summary(run)}")
            else:
                post(kopf.warn, body, "RunFailed", f"run {run.name}: {run.message}")
    if previous is None or previous.phase != new.phase:
        poster = kopf.warn if new.phase == "Failed" else kopf.info
        post(poster, body, f"Evaluation{new.phase}", f"{new.progress} runs finished, {new.valid} valid")


def _summary(run: RunStatus) -> str:
    result = run.result
    if result is None:
        return "no result"
    verdict = "VALID" if result.valid else "INVALID"
    accuracy = f"{result.accuracy_metric} {result.accuracy_value}" if result.accuracy_metric else "no accuracy run"
    return f"{verdict}, p99 {result.p99_ms} ms, {result.throughput_samples_per_s} samples/s, {accuracy}"
