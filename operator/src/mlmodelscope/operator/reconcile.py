"""One reconcile pass of an Evaluation: read what exists, create what is missing, write the status.

Level-based and idempotent: a pass reads the Evaluation, plans its runs (deterministic Job names), reads each
unfinished run's Job, creates missing Jobs while fewer than ``parallelism`` are unfinished (409 means "already
there"), deletes Jobs a changed spec no longer plans, reads finished runs' results from the collector, and patches
the status only when it changed. Any trigger (create/update/resume, a Job event, the timer, an operator restart,
a replayed watch event) runs the same pass, so none of them can duplicate a Job.

Passes of one Evaluation never overlap (one lock each) and coalesce: a trigger that arrives while a pass is
already waiting to run returns at once, because that pass will see whatever changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from pydantic import ValidationError

from mlmodelscope.core.manifests.fields import API_GROUP, API_VERSION
from mlmodelscope.operator import catalog, jobs, planning, pods, status, suspension
from mlmodelscope.operator.errors import (
    CollectorUnavailableError,
    KubeApiError,
    KubeUnavailableError,
    UnsatisfiableError,
)
from mlmodelscope.operator.evaluation import EvaluationSpec, EvaluationStatus, RunStatus
from mlmodelscope.operator.kube import JsonObject, KubeClient
from mlmodelscope.operator.results import CollectedRun, RunResultReader
from mlmodelscope.operator.settings import OperatorSettings

PLURAL = "evaluations"
# How often, at most, a Job's pods (when the watch cache has none) and a namespace's Warning Events are asked for.
POD_RELIST_S = 10.0
logger = logging.getLogger(__name__)


def evaluation_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{API_VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


def jobs_path(namespace: str, name: str = "") -> str:
    base = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    return f"{base}/{name}" if name else base


def core_path(namespace: str, plural: str) -> str:
    """A core (v1) collection of a namespace: ``pods``, ``events``."""
    return f"/api/v1/namespaces/{namespace}/{plural}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _problems(error: ValidationError) -> str:
    """``field: why; ...`` (a rule of the whole spec, e.g. server without target_qps, has no field)."""
    parts = ((".".join(map(str, p["loc"])), str(p["msg"]).removeprefix("Value error, ")) for p in error.errors())
    return "; ".join(f"{where}: {why}" if where else why for where, why in parts)


def _previous_status(body: JsonObject) -> EvaluationStatus | None:
    raw = body.get("status") or {}
    known = {f.alias or n for n, f in EvaluationStatus.model_fields.items()}
    try:
        return EvaluationStatus.model_validate({k: v for k, v in raw.items() if k in known})
    except ValidationError:
        return None


@dataclass
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    queued: bool = False


@dataclass
class _Plan:
    runs: list[planning.PlannedRun]
    spec: EvaluationSpec


class Reconciler:
    """Reconciles Evaluations through the API (``kube``) and the collector. Records, per pass, its latency (from
    the trigger, including the wait for a pass of the same Evaluation) and its own duration."""

    def __init__(self, kube: KubeClient, collector: RunResultReader, settings: OperatorSettings) -> None:
        self.kube = kube
        self.collector = collector
        self.settings = settings
        self.latencies_s: list[float] = []
        self.passes_s: list[float] = []
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._plans: dict[tuple[str, int], _Plan] = {}
        self._settled: dict[tuple[str, str], bool] = {}
        self._jobs: dict[tuple[str, str], JsonObject] = {}
        self._pods: dict[tuple[str, str], dict[str, JsonObject]] = {}  # (namespace, Job) -> {pod name: pod}
        self._absent: set[tuple[str, str]] = set()
        self._pods_asked: dict[tuple[str, str], float] = {}  # (namespace, Job) -> when its pods were last listed
        self._warning_events: dict[str, tuple[float, asyncio.Task[list[JsonObject]]]] = {}
        self._context: contextvars.Context | None = None
        self._catalogs: dict[str, tuple[float, asyncio.Task[planning.Catalog]]] = {}

    def adopt_context(self) -> None:
        """Remember the context of a kopf handler: kopf's event queue lives in context variables that it sets only
        for its per-object tasks, and the resync loop's passes post Events too."""
        if self._context is None:
            self._context = contextvars.copy_context()

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

    async def _refresh_pods(self, namespace: str, name: str, found: list[JsonObject], now: datetime) -> None:
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

    async def _pod_observation(self, namespace: str, job: JsonObject, now: datetime) -> pods.PodObservation | None:
        """What the Job's pods say (``pods.observe``), from the watch's cache (``_refresh_pods`` filled the gaps).
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

    async def _job(self, namespace: str, name: str, *, fresh: bool) -> JsonObject | None:
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

    async def resync_forever(self, interval_s: float) -> None:
        """Every ``interval_s``, reconcile each Evaluation not yet settled (Job and collector changes that no event
        announced: results stored after the Job completed, a collector back after an outage, an unsatisfiable spec
        whose missing Framework or Model was added). kopf's timers would do this too, but they put a finalizer on
        every Evaluation, and then deleting one blocks whenever the operator is down."""
        while True:
            await asyncio.sleep(interval_s)
            pending = [key for key, settled in self._settled.items() if not settled]
            context = self._context
            tasks = [asyncio.create_task(self.trigger(*key), context=context) for key in pending]
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            for key, outcome in zip(pending, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    logger.warning("resync of Evaluation %s/%s failed (retried in %g s): %s", *key, interval_s, outcome)

    async def trigger(self, namespace: str, name: str) -> None:
        """Reconcile now, unless a pass of this Evaluation is already waiting to start (it will see this change)."""
        entry = self._entries.setdefault((namespace, name), _Entry())
        self._settled.setdefault((namespace, name), False)
        if entry.queued:
            return
        entry.queued = True
        started_s = time.perf_counter()
        async with entry.lock:
            entry.queued = False
            pass_started_s = time.perf_counter()
            await self.reconcile(namespace, name)
        ended_s = time.perf_counter()
        self.passes_s.append(ended_s - pass_started_s)
        self.latencies_s.append(ended_s - started_s)

    async def reconcile(self, namespace: str, name: str) -> None:
        body = await self.kube.get(evaluation_path(namespace, name))
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            self._settled.pop((namespace, name), None)
            return
        metadata = body["metadata"]
        uid, generation = str(metadata.get("uid") or ""), metadata.get("generation")
        previous = _previous_status(body)
        try:
            plan = await self._plan(body, namespace, name, uid, generation)
        except UnsatisfiableError as e:
            new = status.unsatisfiable_status(e.message, generation=generation, previous=previous, now=_now())
            self._settled[(namespace, name)] = False  # the missing piece may appear
            if await self._write_status(namespace, name, previous, new):
                _post(kopf.warn, body, "Unsatisfiable", e.message)
            return
        await self._converge(body, namespace, name, uid, generation, plan, previous)

    async def _plan(self, body: JsonObject, namespace: str, name: str, uid: str, generation: Any) -> _Plan:
        key = (uid, int(generation or 0))
        cached = self._plans.get(key)
        if cached is not None:
            return cached
        try:
            spec = EvaluationSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            raise UnsatisfiableError(f"invalid spec: {_problems(e)}.") from e
        if not uid:
            raise UnsatisfiableError("the Evaluation has no metadata.uid; Jobs could not be owned by it.")
        visible = await self._shared_catalog(namespace)
        release = self.settings.release_namespace
        if release and release != namespace:  # the namespace's own resources first, then the built-in catalog
            visible = visible.then(await self._shared_catalog(release))
        plan = _Plan(planning.plan(name, uid, spec, visible, self.settings), spec)
        self._plans[key] = plan
        return plan

    async def _shared_catalog(self, namespace: str) -> planning.Catalog:
        """The namespace's catalog, read at most once per ``catalog_ttl_s`` however many Evaluations plan at once
        (a hundred applied together share one read)."""
        now = time.monotonic()
        cached = self._catalogs.get(namespace)
        if (
            cached is None
            or now - cached[0] > self.settings.catalog_ttl_s
            or (cached[1].done() and cached[1].exception() is not None)
        ):
            cached = (now, asyncio.ensure_future(self._catalog(namespace)))
            self._catalogs[namespace] = cached
        return await asyncio.shield(cached[1])

    async def _catalog(self, namespace: str) -> planning.Catalog:
        listed = await asyncio.gather(
            *(self.kube.list(f"/apis/{API_VERSION}/namespaces/{namespace}/{plural}") for _, plural, _ in catalog.KINDS)
        )
        return planning.Catalog.from_objects(
            namespace, {kind: items for (kind, _, _), items in zip(catalog.KINDS, listed, strict=True)}
        )

    async def _converge(
        self,
        body: JsonObject,
        namespace: str,
        name: str,
        uid: str,
        generation: Any,
        plan: _Plan,
        previous: EvaluationStatus | None,
    ) -> None:
        bases = plan.runs
        counted = suspension.restarts(previous, bases)  # runs a suspension stopped run under new ids
        plan = replace(plan, runs=[suspension.restarted(r, counted.get(r.key, 0)) for r in plan.runs])
        same_generation = previous is not None and previous.observed_generation == generation
        # A finished run is final, and its run id digests everything it ran: a new generation keeps it when it still
        # plans that run id (spec.suspend, parallelism), even when the Job's TTL has deleted the Job since.
        known = (
            {r.run_id: r for r in previous.runs if same_generation or r.state in status.FINISHED} if previous else {}
        )
        if same_generation and previous is not None:
            known.update(await self._replan_changed(body, namespace, plan, previous))
        if not same_generation and int(generation or 1) > 1:  # generation 1 has no older plan to leave Jobs behind
            await self._delete_stale(namespace, name, uid, {r.job_name for r in plan.runs})
        unfinished = [
            r for r in plan.runs if known.get(r.run_id) is None or known[r.run_id].state not in status.FINISHED
        ]
        fresh = previous is None or not previous.runs
        observed = await asyncio.gather(*(self._job(namespace, r.job_name, fresh=fresh) for r in unfinished))
        found: dict[str, JsonObject | None] = {r.run_id: job for r, job in zip(unfinished, observed, strict=True)}
        stopped: set[str] = set()
        refused: dict[str, str] = {}
        if plan.spec.suspend:
            stopped = await self._suspend(body, namespace, found)
        else:
            refused = await self._create_missing(body, namespace, name, uid, plan, found)
        last_error = next(iter(refused.values()), "")
        collected: dict[str, CollectedRun | None] = {}
        for run in unfinished:
            job = found[run.run_id]
            if job is not None and status.job_state(job)[0] in status.FINISHED:
                try:
                    collected[run.run_id] = await self.collector.run(run.run_id)
                except CollectorUnavailableError as e:
                    last_error = e.message
        now = datetime.now(UTC)
        seen = [(r.run_id, job) for r in unfinished if (job := found[r.run_id]) is not None]
        await self._refresh_pods(namespace, name, [job for _, job in seen], now)
        observations = await asyncio.gather(*(self._pod_observation(namespace, job, now) for _, job in seen))
        pod_says = {run_id: o for (run_id, _), o in zip(seen, observations, strict=True)}
        runs: list[RunStatus] = []
        for run in plan.runs:
            if run.run_id in found:
                observed_pod = pod_says.get(run.run_id)
                current = status.run_status(run, found[run.run_id], collected.get(run.run_id), observed_pod)
                if run.run_id in refused:
                    current = current.model_copy(update={"message": refused[run.run_id][:2000]})
                runs.append(current)
            else:
                runs.append(known[run.run_id])
        runs = suspension.recorded(runs, stopped, bases, counted)
        jobs_exist = any(job is not None for job in found.values()) or bool(known)
        new = status.evaluation_status(
            runs,
            jobs_exist=jobs_exist,
            generation=generation,
            previous=previous,
            now=_now(),
            last_error=last_error,
            suspended=plan.spec.suspend,
        )
        self._settled[(namespace, name)] = new.phase in status.FINISHED
        if await self._write_status(namespace, name, previous, new):
            self._post_events(body, previous, new)
            before = {r.run_id: r.message for r in previous.runs} if previous is not None else {}
            for run_id, message in refused.items():  # once per new refusal, not once per retry
                if before.get(run_id) != message[:2000]:
                    _post(kopf.warn, body, "JobRefused", message)
        await self._delete_timed_out(namespace, name, plan, pod_says)

    async def _replan_changed(
        self, body: JsonObject, namespace: str, plan: _Plan, previous: EvaluationStatus
    ) -> dict[str, RunStatus]:
        """Runs of this same generation that the plan gives another run id than the status records: the plan was
        made again (an operator restart) after a Model, Framework or Dataset was edited. A run keeps its identity
        per matrix cell (its key): a finished one stays as recorded (its result, run id and spec_sha256: what it
        ran), returned keyed by the new plan's run id; an unfinished one's Job is deleted (it runs the old spec)
        and the run starts again under the new run id, with a ResourceChanged Warning Event naming what changed."""
        planned = {r.key: r for r in plan.runs}
        kept: dict[str, RunStatus] = {}
        for recorded in previous.runs:
            run = planned.get(recorded.name)
            if run is None or run.run_id == recorded.run_id:
                continue
            if recorded.state in status.FINISHED:
                kept[run.run_id] = recorded
                continue
            changed = [
                f"{kind} {getattr(run.resources, kind).name}"
                for kind, digest in sorted(run.spec_sha256.items())
                if recorded.spec_sha256.get(kind) != digest
            ]
            if recorded.job_name != run.job_name:
                await self.kube.delete(jobs_path(namespace, recorded.job_name))
                self.observe_job(namespace, recorded.job_name, None)
                self._absent.add((namespace, recorded.job_name))
            what = ", ".join(changed) or "its resolved resources"
            message = (
                f"run {run.key}: {what} changed since Job {recorded.job_name} was created; "
                f"that Job was deleted and the run starts again as {run.job_name}"
            )
            _post(kopf.warn, body, "ResourceChanged", message)
        return kept

    async def _delete_timed_out(
        self, namespace: str, name: str, plan: _Plan, pod_says: dict[str, pods.PodObservation | None]
    ) -> None:
        """Delete the Jobs of runs that stayed pending past ``pending_timeout_s``: their Failed state is written
        first (a finished run is never re-planned, so the Job is not recreated), then the Job and its pod go."""
        for run in plan.runs:
            observation = pod_says.get(run.run_id)
            if observation is not None and observation.timed_out:
                await self.kube.delete(jobs_path(namespace, run.job_name))
                self.observe_job(namespace, run.job_name, None)
                self._absent.add((namespace, run.job_name))
                logger.info(
                    "deleted Job %s/%s of Evaluation %s: %s", namespace, run.job_name, name, observation.message
                )

    async def _create_missing(
        self, body: JsonObject, namespace: str, name: str, uid: str, plan: _Plan, found: dict[str, JsonObject | None]
    ) -> dict[str, str]:
        """Create the Jobs of missing runs while slots are free. Returns the run ids whose create the API refused
        for good (4xx other than 409/429), with the API's message: those runs stay Pending with it and are tried
        again on the next pass (a granted permission or a freed quota lets them start); other runs go on."""
        refused: dict[str, str] = {}
        active = sum(1 for job in found.values() if job is not None and status.job_state(job)[0] not in status.FINISHED)
        slots = max(0, plan.spec.parallelism - active)
        missing = [r for r in plan.runs if r.run_id in found and found[r.run_id] is None][:slots]
        if not missing:
            return refused
        evaluation_id = f"{namespace}/{name}"

        async def create(run: planning.PlannedRun) -> None:
            spec_json = jobs.run_spec(run, evaluation_id, plan.spec, self.settings).model_dump_json()
            manifest = jobs.build_job(
                run,
                evaluation=name,
                namespace=namespace,
                uid=uid,
                spec=plan.spec,
                settings=self.settings,
                run_spec_json=spec_json,
            )
            try:
                job, created = await self.kube.create(jobs_path(namespace), manifest)
            except KubeUnavailableError:
                raise  # 5xx, 429, timeouts: kopf retries the pass
            except KubeApiError as e:  # refused for good (403 RBAC/admission, 422 Invalid, quota): said, not raised
                refused[run.run_id] = f"the API server refused the Job: {e.message}"
                return
            found[run.run_id] = job
            self._absent.discard((namespace, run.job_name))
            self._jobs.setdefault((namespace, run.job_name), job)
            if created:
                _post(kopf.info, body, "JobCreated", f"run {run.key}: Job {run.job_name}")

        await asyncio.gather(*(create(r) for r in missing))
        return refused

    async def _suspend(self, body: JsonObject, namespace: str, found: dict[str, JsonObject | None]) -> set[str]:
        """spec.suspend: delete the Jobs of unfinished runs (their pods go too; the runs are Pending again and run,
        as a restart, when suspend is false). A finished Job is kept: its run's result is read as usual. Returns
        the run ids whose Job it deleted."""
        stopped = set()
        for run_id, job in found.items():
            if job is None or status.job_state(job)[0] in status.FINISHED:
                continue
            job_name = str(job["metadata"]["name"])
            await self.kube.delete(jobs_path(namespace, job_name))
            self.observe_job(namespace, job_name, None)
            self._absent.add((namespace, job_name))
            found[run_id] = None
            stopped.add(run_id)
            _post(kopf.info, body, "JobDeleted", f"Job {job_name}: spec.suspend is true")
        return stopped

    async def _delete_stale(self, namespace: str, name: str, uid: str, keep: set[str]) -> None:
        for job in await self.owned_jobs(namespace, name, uid):
            job_name = job["metadata"]["name"]
            if job_name not in keep:
                await self.kube.delete(jobs_path(namespace, job_name))
                self.observe_job(namespace, job_name, None)
                self._absent.add((namespace, job_name))
                logger.info(
                    "deleted Job %s/%s: the changed spec of Evaluation %s no longer plans it", namespace, job_name, name
                )

    async def owned_jobs(self, namespace: str, name: str, uid: str) -> list[JsonObject]:
        """The Jobs of this Evaluation (selected by label; filtered here too, for servers that ignore selectors)."""
        items = await self.kube.list(jobs_path(namespace), label_selector=f"{jobs.LABEL_EVALUATION}={name}")
        owned = []
        for job in items:
            metadata = job.get("metadata") or {}
            owners = metadata.get("ownerReferences") or []
            if (metadata.get("labels") or {}).get(jobs.LABEL_EVALUATION) == name and any(
                o.get("uid") == uid for o in owners
            ):
                owned.append(job)
        return owned

    async def cleanup(self, namespace: str, name: str, uid: str) -> int:
        """Delete the Jobs of a deleted Evaluation (Kubernetes' garbage collector does it too, via the owner
        references; this is for clusters without it, and makes it immediate). Returns how many were deleted."""
        self._entries.pop((namespace, name), None)
        self._settled.pop((namespace, name), None)
        for key in [k for k in self._plans if k[0] == uid]:
            del self._plans[key]
        deleted = 0
        for job in await self.owned_jobs(namespace, name, uid):
            with contextlib.suppress(Exception):
                deleted += int(await self.kube.delete(jobs_path(namespace, job["metadata"]["name"])))
            self.observe_job(namespace, job["metadata"]["name"], None)
        return deleted

    async def _write_status(
        self, namespace: str, name: str, previous: EvaluationStatus | None, new: EvaluationStatus
    ) -> bool:
        if previous == new:
            return False
        document = new.model_dump(mode="json", by_alias=True)
        await self.kube.merge_patch(f"{evaluation_path(namespace, name)}/status", {"status": document})
        return True

    def _post_events(self, body: JsonObject, previous: EvaluationStatus | None, new: EvaluationStatus) -> None:
        before = {r.run_id: r.state for r in previous.runs} if previous is not None else {}
        for run in new.runs:
            if run.state in status.FINISHED and before.get(run.run_id) != run.state:
                if run.state == "Succeeded":
                    _post(kopf.info, body, "RunSucceeded", f"run {run.name}: {_summary(run)}")
                else:
                    _post(kopf.warn, body, "RunFailed", f"run {run.name}: {run.message}")
        if previous is None or previous.phase != new.phase:
            post = kopf.warn if new.phase == "Failed" else kopf.info
            _post(post, body, f"Evaluation{new.phase}", f"{new.progress} runs finished, {new.valid} valid")


def _post(post: Any, raw: JsonObject, reason: str, message: str) -> None:
    """Post a Kubernetes Event through kopf (queued; kopf retries and logs failures itself)."""
    try:
        post(kopf.Body(cast(Any, raw)), reason=reason, message=message[:1000])
    except LookupError:  # outside the operator's context (no posting queue): the log line is enough
        logger.info("%s: %s", reason, message)


def _summary(run: RunStatus) -> str:
    result = run.result
    if result is None:
        return "no result"
    verdict = "VALID" if result.valid else "INVALID"
    accuracy = f"{result.accuracy_metric} {result.accuracy_value}" if result.accuracy_metric else "no accuracy run"
    return f"{verdict}, p99 {result.p99_ms} ms, {result.throughput_samples_per_s} samples/s, {accuracy}"


__all__ = ["API_GROUP", "PLURAL", "Reconciler", "evaluation_path", "jobs_path"]
