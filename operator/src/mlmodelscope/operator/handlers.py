"""The kopf handlers: thin triggers of one reconcile pass, registered on a registry made per operator run.

Every handler ends in ``Reconciler.trigger`` (or ``cleanup``), so their order, repetition or replay cannot change
the outcome. Errors are translated by type: transient API or collector failures become ``kopf.TemporaryError``
(kopf retries after ``retry_delay_s``), other API refusals ``kopf.PermanentError``; an unsatisfiable spec is
not an error here at all (the pass writes a Failed status). Watch events of Jobs and of their Pods (the pods say
why a run is stuck: unschedulable, image pull failing) are not retried by kopf; the reconciler's resync loop
(started at startup) is the safety net that re-reads every unsettled Evaluation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping
from typing import Any

import kopf

from mlmodelscope.core.errors import TransientError
from mlmodelscope.core.manifests.fields import API_GROUP
from mlmodelscope.operator import jobs
from mlmodelscope.operator.errors import KubeApiError
from mlmodelscope.operator.evaluation import EvaluationStatus
from mlmodelscope.operator.kube import connection_info
from mlmodelscope.operator.paths import PLURAL
from mlmodelscope.operator.reconcile import Reconciler
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


def register(registry: kopf.OperatorRegistry, config: OperatorSettings, reconciler: Reconciler) -> None:
    """Register the operator's handlers on ``registry``."""

    @kopf.on.login(registry=registry)
    def login(*, settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any) -> Any:
        return connection_info(config, settings, logger)

    @kopf.on.resume(API_GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(API_GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(API_GROUP, VERSION, PLURAL, field="spec", registry=registry)
    async def evaluation_changed(*, namespace: str | None, name: str, **_: Any) -> None:
        reconciler.adopt_context()
        await _guarded(reconciler.trigger(namespace or "", name), config)

    @kopf.on.startup(registry=registry)
    async def start_resync(memo: kopf.Memo, **_: Any) -> None:
        # Created here so that the task inherits kopf's context (event posting).
        memo["resync"] = asyncio.create_task(reconciler.resync_forever(config.reconcile_interval_s))

    @kopf.on.cleanup(registry=registry)
    async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
        task = memo.get("resync")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @kopf.on.event(API_GROUP, VERSION, PLURAL, registry=registry)
    async def evaluation_event(*, type: str, namespace: str | None, name: str, uid: str, **_: Any) -> None:
        if type == "DELETED":
            deleted = await reconciler.cleanup(namespace or "", name, uid)
            logger.info("Evaluation %s/%s deleted: %d of its Jobs deleted", namespace, name, deleted)

    @kopf.on.event("batch", "v1", "jobs", labels={jobs.LABEL_EVALUATION: kopf.PRESENT}, registry=registry)
    async def job_event(
        *, type: str, event: Any, namespace: str | None, name: str, labels: Mapping[str, str], **_: Any
    ) -> None:
        reconciler.adopt_context()
        reconciler.observed.observe_job(namespace or "", name, None if type == "DELETED" else dict(event["object"]))
        try:
            await reconciler.trigger(namespace or "", labels[jobs.LABEL_EVALUATION])
        except (TransientError, KubeApiError) as e:  # not retried by kopf: the resync loop reads it again
            logger.warning("reconcile after a Job event of %s failed: %s", namespace, e)

    # The Jobs' pods carry the pod template's labels, the operator's own among them (set on every Job it creates).
    @kopf.on.event("v1", "pods", labels={jobs.LABEL_EVALUATION: kopf.PRESENT}, registry=registry)
    async def pod_event(*, type: str, event: Any, namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
        reconciler.adopt_context()
        if reconciler.observed.observe_pod(namespace or "", dict(event["object"]), deleted=type == "DELETED") is None:
            return
        try:
            await reconciler.trigger(namespace or "", labels[jobs.LABEL_EVALUATION])
        except (TransientError, KubeApiError) as e:  # not retried by kopf: the resync loop reads it again
            logger.warning("reconcile after a pod event of %s failed: %s", namespace, e)


__all__ = ["VERSION", "EvaluationStatus", "register"]
