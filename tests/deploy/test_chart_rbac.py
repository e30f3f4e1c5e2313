"""The chart's RBAC and agent identity, rendered by a real helm, and enforced the way a real API server enforces
them: the real operator runs against a KMock that authorises each of the operator's requests with the rules the
chart renders (verb, API group, resource, subresource) and, as OpenShift's OwnerReferencesPermissionEnforcement
admission plugin does, refuses a Job whose ownerReference sets ``blockOwnerDeletion`` unless the requester may
``update`` its owner's ``finalizers``. With the chart's rules the Jobs exist (and carry what the values say); with
the finalizers rule removed every Job create is refused with 403."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, ClassVar

import aiohttp.web
import pytest

from tests.support.chart import EXPECTED_RULES, by_kind, granted_rules, render
from tests.support.operator_harness import NAMESPACE, Api, Emulator, example, kube_api, operator
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)

OPERATOR_TOKEN = "chart-operator-service-account"
FINALIZERS = ("mlmodelscope.org", "evaluations/finalizers")
# What the Jobs must carry, from these values (image.*, agents.*, the bundled MinIO's Secret).
VALUES = [
    "--set", "image.registry=registry.internal/mms,image.tag=1.2.3",
    "--set", "image.pullSecrets={regcred,mirror-pull}",
    "--set", "agents.jobTtlSeconds=600,agents.pendingTimeoutSeconds=90",
    "--set", "agents.artifactCache.enabled=true",
    "--set", "objectStore.minio.enabled=true",
]  # fmt: skip


# --- what the chart grants -----------------------------------------------------------------------------------------


CATALOG_RULES = {key: verbs for key, verbs in EXPECTED_RULES.items() if key[1] in {"models", "frameworks", "datasets"}}


def _operator_env(documents: list[dict[str, Any]]) -> dict[str, str]:
    deployment = next(d for d in by_kind(documents, "Deployment") if d["metadata"]["name"].endswith("-operator"))
    return {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_cluster_wide_mode_grants_the_finalizers_pods_and_events_rules(helm_home: Path) -> None:
    documents = render(helm_home)
    assert granted_rules(documents, "ClusterRole") == EXPECTED_RULES
    assert not by_kind(documents, "Role")
    (binding,) = by_kind(documents, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-mlmodelscope-operator", "namespace": "mlms"}]


def test_watched_namespaces_get_roles_and_the_release_namespace_its_catalog_reader(helm_home: Path) -> None:
    documents = render(helm_home, "--set", "operator.watchNamespaces={team-a,team-b}")
    assert not by_kind(documents, "ClusterRole") and not by_kind(documents, "ClusterRoleBinding")
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in by_kind(documents, "Role")}
    assert set(roles) == {
        ("team-a", "rel-mlmodelscope-operator"),
        ("team-b", "rel-mlmodelscope-operator"),
        ("mlms", "rel-mlmodelscope-operator-catalog"),  # the built-in catalog every Evaluation falls back to
    }
    for (namespace, name), role in roles.items():
        expected = CATALOG_RULES if namespace == "mlms" else EXPECTED_RULES
        assert granted_rules([role], "Role") == expected, (namespace, name)
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in by_kind(documents, "RoleBinding")}
    assert bindings == set(roles)
    for binding in by_kind(documents, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "rel-mlmodelscope-operator", "namespace": "mlms"}
        ]
    # Watching the release namespace itself: its Role already reads the catalog, no second one.
    documents = render(helm_home, "--set", "operator.watchNamespaces={mlms,team-a}")
    assert {r["metadata"]["name"] for r in by_kind(documents, "Role")} == {"rel-mlmodelscope-operator"}


@pytest.mark.parametrize(
    ("values", "namespaces"),
    [
        ([], {"mlms"}),
        (["--set", "operator.watchNamespaces={team-a,team-b}"], {"team-a", "team-b"}),
        (["--set", "operator.watchNamespaces={mlms,team-a}"], {"mlms", "team-a"}),
        (["--set", "networkPolicy.enabled=false,builtinResources.enabled=false"], {"mlms"}),
    ],
    ids=["cluster-wide", "watched", "watched-with-release", "minimal"],
)
def test_agent_service_account_has_no_token_in_every_mode(
    helm_home: Path, values: list[str], namespaces: set[str]
) -> None:
    documents = render(helm_home, *values)
    name = _operator_env(documents)["MLMODELSCOPE_OPERATOR_AGENT_SERVICE_ACCOUNT"]
    assert name == "rel-mlmodelscope-agent"
    accounts = [a for a in by_kind(documents, "ServiceAccount") if a["metadata"]["name"] == name]
    assert {a["metadata"]["namespace"] for a in accounts} == namespaces
    assert all(a["automountServiceAccountToken"] is False for a in accounts)
    # Bound to nothing: the agents have no API access at all.
    subjects = [s for b in documents if b["kind"].endswith("RoleBinding") for s in b["subjects"]]
    assert name not in {s["name"] for s in subjects}


# --- the operator against an API server that enforces them --------------------------------------------------------


def _allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"] for rule in rules)


_VERBS = {"LIST": "list", "WATCH": "watch", "FETCH": "get", "CREATE": "create", "DELETE": "delete"}


class RbacEmulator(Emulator):
    """The API server's authorisation of the operator (requests with its token): RBAC over ``grants`` (rules by
    namespace; key None: a ClusterRole's, valid everywhere), plus OpenShift's OwnerReferencesPermissionEnforcement.
    Requests without the token (the test's own) pass."""

    grants: ClassVar[dict[str | None, list[dict[str, Any]]]] = {}
    refused: ClassVar[list[str]] = []

    @classmethod
    def granting(cls, grants: dict[str | None, list[dict[str, Any]]]) -> type[RbacEmulator]:
        return type("RbacEmulatorWith", (cls,), {"grants": grants, "refused": []})

    def granted_rules(self, namespace: str | None) -> list[dict[str, Any]]:
        return [*self.grants.get(None, []), *(self.grants.get(namespace, []) if namespace else [])]

    def _forbidden(self, request: Any) -> str | None:
        group = request.resource.group or ""
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        action = request.action.name if request.action is not None else ""
        verb = _VERBS.get(action) or ("update" if str(request.method).upper().endswith("PUT") else "patch")
        name = request.name or ((request.data or {}).get("metadata") or {}).get("name", "")
        what = f'{resource}{"." + group if group else ""} "{name}" in namespace "{request.namespace}"'
        rules = self.granted_rules(request.namespace)
        if not _allowed(rules, group, resource, verb):
            return f"{what} is forbidden: cannot {verb} {resource} in API group {group!r}"
        owners = (request.data or {}).get("metadata", {}).get("ownerReferences", []) if verb == "create" else []
        for owner in owners:
            if owner.get("blockOwnerDeletion"):
                owner_group = owner["apiVersion"].split("/")[0] if "/" in owner["apiVersion"] else ""
                plural = {"Evaluation": "evaluations"}.get(owner["kind"], owner["kind"].lower() + "s")
                if not _allowed(rules, owner_group, f"{plural}/finalizers", "update"):
                    return (
                        f"{what} is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a "
                        f"resource you can't set finalizers on: , <nil>"
                    )
        return None

    async def _handle(self, request: Any) -> Any:
        authorization = request.headers.get("Authorization", "")
        resource = request.resource
        # Discovery (/api, /apis/<group>/<version>) names no resource: every authenticated user may read it.
        if resource is not None and resource.plural and authorization == f"Bearer {OPERATOR_TOKEN}":
            problem = self._forbidden(request)
            if problem is not None:
                self.refused.append(problem)
                return aiohttp.web.json_response(
                    {
                        "apiVersion": "v1",
                        "kind": "Status",
                        "metadata": {},
                        "status": "Failure",
                        "message": problem,
                        "reason": "Forbidden",
                        "code": 403,
                    },
                    status=403,
                )
        return await super()._handle(request)


def _operator_grants(documents: list[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    """The rules the chart grants the operator, by namespace (None: its ClusterRole, in cluster-wide mode)."""
    grants: dict[str | None, list[dict[str, Any]]] = {}
    for role in by_kind(documents, "ClusterRole") + by_kind(documents, "Role"):
        grants.setdefault(role["metadata"].get("namespace"), []).extend(role["rules"])
    return grants


async def _apply_catalog(api: Api, documents: list[dict[str, Any]]) -> None:
    """The chart's built-in Models, Frameworks and Datasets of NAMESPACE, as rendered (registry and tag applied)."""
    for document in documents:
        if document["kind"] in {"Model", "Framework", "Dataset"} and document["metadata"]["namespace"] == NAMESPACE:
            await api.create(document)


async def _run_operator(
    documents: list[dict[str, Any]], grants: dict[str | None, list[dict[str, Any]]], tmp_path: Path
) -> Any:
    """Run the operator with the rendered environment against an emulator enforcing ``grants``; return the Jobs,
    the Evaluation's status and the emulator class (its ``refused`` requests) once Jobs exist or a create was
    refused."""
    from mlmodelscope.operator.settings import OperatorSettings

    emulator_class = RbacEmulator.granting(grants)
    async with kube_api(emulator_class) as (_, url):
        api = Api(url)
        await _apply_catalog(api, documents)
        settings = OperatorSettings.from_env(
            _operator_env(documents),
            server=url,
            token=OPERATOR_TOKEN,
            namespaces=[NAMESPACE],
            nats_url="nats://127.0.0.1:1",
            collector_url="http://127.0.0.1:1",
            collector_timeout_s=2.0,
            agent_work_dir=str(tmp_path / "agent"),
            reconcile_interval_s=0.5,
            retry_delay_s=0.5,
        )
        await api.create(example("evaluation-minimal.yaml"))

        async def settled() -> bool:
            refused_jobs = [r for r in emulator_class.refused if r.startswith("jobs.batch")]
            return bool(await api.list("jobs")) or len(refused_jobs) >= 2  # refused, then refused on retry

        async with operator(settings):
            await eventually(settled, timeout_s=60, what="Jobs, or refused Job creates")
            await asyncio.sleep(1.0)  # the status the operator writes after its attempt
            jobs = await api.list("jobs")
            evaluation = await api.get("evaluations", "digits-minimal")
        await api.close()
    assert evaluation is not None
    return jobs, evaluation.get("status") or {}, emulator_class


@pytest.mark.parametrize(
    ("release_namespace", "mode"),
    [(NAMESPACE, []), ("mlms", ["--set", f"operator.watchNamespaces={{{NAMESPACE}}}"])],
    ids=["cluster-wide", "watched"],
)
def test_with_the_charts_rbac_the_operator_creates_jobs_that_carry_the_values(
    helm_home: Path, tmp_path: Path, release_namespace: str, mode: list[str]
) -> None:
    documents = render(helm_home, *VALUES, *mode, namespace=release_namespace)
    grants = _operator_grants(documents)
    assert set(grants) == ({None} if not mode else {NAMESPACE, release_namespace})  # Roles: no cluster scope
    assert _allowed(grants.get(None) or grants[NAMESPACE], *FINALIZERS, "update")
    jobs, status, emulator_class = asyncio.run(_run_operator(documents, grants, tmp_path))

    # Nothing the operator did was refused: the chart's rules cover every call (pods, events, finalizers...).
    assert emulator_class.refused == []
    (job,) = jobs
    assert any(o.get("blockOwnerDeletion") for o in job["metadata"]["ownerReferences"])
    assert status["runs"][0]["job_name"] == job["metadata"]["name"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # image.registry / image.tag, through the rendered built-in Framework resource.
    assert container["image"] == "registry.internal/mms/agent-onnxruntime:1.2.3"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror-pull"}]
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    # The agent ServiceAccount, the artifact cache claim and the S3 Secret are objects the chart renders there.
    rendered = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in documents}
    account = rendered["ServiceAccount", NAMESPACE, pod["serviceAccountName"]]
    assert account["automountServiceAccountToken"] is False and pod["automountServiceAccountToken"] is False
    cache = next(v for v in pod["volumes"] if v["name"] == "cache")
    assert ("PersistentVolumeClaim", NAMESPACE, cache["persistentVolumeClaim"]["claimName"]) in rendered
    env = {e["name"]: e for e in container["env"]}
    assert env["MLMODELSCOPE_S3_ENDPOINT"]["value"] == f"rel-mlmodelscope-minio.{release_namespace}.svc:9000"
    for variable, key in (("MLMODELSCOPE_S3_ACCESS_KEY", "accessKey"), ("MLMODELSCOPE_S3_SECRET_KEY", "secretKey")):
        reference = env[variable]["valueFrom"]["secretKeyRef"]
        assert key in rendered["Secret", NAMESPACE, reference["name"]]["data"] and reference["key"] == key
    token = env["MLMODELSCOPE_NATS_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ("Secret", NAMESPACE, token["name"]) in rendered
    assert OPERATOR_TOKEN not in json.dumps(job)


def test_without_the_finalizers_rule_every_job_create_is_refused(helm_home: Path, tmp_path: Path) -> None:
    """What OpenShift did to the chart before the rule existed: the Jobs never appear, and the operator says why."""
    documents = render(helm_home, namespace=NAMESPACE)
    (cluster_rules,) = _operator_grants(documents).values()
    rules = [{**rule, "resources": [r for r in rule["resources"] if r != FINALIZERS[1]]} for rule in cluster_rules]
    rules = [rule for rule in rules if rule["resources"]]
    assert not _allowed(rules, *FINALIZERS, "update")
    jobs, status, emulator_class = asyncio.run(_run_operator(documents, {None: rules}, tmp_path))

    assert jobs == []
    refusals = {r for r in emulator_class.refused if r.startswith("jobs.batch")}
    assert refusals and all("cannot set blockOwnerDeletion" in r for r in refusals)
    assert not [r for r in emulator_class.refused if not r.startswith("jobs.batch")]  # only the Job creates
    # The operator says so in the status, with the API server's reason: the run stays Pending with it (retried).
    assert "403" in status["lastError"] and "blockOwnerDeletion" in status["lastError"], status
    (run,) = status["runs"]
    assert run["state"] == "Pending" and "blockOwnerDeletion" in run["message"], run
