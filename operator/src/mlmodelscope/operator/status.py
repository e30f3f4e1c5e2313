"""The Evaluation's status from what is observed: each run's Job and the collector's record of it (pure).

A run is Pending (no Job yet, or suspended until Kueue admits it), Running (a pod is active, or the Job is complete
but the collector has not stored the whole result yet), Succeeded (Job complete and result stored) or Failed (the
Job failed: retries exhausted, deadline exceeded; or the agent reported the evaluation failed, or cancelled: a
cancelled run is Failed with a message starting ``cancelled:``). The Evaluation is
Succeeded when every run is, Failed when every run finished and one failed (or the spec is unsatisfiable),
Suspended while ``spec.suspend`` holds unfinished runs back, Running once any Job exists, Pending before.
``Ready`` says whether it finished well; ``Succeeded`` and ``Failed`` are the terminal conditions
(``kubectl wait --for=condition=Failed`` returns once it is over); ``ResultValid`` whether every run's LoadGen
verdict is VALID, naming the runs that are not and why. Every condition carries the generation it describes.
``startTime`` is when the first Job appeared, ``completionTime`` when the phase became terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mlmodelscope.operator.evaluation import (
    Condition,
    ConditionStatus,
    EvaluationStatus,
    Phase,
    RunState,
    RunStatus,
)
from mlmodelscope.operator.planning import PlannedRun
from mlmodelscope.operator.pods import PodObservation
from mlmodelscope.operator.results import CollectedRun

FINISHED: tuple[RunState, ...] = ("Succeeded", "Failed")
# A run's status message is cut to this many characters (an API server's refusal can be long).
RUN_MESSAGE_CHARS = 2000


def previous_status(body: dict[str, Any]) -> EvaluationStatus | None:
    """The status an Evaluation carries, as far as this operator knows its fields (None: none it can read)."""
    raw = body.get("status") or {}
    known = {f.alias or n for n, f in EvaluationStatus.model_fields.items()}
    try:
        return EvaluationStatus.model_validate({k: v for k, v in raw.items() if k in known})
    except ValidationError:
        return None


def job_state(job: dict[str, Any] | None) -> tuple[RunState, int, str]:
    """(state, attempts, message) of a Job as the Job controller reports it."""
    if job is None:
        return "Pending", 0, ""
    status = job.get("status") or {}
    attempts = sum(int(status.get(k) or 0) for k in ("active", "succeeded", "failed"))
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "Succeeded", attempts, ""
        if condition.get("type") == "Failed":
            why = ": ".join(p for p in (condition.get("reason"), condition.get("message")) if p)
            return "Failed", attempts, f"Job failed ({why})" if why else "Job failed"
    if int(status.get("succeeded") or 0) > 0 and not status.get("conditions"):
        return "Succeeded", attempts, ""
    if (job.get("spec") or {}).get("suspend") and not status.get("active"):
        return "Pending", attempts, "suspended until Kueue admits the Job"
    return "Running", attempts, ""


def run_status(
    run: PlannedRun,
    job: dict[str, Any] | None,
    collected: CollectedRun | None,
    pod: PodObservation | None = None,
) -> RunStatus:
    """The run from its Job, the collector's record and what its pods say (``pods.observe``): a stuck pod's
    reason replaces the Job's "Running" (or fails the run after the pending timeout); an OOM kill is added to
    the Job's failure."""
    state, attempts, message = job_state(job)
    if pod is not None and state not in FINISHED:
        state, message = pod.state or state, pod.message or message
    elif pod is not None and state == "Failed" and pod.message:
        message = f"{message}; {pod.message}"
    result = collected.result if collected is not None else None
    if collected is not None and collected.status == "cancelled":
        # The agent got SIGTERM (pod deleted, node drained) and published what it had: the collector's record is
        # final (a finished run is never rewritten), so the run is finished, whatever its Job does next.
        state, message = "Failed", _cancelled_message(collected.error)
    elif state == "Succeeded" and collected is not None and collected.status == "failed":
        state, message = "Failed", f"the evaluation failed: {collected.error}"
    elif state == "Succeeded" and result is None:
        state, message = "Running", "Job complete; waiting for the collector to store the result"
    elif state == "Failed" and collected is not None and collected.error:
        message = f"{message}; agent: {collected.error}"
    return RunStatus(
        name=run.key,
        model=run.model,
        framework=run.framework,
        arch=run.arch,
        accelerator=run.accelerator,
        batch_size=run.batch_size,
        repetition=run.repetition,
        run_id=run.run_id,
        job_name=run.job_name,
        state=state,
        attempts=attempts,
        message=message[:2000],
        spec_sha256=dict(run.spec_sha256),
        result=result if state == "Succeeded" else None,
    )


def run_statuses(
    planned: Sequence[PlannedRun],
    found: dict[str, dict[str, Any] | None],
    known: dict[str, RunStatus],
    collected: dict[str, CollectedRun | None],
    pod_says: dict[str, PodObservation | None],
    refused: dict[str, str],
) -> list[RunStatus]:
    """Every planned run's status: from its Job (``found``), result and pods when this pass observed it, else as
    recorded (``known``); a run whose Job the API refused carries the refusal as its message."""
    runs: list[RunStatus] = []
    for run in planned:
        if run.run_id not in found:
            runs.append(known[run.run_id])
            continue
        current = run_status(run, found[run.run_id], collected.get(run.run_id), pod_says.get(run.run_id))
        if run.run_id in refused:
            current = current.model_copy(update={"message": refused[run.run_id][:RUN_MESSAGE_CHARS]})
        runs.append(current)
    return runs


def _cancelled_message(error: str) -> str:
    """``cancelled: ...`` whatever the agent wrote (its error already starts so; an empty one gets the reason)."""
    if not error:
        return "cancelled: the agent was stopped (SIGTERM) before the run finished"
    return error if error.startswith("cancelled") else f"cancelled: {error}"


SUSPENDED = "suspended"
"""The message of a run whose Job ``spec.suspend`` deleted (or never created)."""


@dataclass(frozen=True)
class _Now:
    """When this status is computed, what came before it, and the generation it describes."""

    at: str
    previous: EvaluationStatus | None
    generation: int | None

    def condition(self, kind: str, status: ConditionStatus, reason: str, message: str) -> Condition:
        old = next((c for c in (self.previous.conditions if self.previous else []) if c.type == kind), None)
        since = old.last_transition_time if old is not None and old.status == status else self.at
        return Condition(
            type=kind,
            status=status,
            reason=reason,
            message=message[:2000],
            observed_generation=self.generation,
            last_transition_time=since,
        )

    def terminal(self, phase: Phase, reason: str, message: str) -> list[Condition]:
        """``Succeeded`` and ``Failed``: True once the phase is, False (with the reason it is not yet) before."""
        return [
            self.condition(kind, "True" if phase == kind else "False", reason, message)
            for kind in ("Succeeded", "Failed")
        ]

    def times(self, phase: Phase, *, started: bool) -> tuple[str | None, str | None]:
        """(startTime, completionTime): the start kept once set; the completion kept while the phase stays the
        same terminal one, and cleared while it is not terminal (a changed spec reopened it)."""
        before = self.previous or EvaluationStatus()
        start = before.start_time or (self.at if started else None)
        if phase not in FINISHED:
            return start, None
        return start, (before.completion_time if before.phase == phase else None) or self.at


def _phase(runs: Sequence[RunStatus], jobs_exist: bool, suspended: bool) -> Phase:
    if runs and all(r.state == "Succeeded" for r in runs):
        return "Succeeded"
    if runs and all(r.state in FINISHED for r in runs):
        return "Failed"
    if suspended:
        return "Suspended"
    return "Running" if jobs_exist else "Pending"


def evaluation_status(
    runs: Sequence[RunStatus],
    *,
    jobs_exist: bool,
    generation: int | None,
    previous: EvaluationStatus | None,
    now: str,
    last_error: str = "",
    suspended: bool = False,
) -> EvaluationStatus:
    """The status of an Evaluation whose runs are ``runs`` (``suspended``: spec.suspend is true, so unfinished
    runs have no Job and say so)."""
    clock = _Now(now, previous, generation)
    if suspended:
        runs = [r.model_copy(update={"message": SUSPENDED}) if r.state == "Pending" else r for r in runs]
    phase = _phase(runs, jobs_exist, suspended)
    finished = sum(1 for r in runs if r.state in FINISHED)
    failed = [r for r in runs if r.state == "Failed"]
    valid = [r for r in runs if r.result is not None and r.result.valid]
    invalid = [r for r in runs if r.result is not None and r.result.valid is False]
    if phase == "Succeeded":
        reason, message = "AllRunsSucceeded", f"{len(runs)} runs succeeded"
    elif phase == "Failed":
        names = ", ".join(f"{r.name}: {r.message}" for r in failed)
        reason, message = "RunsFailed", f"{len(failed)} of {len(runs)} runs failed: {names}"
    elif phase == "Suspended":
        reason = "Suspended"
        message = f"spec.suspend: {finished} of {len(runs)} runs finished; set suspend: false to run the others"
    else:
        reason, message = "RunsInProgress", f"{finished} of {len(runs)} runs finished"
    ready = clock.condition("Ready", "True" if phase == "Succeeded" else "False", reason, message)
    if invalid or failed:
        why = "; ".join(f"{r.name}: {r.result.reason if r.result else 'no result'}" for r in [*invalid, *failed])
        result_valid = clock.condition(
            "ResultValid",
            "False",
            "RunsInvalid",
            f"{len(invalid) + len(failed)} of {len(runs)} runs are not VALID: {why}",
        )
    elif phase == "Succeeded":
        result_valid = clock.condition(
            "ResultValid", "True", "AllRunsValid", f"LoadGen judged all {len(runs)} runs VALID"
        )
    else:
        result_valid = clock.condition(
            "ResultValid", "Unknown", "ResultsPending", f"{len(valid)} of {len(runs)} runs have a VALID result so far"
        )
    start, completion = clock.times(phase, started=jobs_exist)
    return EvaluationStatus(
        phase=phase,
        runs=list(runs),
        progress=f"{finished}/{len(runs)}",
        valid=f"{len(valid)}/{len(runs)}",
        conditions=[ready, result_valid, _regressed(runs, phase, clock), *clock.terminal(phase, reason, message)],
        start_time=start,
        completion_time=completion,
        observed_generation=generation,
        last_error=last_error or (failed[0].message if failed else ""),
    )


def _regressed(runs: Sequence[RunStatus], phase: Phase, clock: _Now) -> Condition:
    """``Regressed``: True when the collector flags any run against its baseline (p99 or throughput)."""
    checked = [r for r in runs if r.result is not None and r.result.regression is not None]
    regressed = [r for r in checked if r.result is not None and r.result.regression == "regressed"]
    if regressed:
        why = "; ".join(f"{r.name}: {r.result.regression_reason if r.result else ''}" for r in regressed)
        return clock.condition(
            "Regressed", "True", "RegressedAgainstBaseline", f"{len(regressed)} run(s) regressed: {why}"
        )
    if phase in FINISHED and checked:
        compared = sum(1 for r in checked if r.result is not None and r.result.regression == "ok")
        return clock.condition(
            "Regressed",
            "False",
            "NoRegression",
            f"{compared} of {len(runs)} runs compared with a baseline, none regressed",
        )
    return clock.condition("Regressed", "Unknown", "NotChecked", "no regression check yet")


def unsatisfiable_status(
    message: str, *, generation: int | None, previous: EvaluationStatus | None, now: str
) -> EvaluationStatus:
    """Failed before any run: the spec names what the cluster does not have (or is invalid)."""
    clock = _Now(now, previous, generation)
    start, completion = clock.times("Failed", started=False)
    return EvaluationStatus(
        phase="Failed",
        runs=[],
        progress="0/0",
        valid="0/0",
        conditions=[
            clock.condition("Ready", "False", "Unsatisfiable", message),
            clock.condition("ResultValid", "False", "Unsatisfiable", "no run can start"),
            *clock.terminal("Failed", "Unsatisfiable", message),
        ],
        start_time=start,
        completion_time=completion,
        observed_generation=generation,
        last_error=message[:2000],
    )
