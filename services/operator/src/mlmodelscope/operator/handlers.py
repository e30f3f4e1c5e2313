"""The kopf handlers: thin triggers of one reconcile pass, registered on a registry made per operator run.

Every handler ends in ``Reconciler.trigger`` (or ``cleanup``), so their order, repetition or replay cannot change
the outcome. Errors are translated by type: transient API or collector failures become ``kopf.TemporaryError``
(kopf retries after ``retry_delay_s``), other API refusals ``kopf.PermanentError``; an unsatisfiable spec is
not an error here at all (the pass writes a Failed status). Watch events of Jobs are not retried by kopf; the
timer is the safety net that re-reads every unfinished Evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import Any

import kopf

from mlmodelscope.core.errors import TransientError
from mlmodelscope.core.manifests.resources import API_GROUP
from mlmodelscope.operator import jobs
from mlmodelscope.operator.errors import KubeApiError
from mlmodelscope.operator.evaluation import EvaluationStatus
from mlmodelscope.operator.kube import connection_info
from mlmodelscope.operator.reconcile import PLURAL, Reconciler
from mlmodelscope.operator.settings import OperatorSettings

VERSION = "v1alpha1"
logger = logging.getLogger(__name__)


async def _guarded(step: Awaitable[Any], settings: OperatorSettings) -> None:
    try:
        await step
    except TransientError as e:
        raise kopf.TemporaryError(str(e), delay=settings.retry_delay_s) from e
    except KubeApiError as e:
        raise kopf.PermanentError(str(e)) from e


def _finished(status: dict[str, Any], generation: Any) -> bool:
    """Succeeded, or Failed for a reason a re-read cannot change (an unsatisfiable spec may become satisfiable
    when a Framework or Model is added, so that one is re-read)."""
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    phase = status.get("phase")
    done = phase == "Succeeded" or (phase == "Failed" and ready.get("reason") != "Unsatisfiable")
    return done and bool(status.get("observedGeneration") == generation)


def register(registry: kopf.OperatorRegistry, config: OperatorSettings, reconciler: Reconciler) -> None:
    """Register the operator's handlers on ``registry``."""

    @kopf.on.login(registry=registry)
    def login(*, settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any) -> Any:
        return connection_info(config, settings, logger)

    @kopf.on.resume(API_GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(API_GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(API_GROUP, VERSION, PLURAL, field="spec", registry=registry)
    async def evaluation_changed(*, namespace: str | None, name: str, **_: Any) -> None:
        await _guarded(reconciler.trigger(namespace or "", name), config)

    @kopf.timer(API_GROUP, VERSION, PLURAL, interval=config.reconcile_interval_s, registry=registry)
    async def resync(*, namespace: str | None, name: str, status: kopf.Status, meta: kopf.Meta, **_: Any) -> None:
        if not _finished(dict(status), meta.get("generation")):
            await _guarded(reconciler.trigger(namespace or "", name), config)

    @kopf.on.event(API_GROUP, VERSION, PLURAL, registry=registry)
    async def evaluation_event(*, type: str, namespace: str | None, name: str, uid: str, **_: Any) -> None:
        if type == "DELETED":
            deleted = await reconciler.cleanup(namespace or "", name, uid)
            logger.info("Evaluation %s/%s deleted: %d of its Jobs deleted", namespace, name, deleted)

    @kopf.on.event("batch", "v1", "jobs", labels={jobs.LABEL_EVALUATION: kopf.PRESENT}, registry=registry)
    async def job_event(*, type: str, namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
        if type in ("ADDED", "MODIFIED", "DELETED"):
            try:
                await reconciler.trigger(namespace or "", labels[jobs.LABEL_EVALUATION])
            except (TransientError, KubeApiError) as e:  # not retried by kopf: the timer reads it again
                logger.warning("reconcile after a Job event of %s failed: %s", namespace, e)


__all__ = ["VERSION", "EvaluationStatus", "register"]
