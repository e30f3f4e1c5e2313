"""The Helm chart, rendered by a real helm and validated as the API server would: every built-in object against
Kubernetes' own schemas (kubernetes-validate, strict), every custom resource against our CRDs, and the values
against values.schema.json; plus the properties the chart promises (least-privilege RBAC, pod security,
NetworkPolicies, ServiceMonitor only with its CRD, dashboards as labelled ConfigMaps, the copies of crds/ and
assets/ in sync)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import CHART, EXPECTED_RULES, by_kind, granted_rules, helm, render
from tests.support.operator_schema import admission_errors
from tests.support.paths import REPO

KUBERNETES_VERSION = "1.33.0"
ALL_VALUES = CHART / "ci" / "all-values.yaml"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
OUR_KINDS = {"Model", "Framework", "Dataset", "Evaluation"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}


@pytest.fixture(scope="module")
def default_render(helm_home: Path) -> list[dict[str, Any]]:
    return render(helm_home)


@pytest.fixture(scope="module")
def production_render(helm_home: Path) -> list[dict[str, Any]]:
    return render(helm_home, "-f", str(CHART / "ci" / "production-values.yaml"), "--api-versions", SERVICE_MONITOR_API)


@pytest.fixture(scope="module")
def sqlite_render(helm_home: Path) -> list[dict[str, Any]]:
    return render(helm_home, "-f", str(CHART / "ci" / "sqlite-values.yaml"))


@pytest.fixture(scope="module")
def full_render(helm_home: Path) -> list[dict[str, Any]]:
    return render(helm_home, "-f", str(ALL_VALUES), "--api-versions", SERVICE_MONITOR_API)


def _validate_builtin(document: dict[str, Any]) -> None:
    import kubernetes_validate  # 108 MB of schemas: imported only when a test needs it

    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    "values",
    [[], *(["-f", str(p)] for p in sorted((CHART / "ci").glob("*.yaml")))],
    ids=["default", *(p.stem for p in sorted((CHART / "ci").glob("*.yaml")))],
)
def test_helm_lint_strict(helm_home: Path, values: list[str]) -> None:
    result = helm("lint", "--strict", str(CHART), *values, home=helm_home)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("which", ["default_render", "full_render", "production_render", "sqlite_render"])
def test_every_object_validates(which: str, request: pytest.FixtureRequest) -> None:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (.venv: pip install)")
    documents: list[dict[str, Any]] = request.getfixturevalue(which)
    assert documents
    checked = 0
    for document in documents:
        name = f"{document['kind']}/{document['metadata']['name']}"
        if document["kind"] in OUR_KINDS:
            assert admission_errors(document) == [], name
        elif document["kind"] == "ServiceMonitor":
            continue  # the Prometheus Operator's CRD is not ours; its shape is checked below
        else:
            _validate_builtin(document)
        checked += 1
    assert checked == len([d for d in documents if d["kind"] != "ServiceMonitor"])


def test_kubernetes_validate_catches_a_broken_object(default_render: list[dict[str, Any]]) -> None:
    """The validation above can fail: a typo in a rendered Deployment is rejected."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    deployment = json.loads(json.dumps(by_kind(default_render, "Deployment")[0]))
    deployment["spec"]["template"]["spec"]["containers"][0]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "collector.bogus=1"], "bogus"),
        (["--set", "operator.postingLevel=loud"], "postingLevel"),
        (["--set", "collector.port=70000"], "port"),
        (["--set", "collector.database.url=mysql://x"], "url"),
        (["--set", "podSecurity.runAsUser=0"], "runAsUser"),
        (["--set", "builtinResources.agentImages.caffe.cpu=x"], "caffe"),
        (["--set", "serviceMonitor.interval=soon"], "interval"),
        (["--set", "operator.watchNamespaces={Bad_Name}"], "watchNamespaces"),
        (["--set", "nats.auth.existingSecret=Bad_Name"], "existingSecret"),
        (["--set", "nats.auth.enabled=yes"], "enabled"),
        (["--set", "image.pullSecrets={Bad_Name}"], "pullSecrets"),
        (["--set", "agents.jobTtlSeconds=-1"], "jobTtlSeconds"),
        (["--set", "agents.pendingTimeoutSeconds=0"], "pendingTimeoutSeconds"),
        (["--set", "agents.artifactCache.accessModes={ReadWriteSometimes}"], "accessModes"),
        (["--set", "networkPolicy.agentEgress[0].cidr=example.com,networkPolicy.agentEgress[0].ports={443}"], "cidr"),
        (["--set", "networkPolicy.agentEgress[0].cidr=10.0.0.0/8"], "ports"),
        (["--set", "networkPolicy.objectStoreCidrs={s3.example.com}"], "objectStoreCidrs"),
    ],
)
def test_values_schema_rejects_invalid_values(helm_home: Path, values: list[str], message: str) -> None:
    result = helm("template", "rel", str(CHART), *values, home=helm_home, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr or "schema" in result.stderr
    assert message in result.stderr


def test_every_default_value_is_described_by_the_schema() -> None:
    """values.yaml keys mirror the schema's properties (the schema forbids anything else)."""
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, path
            assert isinstance(value, dict), path
            for key, child in value.items():
                assert key in node["properties"], f"{path}.{key} not in values.schema.json"
                walk(child, node["properties"][key], f"{path}.{key}")

    walk(values, schema, "values")


def test_crds_are_shipped(default_render: list[dict[str, Any]]) -> None:
    # That the chart's copies equal crds/ and assets/ is tests/deploy/test_generated_files.py's check.
    crds = {d["metadata"]["name"] for d in by_kind(default_render, "CustomResourceDefinition")}
    assert crds == {yaml.safe_load(p.read_text())["metadata"]["name"] for p in (REPO / "crds").glob("*.yaml")}


def test_builtin_resources_match_the_assets(default_render: list[dict[str, Any]]) -> None:
    for folder, kind in (("models", "Model"), ("frameworks", "Framework"), ("datasets", "Dataset")):
        expected = {
            yaml.safe_load(p.read_text())["metadata"]["name"] for p in (REPO / "assets" / folder).glob("*.yaml")
        }
        rendered = by_kind(default_render, kind)
        assert {d["metadata"]["name"] for d in rendered} == expected
        assert {d["metadata"]["namespace"] for d in rendered} == {"mlms"}
    onnx = next(d for d in by_kind(default_render, "Framework") if d["metadata"]["name"] == "onnxruntime")
    source = yaml.safe_load((REPO / "assets" / "frameworks" / "onnxruntime.yaml").read_text())
    assert onnx["spec"] == source["spec"]


def test_agent_image_overrides_reach_the_framework_resources(full_render: list[dict[str, Any]]) -> None:
    frameworks = [d for d in by_kind(full_render, "Framework") if d["metadata"]["name"] == "onnxruntime"]
    assert {d["metadata"]["namespace"] for d in frameworks} == {"mlms", "team-a"}
    images = {(c["accelerator"], c["image"]) for c in frameworks[0]["spec"]["containers"]}
    assert images == {
        ("cpu", "registry.example/agent-onnxruntime:dev"),
        ("gpu", "registry.example/agent-onnxruntime:dev-cuda"),
    }
    pytorch = next(d for d in by_kind(full_render, "Framework") if d["metadata"]["name"] == "pytorch")
    assert all(c["image"].startswith("ghcr.io/mlmodelscope/agent-pytorch:") for c in pytorch["spec"]["containers"])


def _operator_source() -> str:
    folder = REPO / "operator" / "src" / "mlmodelscope" / "operator"
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.py")))


def test_operator_rbac_is_least_privilege(
    default_render: list[dict[str, Any]], full_render: list[dict[str, Any]]
) -> None:
    expected = EXPECTED_RULES
    assert granted_rules(default_render, "ClusterRole") == expected
    assert not by_kind(full_render, "ClusterRole") and not by_kind(full_render, "ClusterRoleBinding")
    assert granted_rules(full_render, "Role") == expected
    assert {r["metadata"]["namespace"] for r in by_kind(full_render, "RoleBinding")} == {"mlms", "team-a"}
    for rule in by_kind(default_render, "ClusterRole")[0]["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    # What the operator calls, it may do: the API paths and verbs in its source are covered by the rules.
    source = _operator_source()
    for needle, key, verb in [
        ("/apis/batch/v1/namespaces/", ("batch", "jobs"), "create"),
        ("kube.delete(jobs_path", ("batch", "jobs"), "delete"),
        ('f"{evaluation_path(namespace, name)}/status"', ("mlmodelscope.org", "evaluations/status"), "patch"),
        ('"batch", "v1", "jobs"', ("batch", "jobs"), "watch"),
    ]:
        assert needle in source, needle
        assert verb in expected[key]


def _pods(documents: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in documents if d["kind"] in WORKLOAD_KINDS]


@pytest.mark.parametrize("which", ["default_render", "full_render", "production_render", "sqlite_render"])
def test_pod_security(which: str, request: pytest.FixtureRequest) -> None:
    pods = _pods(request.getfixturevalue(which))
    assert pods
    for name, pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "resources" in container, name


def test_collector_probes_and_settings(full_render: list[dict[str, Any]], default_render: list[dict[str, Any]]) -> None:
    for documents, database in (
        (default_render, "sqlite:////data/collector.db"),
        (full_render, "postgresql+psycopg://"),
    ):
        deployment = next(d for d in by_kind(documents, "Deployment") if d["metadata"]["name"].endswith("collector"))
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MLMODELSCOPE_COLLECTOR_DATABASE_URL"].startswith(database)
        assert env["MLMODELSCOPE_COLLECTOR_NATS_URL"] == "nats://rel-mlmodelscope-nats.mlms.svc:4222"
    # Every collector variable the chart sets is a real setting (unknown ones would be ignored silently).
    from mlmodelscope.collector.settings import CollectorSettings
    from mlmodelscope.operator.settings import OperatorSettings

    for documents in (default_render, full_render):
        for deployment in by_kind(documents, "Deployment"):
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                for variable in container["env"]:
                    name = variable["name"]
                    for prefix, settings in (("MLMODELSCOPE_COLLECTOR_", CollectorSettings),
                                             ("MLMODELSCOPE_OPERATOR_", OperatorSettings)):  # fmt: skip
                        if name.startswith(prefix):
                            assert name.removeprefix(prefix).lower() in settings.model_fields, name


def test_operator_settings_parse_from_the_rendered_environment(full_render: list[dict[str, Any]]) -> None:
    from mlmodelscope.operator.settings import OperatorSettings

    deployment = next(d for d in by_kind(full_render, "Deployment") if d["metadata"]["name"].endswith("operator"))
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    settings = OperatorSettings.from_env(env)
    assert settings.namespaces == ["mlms", "team-a"]
    assert settings.collector_url == "http://rel-mlmodelscope-collector.mlms.svc:8080"
    assert settings.agent_service_account == "rel-mlmodelscope-agent"
    agent_accounts = [
        s for s in by_kind(full_render, "ServiceAccount") if s["metadata"]["name"] == settings.agent_service_account
    ]
    assert {s["metadata"]["namespace"] for s in agent_accounts} == {"mlms", "team-a"}
    assert all(s["automountServiceAccountToken"] is False for s in agent_accounts)


def test_nats_has_jetstream_and_persistent_storage(default_render: list[dict[str, Any]]) -> None:
    nats = next(d for d in by_kind(default_render, "StatefulSet") if d["metadata"]["name"].endswith("nats"))
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    config = next(d for d in by_kind(default_render, "ConfigMap") if d["metadata"]["name"].endswith("nats"))
    assert "jetstream" in config["data"]["nats.conf"] and "store_dir: /data/jetstream" in config["data"]["nats.conf"]


def test_postgresql_and_minio_are_off_by_default(
    default_render: list[dict[str, Any]], full_render: list[dict[str, Any]]
) -> None:
    names = {d["metadata"]["name"] for d in by_kind(default_render, "StatefulSet")}
    assert names == {"rel-mlmodelscope-nats"}
    names = {d["metadata"]["name"] for d in by_kind(full_render, "StatefulSet")}
    assert names == {"rel-mlmodelscope-nats", "rel-mlmodelscope-postgresql", "rel-mlmodelscope-minio"}


def test_service_monitor_only_with_its_crd(
    default_render: list[dict[str, Any]], full_render: list[dict[str, Any]]
) -> None:
    assert by_kind(default_render, "ServiceMonitor") == []
    (monitor,) = by_kind(full_render, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["metadata"]["labels"]["team"] == "ml"
    service = next(d for d in by_kind(full_render, "Service") if d["metadata"]["name"].endswith("collector"))
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_dashboards_are_labelled_configmaps(full_render: list[dict[str, Any]]) -> None:
    maps = [d for d in by_kind(full_render, "ConfigMap") if d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    files = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(name for m in maps for name in m["data"]) == files and files
    assert {m["metadata"]["namespace"] for m in maps} == {"monitoring"}
    for config_map in maps:
        for name, text in config_map["data"].items():
            assert json.loads(text) == json.loads((CHART / "dashboards" / name).read_text())


def test_agents_may_reach_only_nats_dns_and_the_object_store(full_render: list[dict[str, Any]]) -> None:
    policies = [p for p in by_kind(full_render, "NetworkPolicy") if p["metadata"]["name"].endswith("agents")]
    assert {p["metadata"]["namespace"] for p in policies} == {"mlms", "team-a"}
    from mlmodelscope.operator import jobs

    assert '"app.kubernetes.io/name": "mlmodelscope-agent"' in Path(jobs.__file__).read_text()
    for policy in policies:
        spec = policy["spec"]
        assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "mlmodelscope-agent"}
        assert set(spec["policyTypes"]) == {"Ingress", "Egress"} and spec["ingress"] == []
        nats_rule, dns_rule, minio_rule, *artifact_rules = spec["egress"]
        assert nats_rule["ports"] == [{"protocol": "TCP", "port": 4222}]
        assert nats_rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "nats"
        assert {p["port"] for p in dns_rule["ports"]} == {53}
        assert minio_rule["ports"] == [{"protocol": "TCP", "port": 9000}]
        assert minio_rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "minio"
        assert artifact_rules == [{"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
                                   "ports": [{"protocol": "TCP", "port": 443}]}]  # fmt: skip


def test_external_nats(helm_home: Path) -> None:
    missing = helm("template", "rel", str(CHART), "--set", "nats.enabled=false", home=helm_home, check=False)
    assert missing.returncode != 0 and "nats.externalUrl is required" in missing.stderr
    documents = render(helm_home, "--set", "nats.enabled=false", "--set", "nats.externalUrl=nats://nats.example:4222")
    assert not [d for d in documents if d["metadata"]["name"].endswith("-nats")]
    deployment = next(d for d in by_kind(documents, "Deployment") if d["metadata"]["name"].endswith("operator"))
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLMODELSCOPE_OPERATOR_NATS_URL"] == "nats://nats.example:4222"
    (policy,) = by_kind(documents, "NetworkPolicy")
    assert policy["spec"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": 4222}]


def test_production_and_sqlite_shapes(
    production_render: list[dict[str, Any]], sqlite_render: list[dict[str, Any]]
) -> None:
    collector = next(d for d in by_kind(production_render, "Deployment") if d["metadata"]["name"].endswith("collector"))
    assert collector["spec"]["replicas"] == 2
    env = {e["name"]: e for e in collector["spec"]["template"]["spec"]["containers"][0]["env"]}
    database = env["MLMODELSCOPE_COLLECTOR_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert database == {"name": "mlmodelscope-database", "key": "url"}
    assert env["MLMODELSCOPE_S3_ENDPOINT"]["value"] == "s3.example.com:443"
    assert env["MLMODELSCOPE_S3_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "mlmodelscope-s3"
    assert not by_kind(production_render, "Secret"), "no generated secret in production"
    # SQLite: one replica that owns a persistent volume, Recreate so two never write the file at once.
    collector = next(d for d in by_kind(sqlite_render, "Deployment") if d["metadata"]["name"].endswith("collector"))
    assert collector["spec"]["replicas"] == 1 and collector["spec"]["strategy"]["type"] == "Recreate"
    (claim,) = by_kind(sqlite_render, "PersistentVolumeClaim")
    volumes = collector["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}} in volumes
    assert not by_kind(sqlite_render, "NetworkPolicy") and not by_kind(sqlite_render, "Framework")


# --- NATS authentication -----------------------------------------------------------------------------------------


def _secret_references(pod_spec: dict[str, Any]) -> set[str]:
    """Names of the Secrets a pod reads (env secretKeyRef, envFrom, volumes)."""
    names: set[str] = set()
    for container in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        for variable in container.get("env", []):
            reference = (variable.get("valueFrom") or {}).get("secretKeyRef")
            if reference:
                names.add(reference["name"])
        names.update(e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e)
    names.update(v["secret"]["secretName"] for v in pod_spec.get("volumes", []) if "secret" in v)
    return names


def _nats_token_secrets(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in by_kind(documents, "Secret") if s["metadata"]["name"].endswith("-nats-auth")]


def _workload_env(documents: list[dict[str, Any]], suffix: str) -> dict[str, dict[str, Any]]:
    workload = next(d for d in documents if d["kind"] in WORKLOAD_KINDS and d["metadata"]["name"].endswith(suffix))
    return {e["name"]: e for e in workload["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_nats_requires_a_generated_token_that_only_the_collector_and_the_jobs_get(
    full_render: list[dict[str, Any]],
) -> None:
    import base64

    from mlmodelscope.operator import jobs, planning
    from mlmodelscope.operator.settings import OperatorSettings
    from tests.support.operator_catalog import digits_catalog, digits_evaluation_spec

    secrets = _nats_token_secrets(full_render)
    # One token, in the release namespace (NATS, collector) and every namespace whose Jobs publish.
    assert {s["metadata"]["namespace"] for s in secrets} == {"mlms", "team-a"}
    tokens = {base64.b64decode(s["data"]["token"]).decode() for s in secrets}
    (token,) = tokens
    assert len(token) >= 40 and token.startswith("mlms"), "random, and never read as a number by nats-server"
    secret = secrets[0]["metadata"]["name"]
    assert all(s["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for s in secrets)

    # The server requires it, and the token itself is in no ConfigMap (nats-server reads it from its environment).
    config = next(d for d in by_kind(full_render, "ConfigMap") if d["metadata"]["name"].endswith("nats"))
    assert "authorization {\n  token: $MLMODELSCOPE_NATS_TOKEN\n}" in config["data"]["nats.conf"]
    for document in full_render:
        if document["kind"] != "Secret":
            assert token not in json.dumps(document), f"the token leaks into {document['kind']}"

    # Who reads the Secret: the NATS server and the collector, nothing else the chart runs.
    readers = {name for name, pod in _pods(full_render) if secret in _secret_references(pod)}
    assert readers == {"rel-mlmodelscope-nats", "rel-mlmodelscope-collector"}
    assert _workload_env(full_render, "-nats")["MLMODELSCOPE_NATS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": secret,
        "key": "token",
    }
    assert _workload_env(full_render, "-collector")["MLMODELSCOPE_COLLECTOR_NATS_TOKEN"]["valueFrom"][
        "secretKeyRef"
    ] == {"name": secret, "key": "token"}

    # The operator gets only the Secret's name (its RBAC has no access to Secrets: see the least-privilege test)
    # and hands it to the Jobs it builds as a secretKeyRef.
    operator_env = {name: e["value"] for name, e in _workload_env(full_render, "-operator").items()}
    assert operator_env["MLMODELSCOPE_OPERATOR_NATS_TOKEN_SECRET"] == secret
    settings = OperatorSettings.from_env(operator_env)
    [run] = planning.plan("ev", "uid", digits_evaluation_spec(), digits_catalog(), settings)
    job = jobs.build_job(
        run,
        evaluation="ev",
        namespace="team-a",
        uid="uid",
        spec=digits_evaluation_spec(),
        settings=settings,
        run_spec_json="{}",
    )
    job_env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert job_env["MLMODELSCOPE_NATS_TOKEN"] == {
        "name": "MLMODELSCOPE_NATS_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}},
    }
    assert token not in json.dumps(job)


def test_nats_auth_with_an_existing_secret_an_external_server_or_none(helm_home: Path) -> None:
    existing = render(helm_home, "--set", "nats.auth.existingSecret=team-nats")
    assert not _nats_token_secrets(existing)
    assert _workload_env(existing, "-collector")["MLMODELSCOPE_COLLECTOR_NATS_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "team-nats", "key": "token"}
    }
    assert _workload_env(existing, "-operator")["MLMODELSCOPE_OPERATOR_NATS_TOKEN_SECRET"]["value"] == "team-nats"

    external = render(
        helm_home,
        "--set",
        "nats.enabled=false",
        "--set",
        "nats.externalUrl=nats://nats.example:4222",
        "--set",
        "nats.auth.existingSecret=external-nats",
    )
    assert not _nats_token_secrets(external)
    readers = {name for name, pod in _pods(external) if "external-nats" in _secret_references(pod)}
    assert readers == {"rel-mlmodelscope-collector"}

    without = render(helm_home, "--set", "nats.auth.enabled=false")
    assert not _nats_token_secrets(without)
    config = next(d for d in by_kind(without, "ConfigMap") if d["metadata"]["name"].endswith("nats"))
    assert "authorization" not in config["data"]["nats.conf"]
    assert "MLMODELSCOPE_COLLECTOR_NATS_TOKEN" not in _workload_env(without, "-collector")
    assert _workload_env(without, "-operator")["MLMODELSCOPE_OPERATOR_NATS_TOKEN_SECRET"]["value"] == ""
