"""The Evaluation's status as tools read it: terminal Succeeded/Failed conditions (``kubectl wait`` returns), each
condition's observedGeneration, startTime/completionTime, and spec.suspend (the real operator against KMock
deletes the unfinished runs' Jobs, keeps the finished ones, and resumes)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mlmodelscope.core.manifests.fields import is_valid_name
from mlmodelscope.operator import status
from mlmodelscope.operator.evaluation import RunFigures, RunStatus
from tests.support.operator_harness import (
    KUBECTL,
    Api,
    example,
    kube_api,
    kubectl,
    operator,
    operator_settings,
    register_assets,
    scratch_assets,
    write_kubeconfig,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
CATALOG = {"models": ["digits-cnn"], "frameworks": ["onnxruntime"], "datasets": ["digits"]}
SUSPENDED = "digits-suspend-" + "x" * 47 + "9"  # 63 characters: a restart's Job name must still fit in 63


def _run(i: int, state: Any, result: RunFigures | None = None) -> RunStatus:
    return RunStatus(
        name=f"m/f/amd64-cpu/b{i}",
        model="m",
        framework="f",
        arch="amd64",
        accelerator="cpu",
        batch_size=i,
        run_id=f"r{i}",
        job_name=f"j{i}",
        state=state,
        result=result,
    )


def _conditions(value: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in value.conditions}


GOOD = RunFigures(valid=True, top1=0.98)


def test_terminal_conditions_times_and_generations_follow_the_phase():
    pending = status.evaluation_status(
        [_run(1, "Pending"), _run(2, "Pending")], jobs_exist=False, generation=3, previous=None, now="t0"
    )
    assert pending.phase == "Pending" and (pending.start_time, pending.completion_time) == (None, None)
    assert _conditions(pending)["Succeeded"] == ("False", "RunsInProgress")
    assert _conditions(pending)["Failed"] == ("False", "RunsInProgress")
    assert {c.observed_generation for c in pending.conditions} == {3}
    assert len({c.type for c in pending.conditions}) == len(pending.conditions)  # a list-map: one of each type

    running = status.evaluation_status(
        [_run(1, "Running"), _run(2, "Pending")], jobs_exist=True, generation=3, previous=pending, now="t1"
    )
    assert (running.phase, running.start_time, running.completion_time) == ("Running", "t1", None)

    succeeded = status.evaluation_status(
        [_run(1, "Succeeded", GOOD), _run(2, "Succeeded", GOOD)], jobs_exist=True, generation=3, previous=running,
        now="t2",
    )  # fmt: skip
    assert succeeded.phase == "Succeeded"
    assert _conditions(succeeded)["Succeeded"] == ("True", "AllRunsSucceeded")
    assert _conditions(succeeded)["Failed"] == ("False", "AllRunsSucceeded")
    assert (succeeded.start_time, succeeded.completion_time) == ("t1", "t2")
    again = status.evaluation_status(list(succeeded.runs), jobs_exist=True, generation=3, previous=succeeded, now="t3")
    assert again == succeeded  # nothing moves: no status write

    failed = status.evaluation_status(
        [_run(1, "Succeeded", GOOD), _run(2, "Failed")], jobs_exist=True, generation=3, previous=running, now="t4"
    )
    assert _conditions(failed)["Failed"] == ("True", "RunsFailed")
    assert _conditions(failed)["Succeeded"] == ("False", "RunsFailed")
    assert failed.completion_time == "t4"
    by_type = {c.type: c for c in failed.conditions}
    assert by_type["Failed"].last_transition_time == "t4"
    assert by_type["Succeeded"].last_transition_time == "t0"  # False since the start

    reopened = status.evaluation_status(
        [_run(1, "Succeeded", GOOD), _run(2, "Pending")], jobs_exist=True, generation=4, previous=failed, now="t5"
    )
    assert (reopened.phase, reopened.start_time, reopened.completion_time) == ("Running", "t1", None)
    assert {c.observed_generation for c in reopened.conditions} == {4}


def test_an_unsatisfiable_spec_is_failed_and_complete():
    first = status.unsatisfiable_status("unknown Model 'x'", generation=1, previous=None, now="t0")
    assert first.phase == "Failed" and first.completion_time == "t0" and first.start_time is None
    assert _conditions(first)["Failed"] == ("True", "Unsatisfiable")
    assert _conditions(first)["Succeeded"] == ("False", "Unsatisfiable")
    assert status.unsatisfiable_status("unknown Model 'x'", generation=1, previous=first, now="t9") == first


def test_a_suspended_evaluation_says_so_and_keeps_finished_runs():
    runs = [_run(1, "Succeeded", GOOD), _run(2, "Pending"), _run(3, "Pending")]
    suspended = status.evaluation_status(runs, jobs_exist=True, generation=2, previous=None, now="t0", suspended=True)
    assert suspended.phase == "Suspended"
    assert _conditions(suspended)["Ready"] == ("False", "Suspended")
    assert _conditions(suspended)["Failed"] == ("False", "Suspended")
    assert [(r.state, r.message) for r in suspended.runs] == [
        ("Succeeded", ""),
        ("Pending", "suspended"),
        ("Pending", "suspended"),
    ]
    done = [_run(1, "Succeeded", GOOD), _run(2, "Failed")]
    assert status.evaluation_status(
        done, jobs_exist=True, generation=2, previous=None, now="t0", suspended=True
    ).phase == "Failed"  # fmt: skip


async def _status(api: Api, name: str) -> dict[str, Any]:
    body = await api.get("evaluations", name)
    assert body is not None
    found: dict[str, Any] = body.get("status") or {}
    return found


def _condition(found: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in found.get("conditions", []) if c["type"] == kind)


async def _job_names(api: Api) -> set[str]:
    return {j["metadata"]["name"] for j in await api.list("jobs")}


def test_suspend_deletes_the_running_jobs_keeps_finished_runs_and_resume_continues(tmp_path: Path):
    assets = scratch_assets(tmp_path / "assets")
    evaluation = example("evaluation-minimal.yaml")
    evaluation["metadata"]["name"] = SUSPENDED
    evaluation["spec"].update(batch_sizes=[1, 2, 4], parallelism=2)

    async def scenario() -> None:
        async with kube_api() as (_, url):
            api = Api(url)
            await register_assets(api, assets, CATALOG)
            await api.create(evaluation)
            async with operator(operator_settings(url, tmp_path, assets)):

                async def two_jobs() -> set[str] | None:
                    names = await _job_names(api)
                    return names if len(names) == 2 else None

                first = await eventually(two_jobs, timeout_s=30, what="2 Jobs (parallelism 2)")
                started = await eventually(
                    lambda: _started(api), timeout_s=30, what="startTime once the first Jobs exist"
                )
                failed_job, running_job = sorted(first)
                await api.patch_status(
                    "jobs",
                    failed_job,
                    {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]},
                )

                async def one_run_failed() -> dict[str, Any] | None:
                    found = await _status(api, SUSPENDED)
                    states = {r["job_name"]: r["state"] for r in found.get("runs", [])}
                    return found if states.get(failed_job) == "Failed" else None

                await eventually(one_run_failed, timeout_s=30, what="the failed Job's run Failed")
                started_jobs = await _job_names(api)  # the freed slot started the third run in the same pass
                assert len(started_jobs) == 3 and running_job in started_jobs

                await api.patch("evaluations", SUSPENDED, {"spec": {"suspend": True}})

                async def suspended() -> dict[str, Any] | None:
                    found = await _status(api, SUSPENDED)
                    return found if found.get("phase") == "Suspended" and found.get("observedGeneration") == 2 else None

                found = await eventually(suspended, timeout_s=30, what="phase Suspended")
                assert await _job_names(api) == {failed_job}  # the running Job is deleted, the finished one kept
                runs = {r["job_name"]: r for r in found["runs"]}
                for run in found["runs"]:  # the checksums of the specs each run was planned with
                    assert set(run["spec_sha256"]) == {"model", "framework", "dataset"}, run
                    assert all(len(digest) == 64 for digest in run["spec_sha256"].values()), run
                assert runs[failed_job]["state"] == "Failed"
                pending = [r for name, r in runs.items() if name != failed_job]
                assert len(pending) == 2 and all(
                    (r["state"], r["message"]) == ("Pending", "suspended") for r in pending
                )
                # A stopped run starts again under a new run id and Job name: its agent reported the stopped
                # attempt cancelled, and the collector never rewrites a finished run.
                assert all(r["restarts"] == 1 for r in pending), pending
                assert all(r["run_id"].endswith("-s1") and r["job_name"].endswith("-s1") for r in pending)
                assert all(is_valid_name(r["job_name"]) and r["job_name"] not in started_jobs for r in pending)
                ready = _condition(found, "Ready")
                assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", "Suspended", 2)
                assert found["startTime"] == started and found.get("completionTime") is None
                await asyncio.sleep(1.5)  # three resync intervals: still no Job is created while suspended
                assert await _job_names(api) == {failed_job}

                await api.patch("evaluations", SUSPENDED, {"spec": {"suspend": False}})

                async def resumed() -> set[str] | None:
                    names = await _job_names(api)
                    return names if len(names) == 3 else None

                names = await eventually(resumed, timeout_s=30, what="2 Jobs created again beside the failed one")
                assert names == {failed_job} | {r["job_name"] for r in pending}
                for run in pending:
                    job = await api.get("jobs", run["job_name"])
                    assert job is not None
                    assert job["metadata"]["annotations"]["mlmodelscope.org/run-id"] == run["run_id"]
                found = await eventually(
                    lambda: _phase_is(api, "Running"), timeout_s=30, what="Running again after resume"
                )
                assert {r["job_name"]: r["state"] for r in found["runs"]}[failed_job] == "Failed"
                assert sorted(r["restarts"] for r in found["runs"]) == [0, 1, 1]
            await api.close()

    asyncio.run(scenario())


async def _started(api: Api) -> str | None:
    found = await _status(api, SUSPENDED)
    start: str | None = found.get("startTime")
    return start


async def _phase_is(api: Api, phase: str) -> dict[str, Any] | None:
    found = await _status(api, SUSPENDED)
    return found if found.get("phase") == phase and found.get("observedGeneration") == 3 else None


@pytest.mark.skipif(not KUBECTL.is_file(), reason="the real kubectl is at /usr/bin/kubectl on these machines")
def test_kubectl_wait_for_failed_returns_for_an_unsatisfiable_evaluation(tmp_path: Path):
    assets = scratch_assets(tmp_path / "assets")
    evaluation = example("evaluation-minimal.yaml")
    evaluation["metadata"]["name"] = "digits-unknown"
    evaluation["spec"]["models"] = ["no-such-model"]

    async def scenario() -> None:
        async with kube_api() as (_, url):
            api = Api(url)
            config = write_kubeconfig(tmp_path / "kubeconfig", url)
            await register_assets(api, assets, CATALOG)
            await api.create(evaluation)
            async with operator(operator_settings(url, tmp_path, assets)):
                code, out, err = await kubectl(
                    config,
                    "wait",
                    "--for=condition=Failed",
                    "evaluations/digits-unknown",
                    "--timeout=60s",
                    timeout_s=90,
                )
                assert code == 0, (out, err)
                assert "condition met" in out
                found = await _status(api, "digits-unknown")
                assert found["phase"] == "Failed" and found["completionTime"]
                assert "unknown Model 'no-such-model'" in _condition(found, "Failed")["message"]
                code, out, err = await kubectl(
                    config, "wait", "--for=condition=Succeeded", "evaluations/digits-unknown", "--timeout=2s"
                )
                assert code != 0  # it never succeeds
            await api.close()

    asyncio.run(scenario())
