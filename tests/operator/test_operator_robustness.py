"""Bad input and bad days, with the real operator against KMock: unsatisfiable specs end Failed naming the missing
piece (and recover when it appears), a restart or a lost response duplicates no Job, transient API errors are
retried, a changed spec replaces its Jobs, and a deleted Evaluation takes its Jobs with it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.operator_harness import (
    Api,
    collection,
    example,
    kube_api,
    operator,
    operator_settings,
    register_assets,
    scratch_assets,
    start_operator,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
CATALOG = {"models": ["digits-cnn"], "frameworks": ["onnxruntime"], "datasets": ["digits"]}


def _evaluation(name: str, **spec: Any) -> dict[str, Any]:
    document = example("evaluation-minimal.yaml")
    document["metadata"]["name"] = name
    document["spec"].update(spec)
    return document


async def _status(api: Api, name: str) -> dict[str, Any]:
    body = await api.get("evaluations", name)
    assert body is not None
    status: dict[str, Any] = body.get("status") or {}
    return status


async def _phase(api: Api, name: str, phase: str) -> dict[str, Any] | None:
    status = await _status(api, name)
    return status if status.get("phase") == phase else None


async def _job_count(api: Api, count: int) -> bool:
    return len(await api.list("jobs")) == count


def _job_posts(emulator: Any) -> int:
    return sum(1 for r in list(emulator) if r.method == "POST" and str(r.url.path) == collection("jobs"))


UNSATISFIABLE = {
    "no-image": (
        {"targets": [{"arch": "ppc64le", "accelerator": "gpu"}]},
        "Framework 'onnxruntime' has no container image for ppc64le/gpu "
        "(spec.containers has: amd64/cpu, arm64/cpu, amd64/gpu).",
    ),
    "unknown-model": (
        {"models": ["digits-cnn", "resnet-9000"]},
        "unknown Model 'resnet-9000' in namespace 'default' (known: digits-cnn).",
    ),
    "big-batch": ({"batch_sizes": [1, 1000]}, "batch size 1000 exceeds the 450 samples of Dataset 'digits'."),
    "server-without-qps": (
        {"scenario": "server", "mode": "performance"},
        # refused at admission by the CRD's CEL rule too (tests/deploy/test_crd_cel.py), should a cluster lack it
        "invalid spec: settings: the server scenario needs target_qps (--target-qps), the Poisson arrival rate.",
    ),
    "no-admission": (  # what the CRD rejects at admission, should a cluster lack the CRD's schema
        {"batch_sizes": [0], "parallelism": 0},
        "invalid spec: batch_sizes.0: Input should be greater than or equal to 1; "
        "parallelism: Input should be greater than or equal to 1.",
    ),
    "no-gpu-framework": (
        {"frameworks": ["null"], "targets": [{"arch": "amd64", "accelerator": "fpga"}]},
        "Framework 'null' does not support accelerator fpga (spec.accelerators: cpu).",
    ),
}


def test_unsatisfiable_specs_end_failed_naming_the_missing_piece_and_recover(tmp_path: Path):
    assets = scratch_assets(tmp_path / "assets")

    async def scenario() -> None:
        async with kube_api() as (_, url):
            api = Api(url)
            await register_assets(api, assets, {**CATALOG, "frameworks": ["onnxruntime", "null"]})
            for name, (spec, _) in UNSATISFIABLE.items():
                await api.create(_evaluation(name, **spec))
            async with operator(operator_settings(url, tmp_path, assets)) as running:
                for name, (_, message) in UNSATISFIABLE.items():
                    status = await eventually(lambda n=name: _phase(api, n, "Failed"), timeout_s=30, what=name)
                    assert status["lastError"] == message
                    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
                    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "Unsatisfiable", message)
                    assert status["runs"] == []
                assert await api.list("jobs") == []
                events = (await api.client.get("/api/v1/namespaces/default/events")).json()["items"]
                assert {e["involvedObject"]["name"] for e in events if e["reason"] == "Unsatisfiable"} == set(
                    UNSATISFIABLE
                )
                assert not running.task.done()  # no crash loop

                # The missing image appears: the same Evaluation is planned again and runs.
                framework = await api.get("frameworks", "onnxruntime")
                assert framework is not None
                containers = [
                    *framework["spec"]["containers"],
                    {"arch": "ppc64le", "accelerator": "gpu", "image": "example.org/ort:ppc64le-cuda"},
                ]
                await api.patch("frameworks", "onnxruntime", {"spec": {"containers": containers}})
                await eventually(lambda: _job_count(api, 1), timeout_s=30, what="the no-image Job")
                [job] = await api.list("jobs")
                assert job["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/arch": "ppc64le"}
                assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "example.org/ort:ppc64le-cuda"
                status = await eventually(lambda: _phase(api, "no-image", "Running"), timeout_s=30, what="Running")
                assert status["lastError"] == ""
            await api.close()

    asyncio.run(scenario())


def test_operator_restart_mid_evaluation_creates_no_duplicate_job(tmp_path: Path):
    assets = scratch_assets(tmp_path / "assets")

    async def scenario() -> None:
        async with kube_api() as (emulator, url):
            api = Api(url)
            await register_assets(api, assets, CATALOG)
            await api.create(_evaluation("restarted", batch_sizes=[1, 2, 4], parallelism=2))
            settings = operator_settings(url, tmp_path, assets)
            first = await start_operator(settings)
            await eventually(lambda: _job_count(api, 2), timeout_s=30, what="2 Jobs")
            await eventually(lambda: _phase(api, "restarted", "Running"), timeout_s=30, what="Running")
            await first.stop()
            before = {j["metadata"]["name"]: j["metadata"]["uid"] for j in await api.list("jobs")}
            posts = _job_posts(emulator)
            assert posts == 2

            async with operator(settings) as second:
                await eventually(lambda: _passes(second, 3), timeout_s=30, what="reconcile passes after restart")
                after = {j["metadata"]["name"]: j["metadata"]["uid"] for j in await api.list("jobs")}
                assert after == before  # the same two Jobs, not re-created
                assert _job_posts(emulator) == posts  # and not even attempted

                # One finishes: exactly one more starts (parallelism 2), none twice.
                name = sorted(before)[0]
                await api.patch_status(
                    "jobs", name, {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
                )
                await eventually(lambda: _job_count(api, 3), timeout_s=30, what="the third Job")
                await asyncio.sleep(1.0)
                assert len(await api.list("jobs")) == 3 and _job_posts(emulator) == 3
            await api.close()

    async def _passes(running: Any, count: int) -> bool:
        return len(running.reconciler.latencies_s) >= count

    asyncio.run(scenario())


def test_lost_responses_and_transient_errors_are_retried_without_duplicates(tmp_path: Path):
    assets = scratch_assets(tmp_path / "assets")

    async def scenario() -> None:
        async with kube_api() as (emulator, url):
            api = Api(url)
            await register_assets(api, assets, CATALOG)
            # The API server fails the first Framework lists, and answers the first Job creation with 503 although
            # it stored the Job (a response lost on the way): kopf retries, the retry finds the Job.
            emulator[f"get {collection('frameworks')}"][:2] << 503
            emulator[f"post {collection('jobs')}"][:1] << 503
            await api.create(_evaluation("flaky"))
            async with operator(operator_settings(url, tmp_path, assets)):
                status = await eventually(lambda: _phase(api, "flaky", "Running"), timeout_s=30, what="Running")
                await asyncio.sleep(1.0)
                jobs = await api.list("jobs")
                assert len(jobs) == 1 and _job_posts(emulator) == 1
                assert status["runs"][0]["job_name"] == jobs[0]["metadata"]["name"]
            framework_lists = [
                r for r in list(emulator) if r.method == "GET" and str(r.url.path) == collection("frameworks")
            ]
            assert len(framework_lists) >= 3  # two failures, then the retry that worked
            await api.close()

    asyncio.run(scenario())


def test_changed_spec_replaces_stale_jobs_and_deletion_cleans_up(tmp_path: Path):
    assets = scratch_assets(tmp_path / "assets")

    async def scenario() -> None:
        async with kube_api() as (_, url):
            api = Api(url)
            await register_assets(api, assets, CATALOG)
            await api.create(_evaluation("changing", batch_sizes=[1, 2]))
            await api.create(_evaluation("bystander"))
            async with operator(operator_settings(url, tmp_path, assets)):
                await eventually(lambda: _job_count(api, 3), timeout_s=30, what="3 Jobs")
                old = {j["metadata"]["name"] for j in await api.list("jobs")}

                await api.patch("evaluations", "changing", {"spec": {"batch_sizes": [8]}})
                status = await eventually(
                    lambda: _generation(api, "changing", 2), timeout_s=30, what="observedGeneration 2"
                )
                assert [r["batch_size"] for r in status["runs"]] == [8]
                jobs = {j["metadata"]["name"]: j for j in await api.list("jobs")}
                assert len(jobs) == 2 and status["runs"][0]["job_name"] in jobs
                assert len(set(jobs) & old) == 1  # the bystander's Job is untouched

                await api.delete("evaluations", "changing")
                await eventually(lambda: _job_count(api, 1), timeout_s=30, what="the deleted Evaluation's Jobs gone")
                [left] = await api.list("jobs")
                assert left["metadata"]["labels"]["mlmodelscope.org/evaluation"] == "bystander"
            await api.close()

    async def _generation(api: Api, name: str, generation: int) -> dict[str, Any] | None:
        status = await _status(api, name)
        return status if status.get("observedGeneration") == generation else None

    asyncio.run(scenario())


def test_a_model_edited_while_the_operator_was_down_keeps_finished_runs_and_replans_unfinished_ones(tmp_path: Path):
    """Plans are cached per (uid, generation) in memory: a restarted operator plans the same generation again with
    the edited Model, whose checksum gives other run ids. A finished run keeps what it ran; an unfinished run's
    Job (running the old spec) is deleted and the run starts again with the new spec, and an Event says why."""
    assets = scratch_assets(tmp_path / "assets")
    name = "edited"

    async def scenario() -> None:
        async with kube_api() as (_, url):
            api = Api(url)
            await register_assets(api, assets, CATALOG)
            await api.create(_evaluation(name, batch_sizes=[1, 2], parallelism=2))
            settings = operator_settings(url, tmp_path, assets)
            async with operator(settings):
                await eventually(lambda: _job_count(api, 2), timeout_s=30, what="2 Jobs")
                first = sorted(j["metadata"]["name"] for j in await api.list("jobs"))
                failed = {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "Backoff"}]}
                await api.patch_status("jobs", first[0], failed)

                async def one_failed() -> list[dict[str, Any]] | None:
                    runs: list[dict[str, Any]] = (await _status(api, name)).get("runs") or []
                    return runs if sorted(r["state"] for r in runs) == ["Failed", "Running"] else None

                before = await eventually(one_failed, timeout_s=30, what="one run Failed, one Running")
            await api.patch("models", "digits-cnn", {"spec": {"description": "edited while the operator was down"}})

            async with operator(settings):

                async def replanned() -> list[dict[str, Any]] | None:
                    runs: list[dict[str, Any]] = (await _status(api, name)).get("runs") or []
                    names = {j["metadata"]["name"] for j in await api.list("jobs")}
                    moved = [r for r in runs if r["state"] != "Failed" and r["job_name"] not in first]
                    return runs if moved and moved[0]["job_name"] in names and len(names) == 2 else None

                after = await eventually(replanned, timeout_s=30, what="the unfinished run re-planned")
                by_name = {r["name"]: r for r in before}
                for run in after:
                    old = by_name[run["name"]]  # the same matrix cells, no run vanished
                    if old["state"] == "Failed":  # finished: kept as it ran, with the old checksums
                        assert run == old
                    else:  # the stale Job is gone; the new run carries the edited Model's checksum
                        assert run["run_id"] != old["run_id"] and run["state"] in ("Pending", "Running")
                        assert run["spec_sha256"]["model"] != old["spec_sha256"]["model"]
                        assert run["spec_sha256"]["framework"] == old["spec_sha256"]["framework"]
                        assert old["job_name"] not in {j["metadata"]["name"] for j in await api.list("jobs")}
                assert len(after) == len(before) == 2

                async def warned() -> list[dict[str, Any]]:
                    return [e for e in await api.list("events") if e.get("reason") == "ResourceChanged"]

                (event,) = await eventually(warned, timeout_s=30, what="the ResourceChanged Event")
                assert "model digits-cnn changed" in event["message"], event
            await api.close()

    asyncio.run(scenario())


def test_a_job_create_refused_for_good_is_said_and_retried_while_other_runs_go_on(tmp_path: Path):
    """A 422 (or 403, a quota) on a Job create is not retried by kopf as an error: the run says why (Pending,
    lastError, a JobRefused Event), the other run's Job is created in the same pass, and the next pass tries again."""
    assets = scratch_assets(tmp_path / "assets")
    name = "refused"

    async def scenario() -> None:
        async with kube_api() as (emulator, url):
            api = Api(url)
            await register_assets(api, assets, CATALOG)
            emulator[f"post {collection('jobs')}"][:1] << 422
            await api.create(_evaluation(name, batch_sizes=[1, 2], parallelism=2))
            async with operator(operator_settings(url, tmp_path, assets)):

                async def refusal() -> list[dict[str, Any]]:
                    return [e for e in await api.list("events") if e.get("reason") == "JobRefused"]

                (event,) = await eventually(refusal, timeout_s=30, what="the JobRefused Event")
                assert "the API server refused the Job" in event["message"] and "HTTP 422" in event["message"]
                await eventually(lambda: _job_count(api, 2), timeout_s=30, what="both Jobs, the refused one retried")
                status = await eventually(lambda: _phase(api, name, "Running"), timeout_s=30, what="Running")
                assert [r["state"] for r in status["runs"]] == ["Running", "Running"]
            await api.close()

    asyncio.run(scenario())
