"""What a run's pods say about it: from a Job's Pods and their Events to the run's state and message (pure).

A Job's own status says only "active: 1" while its pod cannot be scheduled, cannot pull its image or keeps
crashing, so without this a stuck run looks like a running one until the Job's deadline. ``observe`` reads what
the scheduler and the kubelet report (pod conditions, container states, and, when those say nothing, the
Events of the pod or of the Job) and names the reason: ``Unschedulable: <the scheduler's message>``,
``ImagePullBackOff: <the kubelet's message>``, ``CrashLoopBackOff``, ``OOMKilled``, or "no pod created yet".

Stuck reasons (unschedulable, image or container config failing, volumes failing to mount, no pod) count
towards the pending timeout: a run stuck longer than ``pending_timeout_s`` fails with that reason. The clock
starts, for a pod's reason, at the pod's creation (each retry's pod gets its own time), and, for a Job without
a pod, at the Job's ``startTime`` (when it was admitted: a Job suspended by Kueue is not stuck) or else its
creation. Both come from the API server, so an operator restart neither resets nor skips the timeout; an object
without a timestamp never times out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlmodelscope.operator.evaluation import RunState

JsonObject = Mapping[str, Any]
# Labels the Job controller puts on its pods (the newer one since Kubernetes 1.27; both are set today).
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
CONTROLLER_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
# A Job with no pod (none seen, none active in its status) this long after it started is reported ("no pod
# created yet") and its Events are read.
NO_POD_GRACE_S = 5.0
# Waiting reasons of a container that never starts by itself: the run is stuck.
STUCK_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
# Event reasons that explain a pod stuck in Pending when its status does not (yet).
STUCK_EVENTS = frozenset({"FailedScheduling", "FailedMount", "FailedAttachVolume", "Failed", "FailedCreatePodSandBox"})
_MESSAGE_CHARS = 1000


@dataclass(frozen=True)
class PodObservation:
    """What the pods say: ``state`` overrides the Job's (None: keep it), ``message`` is shown in the run's status,
    ``reason`` is the short name (``Unschedulable``, ``ImagePullBackOff``, ``OOMKilled``, ``NoPod``...),
    ``stuck`` whether it counts towards the pending timeout and ``timed_out`` whether that has run out (the run
    is then Failed and its Job should be deleted)."""

    state: RunState | None
    reason: str
    message: str
    stuck: bool = False
    timed_out: bool = False


def job_name_of(pod: JsonObject) -> str | None:
    """The name of the Job a pod belongs to: the Job controller's label, else its owner reference."""
    metadata = pod.get("metadata") or {}
    labels = metadata.get("labels") or {}
    for label in JOB_NAME_LABELS:
        if labels.get(label):
            return str(labels[label])
    for owner in metadata.get("ownerReferences") or []:
        if owner.get("kind") == "Job" and owner.get("name"):
            return str(owner["name"])
    return None


def belongs_to(pod: JsonObject, job: JsonObject) -> bool:
    """Whether ``pod`` is a pod of this very Job (not of an earlier Job of the same name): same name, and the same
    uid where both the pod (owner reference or controller-uid label) and the Job carry one."""
    job_metadata = job.get("metadata") or {}
    if job_name_of(pod) != job_metadata.get("name"):
        return False
    job_uid = job_metadata.get("uid")
    metadata = pod.get("metadata") or {}
    labels = metadata.get("labels") or {}
    uids = {o.get("uid") for o in metadata.get("ownerReferences") or [] if o.get("kind") == "Job"}
    uids |= {labels.get(label) for label in CONTROLLER_UID_LABELS}
    uids.discard(None)
    return not job_uid or not uids or job_uid in uids


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp of the API server (``2026-01-02T03:04:05Z``), None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _age_s(timestamp: Any, now: datetime) -> float | None:
    since = parse_time(timestamp)
    return None if since is None else (now - since).total_seconds()


def _joined(*parts: Any) -> str:
    return ": ".join(str(p).strip() for p in parts if p and str(p).strip())[:_MESSAGE_CHARS]


def _containers(pod: JsonObject) -> list[JsonObject]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _memory_limit(pod: JsonObject, container_name: str) -> str:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == container_name:
            return str(((container.get("resources") or {}).get("limits") or {}).get("memory") or "")
    return ""


def _oom_message(pod: JsonObject, container: JsonObject) -> str:
    limit = _memory_limit(pod, str(container.get("name") or ""))
    of = f" of {limit}" if limit else ""
    return (
        f"OOMKilled: container {container.get('name')} exceeded its memory limit{of}; "
        "raise the memory limit (spec.resources.limits.memory of the Evaluation or its target)"
    )


def _terminated(container: JsonObject) -> JsonObject | None:
    state = container.get("state") or {}
    last = container.get("lastState") or {}
    terminated = state.get("terminated") or last.get("terminated")
    return terminated if isinstance(terminated, Mapping) else None


def _latest(pods: Iterable[JsonObject]) -> JsonObject | None:
    """The newest pod that is not being deleted (a Job's retries are newer pods), else the newest of all."""
    ordered = sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
    live = [p for p in ordered if not (p.get("metadata") or {}).get("deletionTimestamp")]
    chosen = live or ordered
    return chosen[-1] if chosen else None


def _latest_event(events: Sequence[JsonObject], kind: str, name: str, reasons: frozenset[str] | None) -> str:
    """``reason: message`` of the latest warning-like Event about ``kind``/``name`` (filtered here: servers that
    ignore field selectors return all)."""
    about = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("kind") == kind
        and (e.get("involvedObject") or {}).get("name") == name
        and (reasons is None or e.get("reason") in reasons)
        and e.get("type", "Warning") != "Normal"
    ]
    if not about:
        return ""
    event = max(about, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return _joined(event.get("reason"), event.get("message"))


def events_needed(job: JsonObject | None, pods: Sequence[JsonObject], now: datetime) -> str | None:
    """The name of the object whose Events ``observe`` would read, or None: the Job's latest pod when it is
    Pending with no reason in its status, the Job when it has had no pod for ``NO_POD_GRACE_S``. The caller
    lists Events only then."""
    if job is None or not _waits_for_pods(job):
        return None
    pod = _latest(p for p in pods if belongs_to(p, job))
    if pod is None:
        return str((job.get("metadata") or {}).get("name")) if _pod_missing(job, now) else None
    pending = (pod.get("status") or {}).get("phase", "Pending") == "Pending" and _pending_reason(pod) is None
    return str((pod.get("metadata") or {}).get("name")) if pending else None


def _pod_missing(job: JsonObject, now: datetime) -> bool:
    """Whether a Job that should have a pod has none: the Job controller counts none active (a pod that the
    watch has not shown yet still counts there) ``NO_POD_GRACE_S`` after the Job started."""
    if int((job.get("status") or {}).get("active") or 0) > 0:
        return False
    age_s = _age_s(_started(job), now)
    return age_s is not None and age_s >= NO_POD_GRACE_S


def _started(job: JsonObject) -> Any:
    return (job.get("status") or {}).get("startTime") or (job.get("metadata") or {}).get("creationTimestamp")


def _finished(job: JsonObject) -> str | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return str(condition["type"])
    return None


def _waits_for_pods(job: JsonObject) -> bool:
    """An unfinished Job that is not suspended: the Job controller should be running a pod for it."""
    suspended = (job.get("spec") or {}).get("suspend") and not (job.get("status") or {}).get("active")
    return not suspended and _finished(job) is None and not int((job.get("status") or {}).get("succeeded") or 0)


def _pending_reason(pod: JsonObject) -> tuple[str, str] | None:
    """(reason, message) of a Pending pod from its own status: unschedulable, or a container that cannot start."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = str(condition.get("reason") or "Unschedulable")
            return reason, _joined(reason, condition.get("message") or "the scheduler found no node")
    for container in _containers(pod):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_WAITING:
            return str(waiting["reason"]), _joined(waiting["reason"], waiting.get("message"))
    return None


def _stuck(reason: str, message: str, since: Any, now: datetime, pending_timeout_s: float) -> PodObservation:
    age_s = _age_s(since, now)
    if age_s is not None and age_s > pending_timeout_s:
        return PodObservation(
            "Failed", reason, f"pending timeout after {pending_timeout_s:g} s: {message}", stuck=True, timed_out=True
        )
    return PodObservation("Pending", reason, message, stuck=True)


def observe(
    job: JsonObject | None,
    pods: Sequence[JsonObject],
    events: Sequence[JsonObject],
    *,
    now: datetime,
    pending_timeout_s: float,
) -> PodObservation | None:
    """What the pods of ``job`` (and the Events about them or the Job) say about its run; None when nothing
    beyond the Job's own status (no Job, suspended, running normally, completed). ``pods`` may hold pods of
    other Jobs: only this Job's count."""
    if job is None:
        return None
    own = [p for p in pods if belongs_to(p, job)]
    pod = _latest(own)
    if _finished(job) == "Failed":
        # The Job's failure already ends the run; an OOM kill says why, and how to fix it.
        if pod is None:
            return None
        oom = next((c for c in _containers(pod) if (_terminated(c) or {}).get("reason") == "OOMKilled"), None)
        return None if oom is None else PodObservation(None, "OOMKilled", _oom_message(pod, oom))
    if not _waits_for_pods(job):
        return None
    if pod is None:
        if not _pod_missing(job, now):
            return None
        name = str((job.get("metadata") or {}).get("name"))
        why = _latest_event(events, "Job", name, None)
        message = f"no pod created yet: {why}" if why else "no pod created yet"
        return _stuck("NoPod", message, _started(job), now, pending_timeout_s)
    return _observe_pod(pod, events, now=now, pending_timeout_s=pending_timeout_s)


def _observe_pod(
    pod: JsonObject, events: Sequence[JsonObject], *, now: datetime, pending_timeout_s: float
) -> PodObservation | None:
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    created = (pod.get("metadata") or {}).get("creationTimestamp")
    for container in _containers(pod):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            terminated = (container.get("lastState") or {}).get("terminated") or {}
            if terminated.get("reason") == "OOMKilled":
                return PodObservation(
                    "Running", "CrashLoopBackOff", f"CrashLoopBackOff: {_oom_message(pod, container)}"
                )
            last = _joined(terminated.get("reason"), terminated.get("message"))
            detail = _joined(waiting.get("message")) or (f"last exit: {last}" if last else "")
            return PodObservation("Running", "CrashLoopBackOff", _joined("CrashLoopBackOff", detail))
    if phase == "Pending":
        found = _pending_reason(pod)
        if found is not None:
            return _stuck(found[0], found[1], created, now, pending_timeout_s)
        name = str((pod.get("metadata") or {}).get("name"))
        why = _latest_event(events, "Pod", name, STUCK_EVENTS)
        if why:
            reason = why.split(":", 1)[0]
            if reason == "FailedScheduling":
                why = "Unschedulable" + why.removeprefix("FailedScheduling")
            return _stuck(reason, why, created, now, pending_timeout_s)
        waiting = next(
            (w for c in _containers(pod) if (w := (c.get("state") or {}).get("waiting") or {}).get("reason")), None
        )
        return PodObservation("Pending", "Pending", _joined("pod Pending", waiting and waiting.get("reason")))
    if phase in ("Running", "Failed"):
        # A retry after an OOM kill: the earlier attempt's reason stays visible while the Job runs on.
        oom = next((c for c in _containers(pod) if (_terminated(c) or {}).get("reason") == "OOMKilled"), None)
        if oom is not None:
            return PodObservation(None, "OOMKilled", _oom_message(pod, oom))
    return None


__all__ = [
    "JOB_NAME_LABELS",
    "NO_POD_GRACE_S",
    "PodObservation",
    "belongs_to",
    "events_needed",
    "job_name_of",
    "observe",
    "parse_time",
]
