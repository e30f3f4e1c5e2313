"""pods.observe: each reason a Job's pod can give (unschedulable, image pull, container config, crash loop, OOM
kill, no pod at all) becomes the run's state and message, and a stuck run times out after the pending timeout,
measured from the pod's (or the pod-less Job's) creation. Then the real operator against KMock: a pod the test
marks Unschedulable or ImagePullBackOff, or a Job with no pod, shows its reason in the status and fails the run
after the pending timeout."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlmodelscope.operator import pods
from tests.support.operator_harness import (
    NAMESPACE,
    Api,
    collection,
    example,
    job_pod,
    kube_api,
    operator,
    operator_settings,
    register_assets,
    scratch_assets,
)
from tests.support.waiting import eventually

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
JOB_UID = "job-uid-1"


def _at(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _job(*, created_s_ago: float = 30, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "ev-run-1", "uid": JOB_UID, "creationTimestamp": _at(created_s_ago)},
        "spec": {"suspend": False},
        "status": {"active": 1, **status},
    }


def _pod(
    *,
    phase: str = "Pending",
    created_s_ago: float = 10,
    conditions: list[dict[str, Any]] | None = None,
    containers: list[dict[str, Any]] | None = None,
    name: str = "ev-run-1-abcde",
    job_uid: str = JOB_UID,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": _at(created_s_ago),
            "labels": {"job-name": "ev-run-1", "controller-uid": job_uid, "mlmodelscope.org/evaluation": "ev"},
            "ownerReferences": [{"kind": "Job", "name": "ev-run-1", "uid": job_uid}],
        },
        "spec": {"containers": [{"name": "agent", "resources": {"limits": {"memory": "4Gi"}}}]},
        "status": {"phase": phase, "conditions": conditions or [], "containerStatuses": containers or []},
    }


def _waiting(reason: str, message: str = "") -> list[dict[str, Any]]:
    return [{"name": "agent", "state": {"waiting": {"reason": reason, "message": message}}}]


UNSCHEDULABLE = [
    {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    }
]


def observe(job: dict[str, Any] | None, found: list[dict[str, Any]], events: Any = (), timeout_s: float = 600) -> Any:
    return pods.observe(job, found, list(events), now=NOW, pending_timeout_s=timeout_s)


def test_unschedulable_pod_is_pending_with_the_schedulers_message():
    seen = observe(_job(), [_pod(conditions=UNSCHEDULABLE)])
    assert seen is not None
    assert (seen.state, seen.reason, seen.stuck, seen.timed_out) == ("Pending", "Unschedulable", True, False)
    assert seen.message == "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


def test_a_stuck_pod_times_out_from_its_own_creation():
    young = observe(_job(created_s_ago=5000), [_pod(conditions=UNSCHEDULABLE, created_s_ago=59)], timeout_s=60)
    assert young is not None and young.state == "Pending" and not young.timed_out  # the Job's age does not count
    old = observe(_job(), [_pod(conditions=UNSCHEDULABLE, created_s_ago=61)], timeout_s=60)
    assert old is not None and (old.state, old.timed_out) == ("Failed", True)
    assert old.message == (
        "pending timeout after 60 s: Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    )


def test_image_and_container_config_failures_are_stuck():
    for reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"):
        message = f'{reason} for "ghcr.io/x/agent:missing"'
        seen = observe(_job(), [_pod(containers=_waiting(reason, message))])
        assert seen is not None, reason
        assert (seen.state, seen.reason, seen.stuck) == ("Pending", reason, True)
        assert seen.message == f"{reason}: {message}"
        late = observe(_job(), [_pod(containers=_waiting(reason, message), created_s_ago=700)])
        assert late is not None and late.timed_out and late.message.startswith("pending timeout after 600 s: ")


def test_crash_loop_names_the_last_exit_and_does_not_time_out():
    containers = [
        {
            "name": "agent",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": ""}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 2}},
        }
    ]
    seen = observe(_job(), [_pod(phase="Running", containers=containers, created_s_ago=5000)])
    assert seen is not None
    assert (seen.state, seen.reason, seen.stuck, seen.timed_out) == ("Running", "CrashLoopBackOff", False, False)
    assert seen.message == "CrashLoopBackOff: last exit: Error"


def test_oom_killed_says_raise_the_memory_limit():
    containers = [{"name": "agent", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]
    failed_job = _job(active=0, failed=1, conditions=[{"type": "Failed", "status": "True"}])
    seen = observe(failed_job, [_pod(phase="Failed", containers=containers)])
    assert seen is not None
    assert seen.state is None  # the Job's failure ends the run; the pod says why
    assert seen.reason == "OOMKilled"
    assert "exceeded its memory limit of 4Gi" in seen.message and "raise the memory limit" in seen.message
    looping = [
        {
            "name": "agent",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
        }
    ]
    crash = observe(_job(), [_pod(phase="Running", containers=looping)])
    assert crash is not None and crash.message.startswith("CrashLoopBackOff: OOMKilled: ")


def test_no_pod_after_the_grace_names_the_jobs_events():
    assert observe(_job(created_s_ago=1, active=0), []) is None  # the Job controller has not got to it yet
    assert observe(_job(created_s_ago=30, active=1), []) is None  # it counts a pod: the watch has not shown it yet
    job = _job(created_s_ago=30, active=0)
    assert pods.events_needed(job, [], NOW) == "ev-run-1"
    event = {
        "involvedObject": {"kind": "Job", "name": "ev-run-1"},
        "type": "Warning",
        "reason": "FailedCreate",
        "message": 'pods "ev-run-1-x" is forbidden: exceeded quota: compute',
        "lastTimestamp": _at(2),
    }
    other = {**event, "involvedObject": {"kind": "Job", "name": "another"}, "message": "not this one"}
    seen = observe(job, [], [other, event])
    assert seen is not None and (seen.state, seen.reason, seen.stuck) == ("Pending", "NoPod", True)
    assert seen.message == 'no pod created yet: FailedCreate: pods "ev-run-1-x" is forbidden: exceeded quota: compute'
    quiet = observe(job, [])
    assert quiet is not None and quiet.message == "no pod created yet"
    late = observe(_job(created_s_ago=601, active=0), [])
    assert late is not None and late.timed_out and late.message == "pending timeout after 600 s: no pod created yet"


def test_no_pod_is_timed_from_the_jobs_start_not_its_creation():
    """A Job Kueue kept suspended for long gets the whole timeout once it is admitted (startTime)."""
    job = _job(created_s_ago=5000, active=0, startTime=_at(30))
    seen = observe(job, [], timeout_s=60)
    assert seen is not None and not seen.timed_out


def test_events_explain_a_pending_pod_whose_status_does_not():
    pod = _pod(containers=_waiting("ContainerCreating"))
    assert pods.events_needed(_job(), [pod], NOW) == "ev-run-1-abcde"
    assert pods.events_needed(_job(), [_pod(conditions=UNSCHEDULABLE)], NOW) is None  # the status says it
    plain = observe(_job(), [pod])
    assert plain is not None and (plain.state, plain.message, plain.stuck) == (
        "Pending",
        "pod Pending: ContainerCreating",
        False,
    )
    mount = {
        "involvedObject": {"kind": "Pod", "name": "ev-run-1-abcde"},
        "type": "Warning",
        "reason": "FailedMount",
        "message": 'MountVolume.SetUp failed for volume "cache": persistentvolumeclaim "c" not found',
    }
    seen = observe(_job(), [pod], [mount])
    assert seen is not None and (seen.reason, seen.stuck) == ("FailedMount", True)
    assert seen.message.startswith('FailedMount: MountVolume.SetUp failed for volume "cache"')
    scheduling = {**mount, "reason": "FailedScheduling", "message": "0/1 nodes are available: 1 node(s) had taint."}
    unscheduled = observe(_job(), [_pod()], [scheduling])
    assert (
        unscheduled is not None
        and unscheduled.message == "Unschedulable: 0/1 nodes are available: 1 node(s) had taint."
    )


def test_running_completed_suspended_and_foreign_pods_say_nothing():
    assert observe(None, [_pod(conditions=UNSCHEDULABLE)]) is None
    assert observe(_job(), [_pod(phase="Running")]) is None
    done = _job(active=0, succeeded=1, conditions=[{"type": "Complete", "status": "True"}])
    assert observe(done, [_pod(phase="Succeeded")]) is None
    suspended = {**_job(), "spec": {"suspend": True}, "status": {}}
    assert observe(suspended, []) is None
    assert pods.events_needed(suspended, [], NOW) is None
    # A pod of an earlier Job of the same name (another uid) is not this Job's: the Job has no pod.
    stale = observe(_job(created_s_ago=30), [_pod(conditions=UNSCHEDULABLE, job_uid="old-uid")])
    assert stale is None


def test_the_newest_live_pod_speaks_for_a_retried_job():
    old = _pod(name="ev-run-1-old", phase="Failed", created_s_ago=100, containers=_waiting("ErrImagePull"))
    new = _pod(name="ev-run-1-new", created_s_ago=5, conditions=UNSCHEDULABLE)
    seen = observe(_job(), [new, old])
    assert seen is not None and seen.reason == "Unschedulable"


def test_job_name_of_reads_labels_then_owner():
    assert pods.job_name_of(_pod()) == "ev-run-1"
    owned = {"metadata": {"ownerReferences": [{"kind": "Job", "name": "j2", "uid": "u"}]}}
    assert pods.job_name_of(owned) == "j2"
    assert pods.job_name_of({"metadata": {"labels": {"app": "x"}}}) is None
    assert pods.parse_time("2026-01-02T12:00:00Z") == NOW
    assert pods.parse_time("not a time") is None


# The real operator against KMock: the test plays the Job controller and the scheduler/kubelet by creating the
# Job's Pod with the status they would report.

CATALOG = {"models": ["digits-cnn"], "frameworks": ["onnxruntime"], "datasets": ["digits"]}
GPU_SHORTAGE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


def _run_async(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def _evaluation(name: str) -> dict[str, Any]:
    document = example("evaluation-minimal.yaml")
    document["metadata"]["name"] = name
    return document


async def _run_of(api: Api, name: str) -> dict[str, Any] | None:
    body = await api.get("evaluations", name)
    runs = ((body or {}).get("status") or {}).get("runs") or []
    return runs[0] if runs else None


async def _one_job(api: Api) -> dict[str, Any] | None:
    found = await api.list("jobs")
    return found[0] if len(found) == 1 else None


async def _run_says(api: Api, name: str, state: str, *parts: str) -> dict[str, Any] | None:
    run = await _run_of(api, name)
    return run if run is not None and run["state"] == state and all(p in run["message"] for p in parts) else None


async def _phase(api: Api, name: str) -> str:
    body = await api.get("evaluations", name)
    return str(((body or {}).get("status") or {}).get("phase") or "")


async def _no_jobs(api: Api) -> bool:
    return not await api.list("jobs")


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.timeout(180)
def test_an_unschedulable_pod_shows_the_schedulers_message_then_times_out(tmp_path: Path):
    """Pending with the scheduler's reason as soon as the pod says so; Failed once the pod has been pending longer
    than the pending timeout (the pod's creation time is moved back, as if that much time had passed), the Job
    deleted and the Evaluation Failed with the reason."""
    assets = scratch_assets(tmp_path / "assets")
    name = "stuck-unschedulable"

    async def scenario() -> None:
        async with kube_api() as (emulator, url):
            api = Api(url)
            await register_assets(api, assets, CATALOG)
            await api.create(_evaluation(name))
            settings = operator_settings(url, tmp_path, assets, pending_timeout_s=120)
            async with operator(settings):
                job = await eventually(lambda: _one_job(api), timeout_s=30, what="the Job")
                pod_status = {
                    "phase": "Pending",
                    "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": GPU_SHORTAGE}
                    ],
                }
                pod = await api.create(job_pod(job, pod_status))
                run = await eventually(
                    lambda: _run_says(api, name, "Pending", "Unschedulable", GPU_SHORTAGE),
                    timeout_s=30,
                    what="the run Pending with the scheduler's message",
                )
                assert run["message"] == f"Unschedulable: {GPU_SHORTAGE}"
                assert await _phase(api, name) == "Running"  # a Job exists: not finished yet
                # The pod came through the operator's watch (filtered by its label on the server), not from a
                # fallback read of the Job's pods.
                pod_reads = [r for r in list(emulator) if r.method == "GET" and r.url.path == collection("pods")]
                selectors = {r.url.query.get("labelSelector") for r in pod_reads}
                assert selectors == {"mlmodelscope.org/evaluation"}, selectors

                await api.patch("pods", pod["metadata"]["name"], {"metadata": {"creationTimestamp": _ago(121)}})
                run = await eventually(
                    lambda: _run_says(api, name, "Failed", "pending timeout after 120 s", GPU_SHORTAGE),
                    timeout_s=30,
                    what="the run Failed after the pending timeout",
                )
                assert run["message"] == f"pending timeout after 120 s: Unschedulable: {GPU_SHORTAGE}"
                await eventually(lambda: _no_jobs(api), timeout_s=30, what="the stuck Job deleted")
                assert await eventually(lambda: _phase_is(api, name, "Failed"), timeout_s=30, what="Failed")
                body = await api.get("evaluations", name)
                assert body is not None and GPU_SHORTAGE in body["status"]["lastError"]
                await asyncio.sleep(1.5)  # several passes: the timed-out run's Job is not created again
                assert await _no_jobs(api)
            await api.close()

    _run_async(scenario())


async def _phase_is(api: Api, name: str, phase: str) -> bool:
    return await _phase(api, name) == phase


@pytest.mark.timeout(180)
def test_an_image_pull_backoff_fails_the_run_after_a_short_pending_timeout(tmp_path: Path):
    """With ``pending_timeout_s`` of 3 s and no further event, the resync loop fails the run with the kubelet's
    reason."""
    assets = scratch_assets(tmp_path / "assets")
    name = "stuck-image"
    pull = 'Back-off pulling image "ghcr.io/mlmodelscope/agent-onnxruntime:0.1.0"'

    async def scenario() -> None:
        async with kube_api() as (_, url):
            api = Api(url)
            await register_assets(api, assets, CATALOG)
            await api.create(_evaluation(name))
            async with operator(operator_settings(url, tmp_path, assets, pending_timeout_s=3)):
                job = await eventually(lambda: _one_job(api), timeout_s=30, what="the Job")
                waiting = {"reason": "ImagePullBackOff", "message": pull}
                pod_status = {
                    "phase": "Pending",
                    "conditions": [{"type": "PodScheduled", "status": "True"}],
                    "containerStatuses": [{"name": "agent", "ready": False, "state": {"waiting": waiting}}],
                }
                await api.create(job_pod(job, pod_status))
                run = await eventually(
                    lambda: _run_says(api, name, "Failed", "pending timeout after 3 s", "ImagePullBackOff", pull),
                    timeout_s=60,
                    what="the run Failed after the pending timeout",
                )
                assert run["message"] == f"pending timeout after 3 s: ImagePullBackOff: {pull}"
                assert await eventually(lambda: _phase_is(api, name, "Failed"), timeout_s=30, what="Failed")
                await eventually(lambda: _no_jobs(api), timeout_s=30, what="the stuck Job deleted")
            await api.close()

    _run_async(scenario())


@pytest.mark.timeout(180)
def test_a_job_without_a_pod_names_its_failed_create_event(tmp_path: Path):
    """No pod (a quota refused it): after a few seconds the run says so with the Job's FailedCreate Event, and
    times out from the Job's start."""
    assets = scratch_assets(tmp_path / "assets")
    name = "no-pod"
    quota = 'pods "x" is forbidden: exceeded quota: compute, requested: cpu=2, used: cpu=8, limited: cpu=8'

    async def scenario() -> None:
        async with kube_api() as (_, url):
            api = Api(url)
            await register_assets(api, assets, CATALOG)
            await api.create(_evaluation(name))
            async with operator(operator_settings(url, tmp_path, assets, pending_timeout_s=120)):
                job = await eventually(lambda: _one_job(api), timeout_s=30, what="the Job")
                job_name = job["metadata"]["name"]
                event = {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": f"{job_name}.failedcreate", "namespace": NAMESPACE},
                    "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "name": job_name},
                    "type": "Warning",
                    "reason": "FailedCreate",
                    "message": f"Error creating: {quota}",
                    "lastTimestamp": _ago(0),
                }
                await api.create(event)
                await eventually(
                    lambda: _run_says(api, name, "Pending", "no pod created yet: FailedCreate", quota),
                    timeout_s=60,
                    what="the run Pending with the Job's FailedCreate Event",
                )
                await api.patch_status("jobs", job_name, {"startTime": _ago(121)})
                run = await eventually(
                    lambda: _run_says(api, name, "Failed", "pending timeout after 120 s: no pod created yet"),
                    timeout_s=30,
                    what="the run Failed after the pending timeout",
                )
                assert quota in run["message"]
            await api.close()

    _run_async(scenario())


@pytest.mark.timeout(180)
def test_jobs_without_pods_cost_no_api_request_per_job_and_pass(tmp_path: Path):
    """Three Jobs without a pod (KMock runs none): the pods come from the watch cache, the API is asked at most
    once per Evaluation and pass (by the Evaluation's label), and Events once per namespace, not once per Job."""
    assets = scratch_assets(tmp_path / "assets")
    name = "many-podless"

    async def scenario() -> None:
        async with kube_api() as (emulator, url):
            api = Api(url)
            await register_assets(api, assets, CATALOG)
            document = _evaluation(name)
            document["spec"].update({"batch_sizes": [1, 2, 4], "parallelism": 3})
            await api.create(document)
            async with operator(operator_settings(url, tmp_path, assets)) as running:

                async def three_jobs() -> list[dict[str, Any]] | None:
                    found = await api.list("jobs")
                    return found if len(found) == 3 else None

                for job in await eventually(three_jobs, timeout_s=30, what="3 Jobs"):
                    await api.patch_status("jobs", job["metadata"]["name"], {"startTime": _ago(30)})

                async def all_podless() -> bool:
                    body = await api.get("evaluations", name)
                    runs = ((body or {}).get("status") or {}).get("runs") or []
                    return len(runs) == 3 and all("no pod created yet" in r["message"] for r in runs)

                await eventually(all_podless, timeout_s=30, what="3 runs saying no pod created yet")
                first_request, first_pass = len(list(emulator)), len(running.reconciler.latencies_s)
                await eventually(
                    lambda: _true(len(running.reconciler.latencies_s) >= first_pass + 6), timeout_s=60, what="passes"
                )
                requests = list(emulator)[first_request:]
                passes = len(running.reconciler.latencies_s) - first_pass + 1  # one may be in flight
                pod_lists = [r for r in requests if r.method == "GET" and r.url.path == collection("pods")]
                event_lists = [r for r in requests if r.method == "GET" and r.url.path == collection("events")]
                assert len(pod_lists) <= passes and len(event_lists) <= passes, (len(pod_lists), passes)
                assert {r.url.query.get("labelSelector") for r in pod_lists} <= {
                    "mlmodelscope.org/evaluation",  # the watch's own list
                    f"mlmodelscope.org/evaluation={name}",
                }
            await api.close()

    _run_async(scenario())


async def _true(value: bool) -> bool:
    return value
