"""What the operator knows of its Jobs and their pods: the watch's cache, filled in from the API where it lags.

Passes read Jobs and pods from here, as an informer's cache, and ask the API only for what the watch has not
reported yet (a Job never seen, the pods of a Job old enough to have one) and for the Warning Events that explain
a stuck pod, each at most every ``POD_RELIST_S``: however many Evaluations pass at once, the requests stay few.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from mlmodelscope.operator import jobs, pods
from mlmodelscope.operator.kube import JsonObject, KubeClient
from mlmodelscope.operator.paths import core_path, jobs_path
from mlmodelscope.operator.settings import OperatorSettings

# How often, at most, a Job's pods (when the watch cache has none) and a namespace's Warning Events are asked for.
POD_RELIST_S = 10.0


class ObservedJobs:
    """The operator's Jobs and their pods as the watch reported them, keyed by (namespace, Job name)."""

    def __init__(self, kube: KubeClient, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        self._jobs: dict[tuple[str, str], JsonObject] = {}
        self._pods: dict[tuple[str, str], dict[str, JsonObject]] = {}  # (namespace, Job) -> {pod name: pod}
        self._absent: set[tuple[str, str]] = set()
        self._pods_asked: dict[tuple[str, str], float] = {}  # (namespace, Job) -> when its pods were last listed
        self._warning_events: dict[str, tuple[float, asyncio.Task[list[JsonObject]]]] = {}

    def observe_job(self, namespace: str, name: str, body: JsonObject | None) -> None:
        """Record a Job as the watch reported it (None: deleted). Passes read Jobs from here, as an informer's
        cache, and ask the API only for Jobs never seen (the watch has not caught up, e.g. right after a start)."""
        if body is None:
            self._jobs.pop((namespace, name), None)
            self._pods.pop((namespace, name), None)
            self._pods_asked.pop((namespace, name), None)
        else:
            self._jobs[(namespace, name)] = body
            self._absent.discard((namespace, name))

    def observe_pod(self, namespace: str, body: JsonObject, *, deleted: bool) -> str | None:
        """Record a pod of one of the operator's Jobs as the watch reported it; returns its Job's name (None: not
        a Job's pod)."""
        job_name = pods.job_name_of(body)
        pod_name = str((body.get("metadata") or {}).get("name") or "")
        if job_name is None or not pod_name:
            return None
        if deleted:
            self._pods.get((namespace, job_name), {}).pop(pod_name, None)
        else:
            self._pods.setdefault((namespace, job_name), {})[pod_name] = body
        return job_name

    def created(self, namespace: str, name: str, job: JsonObject) -> None:
        """Record a Job this operator created (or found there, 409) before the watch reports it."""
        self._absent.discard((namespace, name))
        self._jobs.setdefault((namespace, name), job)

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job (its pods go too) and remember it as absent: only this operator creates these Jobs."""
        await self.kube.delete(jobs_path(namespace, name))
        self.observe_job(namespace, name, None)
        self._absent.add((namespace, name))

    async def job(self, namespace: str, name: str, *, fresh: bool) -> JsonObject | None:
        """The Job from the watch; else from the API once (only this operator creates these Jobs, so one that was
        not there stays absent until it creates it). A fresh Evaluation (no run in its status yet) has no Jobs
        unless a previous operator died between creating them and writing the status: then the create answers
        409 with the existing Job, and since runs start in matrix order these are the same first ``parallelism``
        runs, so nothing is duplicated and the limit holds."""
        key = (namespace, name)
        cached = self._jobs.get(key)
        if cached is not None or key in self._absent:
            return cached
        job = None if fresh else await self.kube.get(jobs_path(namespace, name))
        if job is None:
            self._absent.add(key)
        return job

    async def refresh_pods(self, namespace: str, name: str, found: list[JsonObject], now: datetime) -> None:
        """Ask the API for pods the watch cache lacks: once per pass for the whole Evaluation (one list by its
        label), only when a Job old enough to have a pod (``pods.NO_POD_GRACE_S`` since it started, none active)
        has none cached, and at most every ``POD_RELIST_S`` per Job (the watch catches up on its own)."""
        clock = time.monotonic()
        due = [
            key
            for job in found
            if not self._pods.get(key := (namespace, str(job["metadata"]["name"])))
            and pods.events_needed(job, [], now) is not None
            and clock - self._pods_asked.get(key, -POD_RELIST_S) >= POD_RELIST_S
        ]
        if not due:
            return
        for key in due:
            self._pods_asked[key] = clock
        listed = await self.kube.list(core_path(namespace, "pods"), label_selector=f"{jobs.LABEL_EVALUATION}={name}")
        for pod in listed:
            self.observe_pod(namespace, pod, deleted=False)

    async def pod_observation(self, namespace: str, job: JsonObject, now: datetime) -> pods.PodObservation | None:
        """What the Job's pods say (``pods.observe``), from the watch's cache (``refresh_pods`` filled the gaps).
        Events only when the pods' status does not explain a Pending pod or a missing one (``_warnings``)."""
        name = str(job["metadata"]["name"])
        found = list(self._pods.get((namespace, name), {}).values())
        events = await self._warnings(namespace) if pods.events_needed(job, found, now) is not None else []
        return pods.observe(job, found, events, now=now, pending_timeout_s=self.settings.pending_timeout_s)

    async def _warnings(self, namespace: str) -> list[JsonObject]:
        """The namespace's Warning Events (``pods.observe`` picks those about its pod or Job), read at most every
        ``POD_RELIST_S`` however many Jobs need explaining: one request per namespace, not one per Job."""
        now = time.monotonic()
        cached = self._warning_events.get(namespace)
        if cached is None or now - cached[0] > POD_RELIST_S or (cached[1].done() and cached[1].exception()):
            read = self.kube.list(core_path(namespace, "events"), field_selector="type=Warning")
            cached = (now, asyncio.ensure_future(read))
            self._warning_events[namespace] = cached
        return await asyncio.shield(cached[1])
