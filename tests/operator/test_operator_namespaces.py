"""An Evaluation in any watched namespace resolves Models, Frameworks and Datasets from its own namespace first,
then from the release namespace's built-in catalog; what is found nowhere is named with both namespaces searched.
Pure (``ResourceCatalog``) and with the real operator against KMock."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlmodelscope.core.run_contract import RunSpec
from mlmodelscope.operator import planning
from mlmodelscope.operator.catalog import ResourceCatalog
from mlmodelscope.operator.errors import UnsatisfiableError
from mlmodelscope.operator.settings import OperatorSettings
from tests.support.operator_catalog import digits_evaluation_spec
from tests.support.operator_harness import (
    Api,
    collection,
    example,
    kube_api,
    operator,
    operator_settings,
    scratch_assets,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(180)
RELEASE, TEAM = "mlms", "team-a"


def _document(assets: Path, folder: str, file: str, *, name: str = "", **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((assets / folder / f"{file}.yaml").read_text(encoding="utf-8"))
    document["metadata"]["name"] = name or file
    document["spec"].update(changes)
    return document


def _objects(*documents: dict[str, Any]) -> dict[Any, list[dict[str, Any]]]:
    listed: dict[Any, list[dict[str, Any]]] = {}
    for version, document in enumerate(documents, start=1):
        metadata = {**document["metadata"], "resourceVersion": str(version), "generation": version}
        listed.setdefault(document["kind"], []).append({**document, "metadata": metadata})
    return listed


def test_the_own_namespace_wins_then_the_release_catalog_and_unknown_names_list_both(tmp_path: Path):
    assets = scratch_assets(tmp_path / "assets")
    builtin = ResourceCatalog.from_objects(
        RELEASE,
        _objects(
            _document(assets, "models", "digits-cnn"),
            _document(assets, "frameworks", "onnxruntime"),
            _document(assets, "datasets", "digits"),
            _document(assets, "models", "digits-cnn", name="shadowed", version="1.0"),
        ),
    )
    own = ResourceCatalog.from_objects(
        TEAM,
        _objects(
            _document(assets, "models", "digits-cnn", name="team-cnn", description="the team's copy"),
            _document(assets, "models", "digits-cnn", name="shadowed", artifact_uri="typo"),
        ),
    )
    visible = own.then(builtin)
    assert visible.namespaces == (TEAM, RELEASE)
    assert visible.models["team-cnn"].namespace == TEAM and visible.models["digits-cnn"].namespace == RELEASE
    assert visible.frameworks["onnxruntime"].namespace == RELEASE

    settings = OperatorSettings()
    [team, builtin_run] = planning.plan(
        "ev", "uid", digits_evaluation_spec(models=["team-cnn", "digits-cnn"]), visible, settings
    )
    assert (team.resources.model.source, team.resources.model.namespace) == ("cluster:team-a", TEAM)
    assert (builtin_run.resources.model.source, builtin_run.resources.framework.source) == ("cluster:mlms",) * 2
    assert builtin_run.resources.model.resource_version == "1" and builtin_run.resources.model.generation == 1

    with pytest.raises(UnsatisfiableError) as raised:
        planning.plan(
            "ev",
            "uid",
            digits_evaluation_spec(models=["nope", "shadowed"], frameworks=["onnxruntime"]),
            visible,
            settings,
        )
    unknown, invalid = raised.value.message.split("; ", 1)
    assert unknown == "unknown Model 'nope' in namespaces 'team-a' or 'mlms' (known: digits-cnn, team-cnn)"
    # The team's invalid object is reported, not silently replaced by the release's valid one of the same name.
    assert invalid == (
        "Model 'shadowed' in namespace 'team-a' is invalid: spec.artifact_uri: Extra inputs are not permitted."
    )
    assert own.then(own) is own


async def _create(api: Api, namespace: str, document: dict[str, Any]) -> None:
    plural = {"Model": "models", "Framework": "frameworks", "Dataset": "datasets", "Evaluation": "evaluations"}
    response = await api.client.post(collection(plural[document["kind"]], namespace), json=document)
    assert response.status_code in (200, 201), response.text


async def _get(api: Api, path: str) -> dict[str, Any]:
    response = await api.client.get(path)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def test_an_evaluation_outside_the_release_namespace_uses_its_own_and_the_builtin_resources(tmp_path: Path):
    assets = scratch_assets(tmp_path / "assets")

    async def jobs_of(api: Api) -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = (await _get(api, collection("jobs", TEAM)))["items"]
        return items if len(items) == 2 else None

    async def failed(api: Api, name: str) -> dict[str, Any] | None:
        status: dict[str, Any] = (await _get(api, f"{collection('evaluations', TEAM)}/{name}")).get("status") or {}
        return status if status.get("phase") == "Failed" else None

    async def scenario() -> None:
        async with kube_api() as (_, url):
            api = Api(url)
            for folder, name in (("models", "digits-cnn"), ("frameworks", "onnxruntime"), ("datasets", "digits")):
                await _create(api, RELEASE, _document(assets, folder, name))
            await _create(api, TEAM, _document(assets, "models", "digits-cnn", name="team-cnn"))
            evaluation = example("evaluation-minimal.yaml")
            evaluation["metadata"] = {"name": "mixed", "namespace": TEAM}
            evaluation["spec"].update(models=["team-cnn", "digits-cnn"], frameworks=["onnxruntime"])
            await _create(api, TEAM, evaluation)
            missing = {**evaluation, "metadata": {"name": "missing", "namespace": TEAM}}
            missing["spec"] = {**evaluation["spec"], "models": ["absent"]}
            await _create(api, TEAM, missing)
            settings = operator_settings(url, tmp_path, assets, namespaces=[TEAM], release_namespace=RELEASE)
            async with operator(settings):
                jobs = await eventually(lambda: jobs_of(api), timeout_s=60, what="the two Jobs in team-a")
                status = await eventually(lambda: failed(api, "missing"), timeout_s=60, what="'missing' Failed")
            await api.close()
        sources = {}
        for job in jobs:
            env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
            run_spec = RunSpec.model_validate(json.loads(env["MLMODELSCOPE_RUN_SPEC"]))
            sources[run_spec.model] = (run_spec.resources.model.source, run_spec.resources.framework.source)
        assert sources == {
            "team-cnn": ("cluster:team-a", "cluster:mlms"),
            "digits-cnn": ("cluster:mlms", "cluster:mlms"),
        }
        assert status["lastError"] == (
            "unknown Model 'absent' in namespaces 'team-a' or 'mlms' (known: digits-cnn, team-cnn)."
        )

    asyncio.run(scenario())
