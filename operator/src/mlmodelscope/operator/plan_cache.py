"""An Evaluation's plan: its spec validated and its runs planned against the catalog it can see.

Planning reads the Models, Frameworks and Datasets of the namespace (then the release's built-in catalog), so it is
made once per Evaluation generation and each namespace's catalog is read at most once per ``catalog_ttl_s``,
however many Evaluations plan at once (a hundred applied together share one read).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mlmodelscope.core.manifests.fields import API_VERSION
from mlmodelscope.operator import catalog, planning
from mlmodelscope.operator.errors import UnsatisfiableError
from mlmodelscope.operator.evaluation import EvaluationSpec
from mlmodelscope.operator.kube import JsonObject, KubeClient
from mlmodelscope.operator.settings import OperatorSettings


@dataclass
class Plan:
    runs: list[planning.PlannedRun]
    spec: EvaluationSpec


def _problems(error: ValidationError) -> str:
    """``field: why; ...`` (a rule of the whole spec, e.g. server without target_qps, has no field)."""
    parts = ((".".join(map(str, p["loc"])), str(p["msg"]).removeprefix("Value error, ")) for p in error.errors())
    return "; ".join(f"{where}: {why}" if where else why for where, why in parts)


class Planner:
    """Plans Evaluations, caching each generation's plan and each namespace's catalog."""

    def __init__(self, kube: KubeClient, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        self._plans: dict[tuple[str, int], Plan] = {}
        self._catalogs: dict[str, tuple[float, asyncio.Task[planning.ResourceCatalog]]] = {}

    async def plan(self, body: JsonObject, namespace: str, name: str, uid: str, generation: Any) -> Plan:
        """The plan of this generation of the Evaluation; UnsatisfiableError when its spec cannot be planned."""
        key = (uid, int(generation or 0))
        cached = self._plans.get(key)
        if cached is not None:
            return cached
        try:
            spec = EvaluationSpec.model_validate(body.get("spec") or {})
        except ValidationError as e:
            raise UnsatisfiableError(f"invalid spec: {_problems(e)}.") from e
        if not uid:
            raise UnsatisfiableError("the Evaluation has no metadata.uid; Jobs could not be owned by it.")
        visible = await self._shared_catalog(namespace)
        release = self.settings.release_namespace
        if release and release != namespace:  # the namespace's own resources first, then the built-in catalog
            visible = visible.then(await self._shared_catalog(release))
        plan = Plan(planning.plan(name, uid, spec, visible, self.settings), spec)
        self._plans[key] = plan
        return plan

    def forget(self, uid: str) -> None:
        """Drop the plans of a deleted Evaluation."""
        for key in [k for k in self._plans if k[0] == uid]:
            del self._plans[key]

    async def _shared_catalog(self, namespace: str) -> planning.ResourceCatalog:
        """The namespace's catalog, read at most once per ``catalog_ttl_s`` however many Evaluations plan at once
        (a hundred applied together share one read)."""
        now = time.monotonic()
        cached = self._catalogs.get(namespace)
        if (
            cached is None
            or now - cached[0] > self.settings.catalog_ttl_s
            or (cached[1].done() and cached[1].exception() is not None)
        ):
            cached = (now, asyncio.ensure_future(self._catalog(namespace)))
            self._catalogs[namespace] = cached
        return await asyncio.shield(cached[1])

    async def _catalog(self, namespace: str) -> planning.ResourceCatalog:
        listed = await asyncio.gather(
            *(self.kube.list(f"/apis/{API_VERSION}/namespaces/{namespace}/{plural}") for _, plural, _ in catalog.KINDS)
        )
        return planning.ResourceCatalog.from_objects(
            namespace, {kind: items for (kind, _, _), items in zip(catalog.KINDS, listed, strict=True)}
        )
