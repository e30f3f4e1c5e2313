"""Suspending an Evaluation stops its unfinished runs; resuming starts each stopped run again under a new run id.

Why a new id: the agent whose Job a suspension deletes gets SIGTERM and publishes its run as cancelled, and the
collector never rewrites a finished run, so a resumed run under the same id would be refused (and read back as
cancelled). A run whose Job a suspension deleted counts one restart; from the first on, its run id and Job name
end in ``-s<restarts>``. The count lives in the run's status (``runs[].restarts``), so that every later pass, and
a restarted operator, plans the same names (pure functions, no I/O).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from mlmodelscope.operator.evaluation import EvaluationStatus, RunStatus
from mlmodelscope.operator.planning import JOB_NAME_MAX, PlannedRun


def restarted(run: PlannedRun, restarts: int) -> PlannedRun:
    """The planned run as its ``restarts``-th restart (the run itself for 0)."""
    if restarts == 0:
        return run
    suffix = f"-s{restarts}"
    head, digest = run.job_name.rsplit("-", 1)
    job_name = f"{head[: JOB_NAME_MAX - len(digest) - len(suffix) - 1].rstrip('-')}-{digest}{suffix}"
    return dataclasses.replace(run, run_id=f"{run.run_id}{suffix}", job_name=job_name)


def restarts(previous: EvaluationStatus | None, runs: Sequence[PlannedRun]) -> dict[str, int]:
    """How often each planned run (by key) was restarted, as the previous status recorded it for the same run
    (the restart's run id derived from this plan's: a changed spec plans other runs, which start at 0)."""
    if previous is None:
        return {}
    planned = {r.key: r for r in runs}
    counted = {}
    for recorded in previous.runs:
        run = planned.get(recorded.name)
        if run is not None and recorded.restarts and restarted(run, recorded.restarts).run_id == recorded.run_id:
            counted[recorded.name] = recorded.restarts
    return counted


def recorded(
    runs: Sequence[RunStatus], stopped: set[str], plan: Sequence[PlannedRun], counted: Mapping[str, int]
) -> list[RunStatus]:
    """The runs' statuses with their restart counts: ``counted`` (from ``restarts``) for each, one more for the
    runs whose Job a suspension just deleted (``stopped``: their run ids), which are Pending again under the ids
    of their next restart of the planned run without restarts (``plan``)."""
    planned = {r.key: r for r in plan}
    out = []
    for run in runs:
        count = counted.get(run.name, 0)
        if run.run_id in stopped:
            again = restarted(planned[run.name], count + 1)
            update = {"run_id": again.run_id, "job_name": again.job_name, "restarts": count + 1, "state": "Pending"}
            out.append(run.model_copy(update={**update, "attempts": 0, "result": None}))
        else:
            out.append(run if run.restarts == count else run.model_copy(update={"restarts": count}))
    return out
