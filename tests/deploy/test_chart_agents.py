"""What the chart hands the operator for its predictor Jobs (the agents), rendered by a real helm: image registry and
tag (into the built-in Framework resources too), pull secrets, Job TTL, pending timeout, artifact cache, release
namespace and object store all reach the operator's settings; the agents' NetworkPolicy allows exactly NATS, DNS and
the configured artifact endpoints; every watched namespace gets what its Jobs need (the NATS token and object-store
Secrets with the release namespace's values, the agent ServiceAccount, the operator's Role, the NetworkPolicy)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.support.chart import by_kind, render

REGISTRY = ["--set", "image.registry=registry.internal/mms,image.tag=1.2.3"]
NATS_RULE = {"protocol": "TCP", "port": 4222}


def _operator_settings(documents: list[dict[str, Any]]) -> Any:
    from mlmodelscope.operator.settings import OperatorSettings

    deployment = next(d for d in by_kind(documents, "Deployment") if d["metadata"]["name"].endswith("-operator"))
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    return OperatorSettings.from_env(env)


def _workloads(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] in {"Deployment", "StatefulSet"}]


# --- images ----------------------------------------------------------------------------------------------------------


def test_registry_and_tag_reach_the_builtin_frameworks_and_the_charts_own_images(helm_home: Path) -> None:
    documents = render(helm_home, *REGISTRY)
    frameworks = by_kind(documents, "Framework")
    assert {f["metadata"]["name"] for f in frameworks} == {
        "mxnet",
        "null",
        "onnxruntime",
        "pytorch",
        "tensorflow",
        "tflite",
    }
    for framework in frameworks:
        name = framework["metadata"]["name"]
        for container in framework["spec"]["containers"]:
            suffix = "-cuda" if container["accelerator"] == "gpu" else ""
            assert container["image"] == f"registry.internal/mms/agent-{name}:1.2.3{suffix}", (name, container)
    images = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"] for d in _workloads(documents)
    }
    assert images["rel-mlmodelscope-operator"] == "registry.internal/mms/operator:1.2.3"
    assert images["rel-mlmodelscope-collector"] == "registry.internal/mms/collector:1.2.3"


def test_registry_alone_keeps_the_resources_versions_and_overrides_still_win(helm_home: Path) -> None:
    documents = render(
        helm_home,
        "--set", "image.registry=registry.internal/mms",
        "--set", "builtinResources.agentImages.pytorch.gpu=other.example/torch:custom",
    )  # fmt: skip
    pytorch = next(f for f in by_kind(documents, "Framework") if f["metadata"]["name"] == "pytorch")
    assert {(c["arch"], c["accelerator"], c["image"]) for c in pytorch["spec"]["containers"]} == {
        ("amd64", "cpu", "registry.internal/mms/agent-pytorch:0.1.0"),
        ("arm64", "cpu", "registry.internal/mms/agent-pytorch:0.1.0"),
        ("amd64", "gpu", "other.example/torch:custom"),
    }


# --- the operator's settings for its Jobs ---------------------------------------------------------------------------


def test_values_reach_the_operators_job_settings(helm_home: Path) -> None:
    documents = render(
        helm_home,
        *REGISTRY,
        "--set", "image.pullSecrets={regcred,mirror-pull}",
        "--set", "agents.jobTtlSeconds=600,agents.pendingTimeoutSeconds=90",
        "--set", "agents.artifactCache.enabled=true,agents.artifactCache.size=50Gi",
    )  # fmt: skip
    settings = _operator_settings(documents)
    assert settings.image_pull_secrets == ["regcred", "mirror-pull"]
    assert settings.job_ttl_s == 600
    assert settings.pending_timeout_s == 90.0
    assert settings.release_namespace == "mlms"
    assert settings.agent_service_account == "rel-mlmodelscope-agent"
    (claim,) = by_kind(documents, "PersistentVolumeClaim")
    assert settings.artifact_cache_claim == claim["metadata"]["name"] == "rel-mlmodelscope-artifact-cache"
    assert claim["metadata"]["namespace"] == "mlms"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    # Every pod the chart runs pulls with the same secrets.
    for workload in _workloads(documents):
        pulls = workload["spec"]["template"]["spec"]["imagePullSecrets"]
        assert pulls == [{"name": "regcred"}, {"name": "mirror-pull"}], workload["metadata"]["name"]


def test_defaults_and_the_alternatives_of_ttl_cache_and_pull_secrets(helm_home: Path) -> None:
    defaults = render(helm_home)
    settings = _operator_settings(defaults)
    assert (settings.image_pull_secrets, settings.job_ttl_s, settings.pending_timeout_s) == ([], 3600, 600.0)
    assert (settings.artifact_cache_claim, settings.s3_secret, settings.s3_endpoint_url) == ("", "", "")
    assert not by_kind(defaults, "PersistentVolumeClaim")
    assert all("imagePullSecrets" not in w["spec"]["template"]["spec"] for w in _workloads(defaults))

    kept = render(helm_home, "--set", "agents.jobTtlSeconds=null")
    assert _operator_settings(kept).job_ttl_s is None  # finished Jobs stay

    own = render(helm_home, "--set", "agents.artifactCache.enabled=true,agents.artifactCache.existingClaim=shared")
    assert _operator_settings(own).artifact_cache_claim == "shared"
    assert not by_kind(own, "PersistentVolumeClaim")


# --- artifact endpoints: S3 settings and the agents' NetworkPolicy ------------------------------------------------


def _agent_egress(documents: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    policies = [p for p in by_kind(documents, "NetworkPolicy") if p["metadata"]["name"].endswith("-agents")]
    assert policies
    for policy in policies:
        assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "mlmodelscope-agent"}
        assert policy["spec"]["ingress"] == [] and set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    return [p["spec"]["egress"] for p in policies]


def _nats_and_dns(egress: list[dict[str, Any]]) -> list[dict[str, Any]]:
    nats, dns, *rest = egress
    assert nats["ports"] == [NATS_RULE]
    (peer,) = nats["to"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "mlms"}}
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "nats"
    assert dns == {
        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    return rest


def _ip_rule(cidrs: list[str], ports: list[int]) -> dict[str, Any]:
    return {"to": [{"ipBlock": {"cidr": c}} for c in cidrs], "ports": [{"protocol": "TCP", "port": p} for p in ports]}


HTTP_HOSTS = [
    "--set", "networkPolicy.agentEgress[0].cidr=203.0.113.0/24,networkPolicy.agentEgress[0].ports={443,8443}",
    "--set", "networkPolicy.agentEgress[1].cidr=198.51.100.7/32,networkPolicy.agentEgress[1].ports={80}",
]  # fmt: skip


@pytest.mark.parametrize(
    ("values", "artifact_rules", "s3"),
    [
        ([], [], ("", "")),
        (HTTP_HOSTS, [_ip_rule(["203.0.113.0/24"], [443, 8443]), _ip_rule(["198.51.100.7/32"], [80])], ("", "")),
        (
            ["--set", "objectStore.external.endpoint=10.1.2.3:9000,objectStore.external.secure=false",
             "--set", "objectStore.external.existingSecret=team-s3"],
            [_ip_rule(["10.1.2.3/32"], [9000])],
            ("team-s3", "http://10.1.2.3:9000"),
        ),
        (
            ["--set", "objectStore.external.endpoint=s3.example.com,objectStore.external.existingSecret=team-s3"],
            [_ip_rule(["0.0.0.0/0"], [443])],  # a host name: any address, on the endpoint's port only
            ("team-s3", "https://s3.example.com"),
        ),
        (
            ["--set", "objectStore.external.endpoint=s3.example.com:8443",
             "--set", "networkPolicy.objectStoreCidrs={192.0.2.0/28,192.0.2.64/28}", *HTTP_HOSTS[:2]],
            [_ip_rule(["192.0.2.0/28", "192.0.2.64/28"], [8443]), _ip_rule(["203.0.113.0/24"], [443, 8443])],
            ("", "https://s3.example.com:8443"),
        ),
    ],
    ids=["nothing", "http-hosts", "external-ip", "external-host", "external-cidrs"],
)  # fmt: skip
def test_agents_may_reach_exactly_nats_dns_and_the_artifact_endpoints(
    helm_home: Path, values: list[str], artifact_rules: list[dict[str, Any]], s3: tuple[str, str]
) -> None:
    documents = render(helm_home, *values)
    for egress in _agent_egress(documents):
        assert _nats_and_dns(egress) == artifact_rules
    settings = _operator_settings(documents)
    assert (settings.s3_secret, settings.s3_endpoint_url) == s3


def test_bundled_minio_is_reached_by_pod_selector_with_its_secret_in_every_namespace(helm_home: Path) -> None:
    documents = render(
        helm_home, "--set", "objectStore.minio.enabled=true", "--set", "operator.watchNamespaces={team-a,team-b}"
    )
    for egress in _agent_egress(documents):
        (minio,) = _nats_and_dns(egress)
        assert minio["ports"] == [{"protocol": "TCP", "port": 9000}]
        (peer,) = minio["to"]
        assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "mlms"}}
        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "minio"
    settings = _operator_settings(documents)
    assert settings.s3_secret == "rel-mlmodelscope-minio"
    assert settings.s3_endpoint_url == "http://rel-mlmodelscope-minio.mlms.svc:9000"  # reachable from team-a
    secrets = [s for s in by_kind(documents, "Secret") if s["metadata"]["name"] == settings.s3_secret]
    assert {s["metadata"]["namespace"] for s in secrets} == {"mlms", "team-a", "team-b"}
    assert len({(s["data"]["accessKey"], s["data"]["secretKey"]) for s in secrets}) == 1  # one set of keys


def test_external_nats_is_the_only_wide_rule(helm_home: Path) -> None:
    documents = render(helm_home, "--set", "nats.enabled=false,nats.externalUrl=nats://nats.example:4222")
    for egress in _agent_egress(documents):
        nats, dns = egress
        assert nats == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [NATS_RULE]}
        assert {p["port"] for p in dns["ports"]} == {53}


# --- watched namespaces --------------------------------------------------------------------------------------------


def test_every_watched_namespace_gets_what_its_jobs_need(helm_home: Path) -> None:
    watched = {"team-a", "team-b"}
    documents = render(
        helm_home,
        "--set", "operator.watchNamespaces={team-a,team-b}",
        "--set", "agents.artifactCache.enabled=true",
    )  # fmt: skip
    settings = _operator_settings(documents)
    assert settings.namespaces == ["team-a", "team-b"] and settings.release_namespace == "mlms"

    def namespaces(kind: str, name: str) -> set[str]:
        return {d["metadata"]["namespace"] for d in by_kind(documents, kind) if d["metadata"]["name"] == name}

    token_secret = settings.nats_token_secret
    assert namespaces("Secret", token_secret) == watched | {"mlms"}
    tokens = {
        base64.b64decode(s["data"]["token"])
        for s in by_kind(documents, "Secret")
        if s["metadata"]["name"] == token_secret
    }
    assert len(tokens) == 1, "the same token everywhere"
    account = namespaces("ServiceAccount", settings.agent_service_account)
    assert account == watched
    assert namespaces("Role", "rel-mlmodelscope-operator") == watched
    assert namespaces("RoleBinding", "rel-mlmodelscope-operator") == watched
    assert namespaces("NetworkPolicy", "rel-mlmodelscope-agents") == watched
    assert namespaces("PersistentVolumeClaim", settings.artifact_cache_claim) == watched
    assert namespaces("Framework", "onnxruntime") == watched | {"mlms"}  # and the release namespace's fallback

    # NATS (in the release namespace) admits the agents of exactly those namespaces, and the collector.
    nats = next(p for p in by_kind(documents, "NetworkPolicy") if p["metadata"]["name"] == "rel-mlmodelscope-nats")
    assert nats["metadata"]["namespace"] == "mlms"
    clients = nats["spec"]["ingress"][0]["from"]
    agents = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in clients
        if "namespaceSelector" in peer
        and peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "mlmodelscope-agent"}
    }
    assert agents == watched
    (collector,) = [p for p in clients if "namespaceSelector" not in p]
    assert collector["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "collector"
    assert nats["spec"]["ingress"][0]["ports"] == [NATS_RULE]


@pytest.mark.parametrize("section", ["image", "agents", "networkPolicy"])
def test_the_job_facing_values_are_typed_and_described(section: str) -> None:
    import json

    from tests.support.chart import CHART

    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))

    def walk(node: dict[str, Any], path: str) -> None:
        assert "type" in node, path
        assert node.get("description") or path == section, f"{path} has no description"
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}")

    walk(schema["properties"][section], section)
