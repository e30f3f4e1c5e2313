"""The Jobs the operator builds fit real clusters (pure: planning and build_job, no API server).

Pull secrets, the agent ServiceAccount without a token, the TTL, Guaranteed QoS, a target's devices per run and
repeats, placement (node selector, tolerations, affinity, priority), the S3 settings by secret reference, the shared
artifact cache, the bound on runs, and the RunSpec in the Job, validated as the agent validates it.
"""

from __future__ import annotations

from typing import Any

import pytest

from mlmodelscope.core.artifacts.settings import S3Settings
from mlmodelscope.core.manifests.resources import Model
from mlmodelscope.core.run_contract import RunSpec, spec_sha256
from mlmodelscope.operator import jobs, planning
from mlmodelscope.operator.catalog import Applied, ResourceCatalog
from mlmodelscope.operator.errors import UnsatisfiableError
from mlmodelscope.operator.evaluation import EvaluationSpec
from mlmodelscope.operator.settings import OperatorSettings
from tests.support.operator_catalog import digits_catalog, digits_evaluation_spec

UID = "0b6d4f1e-1111-2222-3333-444455556666"


def _jobs(
    spec: EvaluationSpec, settings: OperatorSettings, catalog: ResourceCatalog | None = None
) -> list[dict[str, Any]]:
    runs = planning.plan("ev", UID, spec, catalog or digits_catalog(), settings)
    return [
        jobs.build_job(
            run,
            evaluation="ev",
            namespace="team-a",
            uid=UID,
            spec=spec,
            settings=settings,
            run_spec_json=jobs.run_spec(run, "team-a/ev", spec, settings).model_dump_json(),
        )
        for run in runs
    ]


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def _container(job: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = _pod(job)["containers"][0]
    return container


def _unsatisfiable(spec: EvaluationSpec, settings: OperatorSettings) -> str:
    with pytest.raises(UnsatisfiableError) as raised:
        planning.plan("ev", UID, spec, digits_catalog(), settings)
    return raised.value.message


def test_pods_pull_with_the_secrets_run_as_the_agent_account_without_a_token_and_expire():
    settings = OperatorSettings(image_pull_secrets=["registry-a", "registry-b"], job_ttl_s=600)
    [job] = _jobs(digits_evaluation_spec(), settings)
    pod = _pod(job)
    assert pod["imagePullSecrets"] == [{"name": "registry-a"}, {"name": "registry-b"}]
    assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("mlmodelscope-agent", False)
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    assert _container(job)["command"] == ["python", "-m", "mlmodelscope.agent"]

    [plain] = _jobs(digits_evaluation_spec(), OperatorSettings(job_ttl_s=None, agent_service_account="bench-agent"))
    assert "imagePullSecrets" not in _pod(plain) and "ttlSecondsAfterFinished" not in plain["spec"]
    assert (_pod(plain)["serviceAccountName"], _pod(plain)["automountServiceAccountToken"]) == ("bench-agent", False)
    assert OperatorSettings().job_ttl_s == 3600  # the default keeps finished Jobs an hour


def test_requests_equal_limits_by_default_and_a_target_overrides_the_evaluations_resources():
    settings = OperatorSettings()
    [job] = _jobs(digits_evaluation_spec(resources={"limits": {"cpu": "3", "memory": "2Gi"}}), settings)
    assert _container(job)["resources"] == {
        "requests": {"cpu": "3", "memory": "2Gi"},
        "limits": {"cpu": "3", "memory": "2Gi"},
    }  # Guaranteed QoS
    spec = digits_evaluation_spec(
        resources={"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        targets=[{"arch": "amd64"}, {"arch": "amd64", "accelerator": "gpu", "resources": {"limits": {"cpu": "8"}}}],
    )
    cpu, gpu = _jobs(spec, settings)
    assert _container(cpu)["resources"] == {"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    assert _container(gpu)["resources"] == {
        "requests": {"cpu": "8", "nvidia.com/gpu": "1"},
        "limits": {"cpu": "8", "nvidia.com/gpu": "1"},
    }


def test_count_is_devices_per_run_and_repeats_are_separate_jobs():
    settings = OperatorSettings()
    [job] = _jobs(digits_evaluation_spec(targets=[{"arch": "amd64", "accelerator": "gpu", "count": 2}]), settings)
    resources = _container(job)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "2"

    repeated = _jobs(digits_evaluation_spec(targets=[{"arch": "amd64", "accelerator": "gpu", "repeats": 3}]), settings)
    assert len(repeated) == len({j["metadata"]["name"] for j in repeated}) == 3
    assert [j["metadata"]["annotations"]["mlmodelscope.org/run-key"][-3:] for j in repeated] == ["/r0", "/r1", "/r2"]
    assert all(_container(j)["resources"]["limits"]["nvidia.com/gpu"] == "1" for j in repeated)

    # A device quantity written in resources that agrees with count is fine; one that contradicts it is refused.
    agreeing = digits_evaluation_spec(
        targets=[{"arch": "amd64", "accelerator": "gpu", "count": 2}],
        resources={"limits": {"cpu": "2", "nvidia.com/gpu": "2"}},
    )
    [job] = _jobs(agreeing, settings)
    assert _container(job)["resources"]["limits"]["nvidia.com/gpu"] == "2"
    contradicting = digits_evaluation_spec(
        targets=[{"arch": "amd64", "accelerator": "gpu"}], resources={"limits": {"cpu": "2", "nvidia.com/gpu": "2"}}
    )
    assert _unsatisfiable(contradicting, settings) == (
        "target amd64/gpu has count 1 (devices per run) but resources.limits asks for nvidia.com/gpu: 2; "
        "set count: 2 and leave nvidia.com/gpu out of resources."
    )
    cpu_with_a_gpu = digits_evaluation_spec(resources={"limits": {"cpu": "2", "nvidia.com/gpu": "1"}})
    assert _unsatisfiable(cpu_with_a_gpu, settings) == (
        "target amd64/cpu has no accelerator but resources.limits asks for nvidia.com/gpu: 1; "
        "set the target's accelerator and count instead."
    )


def test_a_targets_placement_reaches_the_pod():
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["bench"]}]}]
            }
        }
    }
    dedicated = {"key": "dedicated", "operator": "Equal", "value": "bench", "effect": "NoSchedule"}
    spec = digits_evaluation_spec(
        targets=[
            {
                "arch": "amd64",
                "accelerator": "gpu",
                "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                "tolerations": [dedicated],
                "affinity": affinity,
                "priority_class_name": "benchmark",
            },
            {"arch": "arm64"},
        ]
    )
    gpu, cpu = _jobs(spec, OperatorSettings())
    assert _pod(gpu)["nodeSelector"] == {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        "kubernetes.io/arch": "amd64",
    }
    assert _pod(gpu)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        dedicated,
    ]
    assert (_pod(gpu)["affinity"], _pod(gpu)["priorityClassName"]) == (affinity, "benchmark")
    assert _pod(cpu)["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    assert "affinity" not in _pod(cpu) and "priorityClassName" not in _pod(cpu) and _pod(cpu)["tolerations"] == []

    conflict = digits_evaluation_spec(targets=[{"arch": "arm64", "node_selector": {"kubernetes.io/arch": "amd64"}}])
    assert _unsatisfiable(conflict, OperatorSettings()) == (
        "target arm64/cpu has node_selector kubernetes.io/arch: amd64, which contradicts its arch arm64; "
        "leave kubernetes.io/arch out of node_selector."
    )


def _kubelet_env(container: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment a kubelet gives the container: values, and secretKeyRefs resolved from ``secrets``."""
    env: dict[str, str] = {}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            reference = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[reference["name"]][reference["key"]]
    return env


def test_s3_settings_reach_the_agent_by_secret_reference_and_the_cache_can_be_a_claim():
    settings = OperatorSettings(
        s3_secret="artifacts-s3", s3_endpoint_url="http://minio.mlms.svc:9000", artifact_cache_claim="mms-cache"
    )
    [job] = _jobs(digits_evaluation_spec(), settings)
    container = _container(job)
    secrets = {"artifacts-s3": {"accessKey": "AKIA-test", "secretKey": "s3cr3t"}}
    s3 = S3Settings.from_env(_kubelet_env(container, secrets))
    assert s3 is not None
    assert (s3.endpoint, s3.secure, s3.access_key, s3.secret_key) == (
        "minio.mlms.svc:9000",
        False,
        "AKIA-test",
        "s3cr3t",
    )
    assert "s3cr3t" not in str(job) and "AKIA-test" not in str(job)  # referenced, never copied
    volumes = {v["name"]: v for v in _pod(job)["volumes"]}
    assert volumes["cache"] == {"name": "cache", "persistentVolumeClaim": {"claimName": "mms-cache"}}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    run_spec = RunSpec.model_validate_json(_kubelet_env(container, secrets)["MLMODELSCOPE_RUN_SPEC"])
    assert mounts["cache"] == str(run_spec.cache_dir) == f"{settings.agent_work_dir}/cache"

    [plain] = _jobs(digits_evaluation_spec(), OperatorSettings())
    assert S3Settings.from_env(_kubelet_env(_container(plain), {})) is None
    assert {v["name"]: v for v in _pod(plain)["volumes"]}["cache"] == {"name": "cache", "emptyDir": {}}
    [tls] = _jobs(digits_evaluation_spec(), OperatorSettings(s3_endpoint_url="https://s3.example.org"))
    secure = S3Settings.from_env(_kubelet_env(_container(tls), {}))
    assert secure is not None and (secure.endpoint, secure.secure) == ("s3.example.org", True)
    with pytest.raises(ValueError, match="s3_endpoint_url"):
        OperatorSettings(s3_endpoint_url="s3.example.org/bucket")


def test_a_plan_larger_than_max_runs_is_refused_naming_the_product():
    spec = digits_evaluation_spec(
        frameworks=["onnxruntime"],
        targets=[{"arch": "amd64", "repeats": 3}, {"arch": "arm64", "repeats": 2}],
        batch_sizes=[1, 2, 4],
    )
    assert len(planning.plan("ev", UID, spec, digits_catalog(), OperatorSettings(max_runs=15))) == 15
    assert _unsatisfiable(spec, OperatorSettings(max_runs=14)) == (
        "the Evaluation plans 15 runs (1 models x 1 frameworks x 5 target repeats (amd64/cpu x3 + arm64/cpu x2) "
        "x 3 batch sizes), more than the limit of 14 runs per Evaluation (its status lists every run, and etcd "
        "stores at most 1.5 MiB per object); split it into several Evaluations."
    )


def _rescaled(catalog: ResourceCatalog, scale: float) -> ResourceCatalog:
    """The catalog with its Model's pixel scale patched (as `kubectl patch` would: a new resourceVersion)."""
    applied = catalog.models["digits-cnn"]
    document = applied.resource.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    document["spec"]["inputs"][0]["preprocess"][0]["normalize"]["scale"] = scale
    edited = Applied(Model.model_validate(document), applied.namespace, resource_version="8", generation=2)
    return ResourceCatalog(catalog.namespaces, {"digits-cnn": edited}, catalog.frameworks, catalog.datasets)


def test_the_job_carries_the_cluster_resources_and_an_edited_model_plans_a_new_run():
    settings = OperatorSettings(agent_assets_dir="/opt/mlmodelscope/assets")
    catalog = digits_catalog()
    edited = _rescaled(catalog, 255.0)
    [before] = planning.plan("ev", UID, digits_evaluation_spec(), catalog, settings)
    [after] = planning.plan("ev", UID, digits_evaluation_spec(), edited, settings)
    assert before.spec_sha256["model"] != after.spec_sha256["model"]
    assert before.spec_sha256["framework"] == after.spec_sha256["framework"]
    assert before.run_id != after.run_id and before.job_name != after.job_name

    [job] = _jobs(digits_evaluation_spec(), settings, edited)
    env = {e["name"]: e.get("value") for e in _container(job)["env"]}
    run_spec = RunSpec.model_validate_json(env["MLMODELSCOPE_RUN_SPEC"])  # as the agent reads it
    model = run_spec.resources.model
    assert (model.name, model.source, model.namespace) == ("digits-cnn", "cluster:team-a", "team-a")
    assert (model.resource_version, model.generation) == ("8", 2)
    assert model.base_dir == "/opt/mlmodelscope/assets/models"
    assert model.sha256 == spec_sha256(model.spec) == after.spec_sha256["model"]
    assert run_spec.resources.checksums() == after.spec_sha256
    assert run_spec.resources.framework.base_dir == "/opt/mlmodelscope/assets/frameworks"
    dataset = run_spec.resources.dataset
    assert dataset is not None and dataset.base_dir == "/opt/mlmodelscope/assets/datasets"
    assert (run_spec.run_id, run_spec.dataset) == (after.run_id, "digits")
    assert run_spec.intra_op_threads is None  # the agent derives it from the container's CPU limit
    assert str(run_spec.output_dir) == f"{settings.agent_work_dir}/out" and run_spec.nats_url == settings.nats_url
    # The agent rebuilds its registry from exactly these specs: the patched scale, not the image's copy.
    registry = run_spec.resources.registry("the Job's run spec")
    inputs = registry.model("digits-cnn").spec.model_dump(mode="json")["inputs"]
    assert inputs[0]["preprocess"][0]["normalize"]["scale"] == 255.0
