"""One reconcile pass of an Evaluation: read what exists, create what is missing, write the status.

Level-based and idempotent: a pass reads the Evaluation, plans its runs (deterministic Job names), reads each
unfinished run's Job, creates missing Jobs while fewer than ``parallelism`` are unfinished (409 means "already
there"), deletes Jobs a changed spec no longer plans, reads finished runs' results from the collector, and patches
the status only when it changed. Any trigger (create/update/resume, a Job event, the timer, an operator restart,
a replayed watch event) runs the same pass, so none of them can duplicate a Job.

Passes of one Evaluation never overlap (one lock each) and coalesce: a trigger that arrives while a pass is
already waiting to run returns at once, because that pass will see whatever changed. What a pass reads is cached
beside it: the Jobs and pods in ``observed`` (the watch's cache), the plans and catalogs in ``plan_cache``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import kopf

from mlmodelscope.operator import events, jobs, planning, pods, status, suspension
from mlmodelscope.operator.errors import (
    KubeApiError,
    KubeUnavailableError,
    ResultsUnavailableError,
    UnsatisfiableError,
)
from mlmodelscope.operator.evaluation import EvaluationStatus, RunStatus
from mlmodelscope.operator.kube import JsonObject, KubeClient
from mlmodelscope.operator.observed import ObservedJobs
from mlmodelscope.operator.paths import evaluation_path, jobs_path
from mlmodelscope.operator.plan_cache import Plan, Planner
from mlmodelscope.operator.results import CollectedRun, RunResultReader
from mlmodelscope.operator.settings import OperatorSettings

logger = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _Evaluation:
    """The Evaluation one pass reconciles, as the pass read it."""

    body: JsonObject
    namespace: str
    name: str
    uid: str
    generation: Any
    previous: EvaluationStatus | None


@dataclass
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    queued: bool = False


class Reconciler:
    """Reconciles Evaluations through the API (``kube``) and the collector. Records, per pass, its latency (from
    the trigger, including the wait for a pass of the same Evaluation) and its own duration."""

    def __init__(self, kube: KubeClient, collector: RunResultReader, settings: OperatorSettings) -> None:
        self.kube = kube
        self.collector = collector
        self.settings = settings
        self.latencies_s: list[float] = []
        self.passes_s: list[float] = []
        self.observed = ObservedJobs(kube, settings)
        self.planner = Planner(kube, settings)
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._settled: dict[tuple[str, str], bool] = {}
        self._context: contextvars.Context | None = None

    def adopt_context(self) -> None:
        """Remember the context of a kopf handler: kopf's event queue lives in context variables that it sets only
        for its per-object tasks, and the resync loop's passes post Events too."""
        if self._context is None:
            self._context = contextvars.copy_context()

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
        previous = status.previous_status(body)
        try:
            plan = await self.planner.plan(body, namespace, name, uid, generation)
        except UnsatisfiableError as e:
            new = status.unsatisfiable_status(e.message, generation=generation, previous=previous, now=_now())
            self._settled[(namespace, name)] = False  # the missing piece may appear
            if await self._write_status(namespace, name, previous, new):
                events.post(kopf.warn, body, "Unsatisfiable", e.message)
            return
        await self._converge(_Evaluation(body, namespace, name, uid, generation, previous), plan)

    async def _converge(self, evaluation: _Evaluation, plan: Plan) -> None:
        body, namespace, name, previous = evaluation.body, evaluation.namespace, evaluation.name, evaluation.previous
        bases = plan.runs
        counted = suspension.restarts(previous, bases)  # runs a suspension stopped run under new ids
        plan = replace(plan, runs=[suspension.restarted(r, counted.get(r.key, 0)) for r in plan.runs])
        known = await self._known_runs(evaluation, plan)
        unfinished = [
            r for r in plan.runs if known.get(r.run_id) is None or known[r.run_id].state not in status.FINISHED
        ]
        fresh = previous is None or not previous.runs
        observed = await asyncio.gather(*(self.observed.job(namespace, r.job_name, fresh=fresh) for r in unfinished))
        found: dict[str, JsonObject | None] = {r.run_id: job for r, job in zip(unfinished, observed, strict=True)}
        stopped: set[str] = set()
        refused: dict[str, str] = {}
        if plan.spec.suspend:
            stopped = await self._suspend(body, namespace, found)
        else:
            refused = await self._create_missing(body, namespace, name, evaluation.uid, plan, found)
        collected, collector_error = await self._collect(unfinished, found)
        last_error = collector_error if collector_error is not None else next(iter(refused.values()), "")
        pod_says = await self._pod_observations(namespace, name, unfinished, found)
        runs = status.run_statuses(plan.runs, found, known, collected, pod_says, refused)
        runs = suspension.recorded(runs, stopped, bases, counted)
        jobs_exist = any(job is not None for job in found.values()) or bool(known)
        new = status.evaluation_status(
            runs,
            jobs_exist=jobs_exist,
            generation=evaluation.generation,
            previous=previous,
            now=_now(),
            last_error=last_error,
            suspended=plan.spec.suspend,
        )
        self._settled[(namespace, name)] = new.phase in status.FINISHED
        if await self._write_status(namespace, name, previous, new):
            events.post_status_changes(body, previous, new)
            _post_new_refusals(body, previous, refused)
        await self._delete_timed_out(namespace, name, plan, pod_says)

    async def _known_runs(self, evaluation: _Evaluation, plan: Plan) -> dict[str, RunStatus]:
        """The recorded runs this pass keeps as they are, by run id; Jobs of an older plan that this one no longer
        has are deleted on the way."""
        previous, generation = evaluation.previous, evaluation.generation
        same_generation = previous is not None and previous.observed_generation == generation
        # A finished run is final, and its run id digests everything it ran: a new generation keeps it when it still
        # plans that run id (spec.suspend, parallelism), even when the Job's TTL has deleted the Job since.
        known = (
            {r.run_id: r for r in previous.runs if same_generation or r.state in status.FINISHED} if previous else {}
        )
        if same_generation and previous is not None:
            known.update(await self._replan_changed(evaluation.body, evaluation.namespace, plan, previous))
        if not same_generation and int(generation or 1) > 1:  # generation 1 has no older plan to leave Jobs behind
            await self._delete_stale(
                evaluation.namespace, evaluation.name, evaluation.uid, {r.job_name for r in plan.runs}
            )
        return known

    async def _collect(
        self, unfinished: list[planning.PlannedRun], found: dict[str, JsonObject | None]
    ) -> tuple[dict[str, CollectedRun | None], str | None]:
        """The collector's results of the runs whose Job finished, and the last error it answered (None: none)."""
        collected: dict[str, CollectedRun | None] = {}
        error: str | None = None
        for run in unfinished:
            job = found[run.run_id]
            if job is not None and status.job_state(job)[0] in status.FINISHED:
                try:
                    collected[run.run_id] = await self.collector.run(run.run_id)
                except ResultsUnavailableError as e:
                    error = e.message
        return collected, error

    async def _pod_observations(
        self, namespace: str, name: str, unfinished: list[planning.PlannedRun], found: dict[str, JsonObject | None]
    ) -> dict[str, pods.PodObservation | None]:
        """What the pods of each existing Job say, by run id."""
        now = datetime.now(UTC)
        seen = [(r.run_id, job) for r in unfinished if (job := found[r.run_id]) is not None]
        await self.observed.refresh_pods(namespace, name, [job for _, job in seen], now)
        observations = await asyncio.gather(*(self.observed.pod_observation(namespace, job, now) for _, job in seen))
        return {run_id: o for (run_id, _), o in zip(seen, observations, strict=True)}

    async def _replan_changed(
        self, body: JsonObject, namespace: str, plan: Plan, previous: EvaluationStatus
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
                await self.observed.delete_job(namespace, recorded.job_name)
            what = ", ".join(changed) or "its resolved resources"
            message = (
                f"run {run.key}: {what} changed since Job {recorded.job_name} was created; "
                f"that Job was deleted and the run starts again as {run.job_name}"
            )
            events.post(kopf.warn, body, "ResourceChanged", message)
        return kept

    async def _delete_timed_out(
        self, namespace: str, name: str, plan: Plan, pod_says: dict[str, pods.PodObservation | None]
    ) -> None:
        """Delete the Jobs of runs that stayed pending past ``pending_timeout_s``: their Failed state is written
        first (a finished run is never re-planned, so the Job is not recreated), then the Job and its pod go."""
        for run in plan.runs:
            observation = pod_says.get(run.run_id)
            if observation is not None and observation.timed_out:
                await self.observed.delete_job(namespace, run.job_name)
                logger.info(
                    "deleted Job %s/%s of Evaluation %s: %s", namespace, run.job_name, name, observation.message
                )

    async def _create_missing(
        self, body: JsonObject, namespace: str, name: str, uid: str, plan: Plan, found: dict[str, JsonObject | None]
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
            self.observed.created(namespace, run.job_name, job)
            if created:
                events.post(kopf.info, body, "JobCreated", f"run {run.key}: Job {run.job_name}")

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
            await self.observed.delete_job(namespace, job_name)
            found[run_id] = None
            stopped.add(run_id)
            events.post(kopf.info, body, "JobDeleted", f"Job {job_name}: spec.suspend is true")
        return stopped

    async def _delete_stale(self, namespace: str, name: str, uid: str, keep: set[str]) -> None:
        for job in await self.owned_jobs(namespace, name, uid):
            job_name = job["metadata"]["name"]
            if job_name not in keep:
                await self.observed.delete_job(namespace, job_name)
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
        self.planner.forget(uid)
        deleted = 0
        for job in await self.owned_jobs(namespace, name, uid):
            with contextlib.suppress(Exception):
                deleted += int(await self.kube.delete(jobs_path(namespace, job["metadata"]["name"])))
            self.observed.observe_job(namespace, job["metadata"]["name"], None)
        return deleted

    async def _write_status(
        self, namespace: str, name: str, previous: EvaluationStatus | None, new: EvaluationStatus
    ) -> bool:
        if previous == new:
            return False
        document = new.model_dump(mode="json", by_alias=True)
        await self.kube.merge_patch(f"{evaluation_path(namespace, name)}/status", {"status": document})
        return True


def _post_new_refusals(body: JsonObject, previous: EvaluationStatus | None, refused: dict[str, str]) -> None:
    """A JobRefused Warning once per new refusal, not once per retry."""
    before = {r.run_id: r.message for r in previous.runs} if previous is not None else {}
    for run_id, message in refused.items():
        if before.get(run_id) != message[: status.RUN_MESSAGE_CHARS]:
            events.post(kopf.warn, body, "JobRefused", message)


__all__ = ["Reconciler"]
