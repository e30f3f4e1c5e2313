"""The Model, Framework and Dataset resources an Evaluation can name, exactly as they were applied in the cluster.

Each entry keeps the object's namespace, ``resourceVersion`` and ``generation`` next to the core's pydantic resource,
so every planned run carries a ``ResolvedResource`` that says which object (and which version of it) it evaluates.
An Evaluation in namespace N resolves names in N first, then in the release namespace (the chart's built-in
catalog): ``ResourceCatalog.then`` layers the two, the first namespace winning. A resource that is invalid in N
shadows a valid one of the same name in the release namespace: the user's object is reported, never silently
replaced.

Pure (no I/O): the reconciler lists the objects and calls ``ResourceCatalog.from_objects``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import ValidationError

from mlmodelscope.core.manifests.fields import API_VERSION
from mlmodelscope.core.manifests.resources import Dataset, Framework, Model
from mlmodelscope.core.run_contract import ResolvedResource

Kind = Literal["Model", "Framework", "Dataset"]
R = TypeVar("R", Model, Framework, Dataset)
# Where relative artifact URIs of each kind resolve inside the agent image: <agent_assets_dir>/<folder>.
ASSET_FOLDERS: Mapping[Kind, str] = {"Model": "models", "Framework": "frameworks", "Dataset": "datasets"}
KINDS: tuple[tuple[Kind, str, type[Model] | type[Framework] | type[Dataset]], ...] = (
    ("Model", "models", Model),
    ("Framework", "frameworks", Framework),
    ("Dataset", "datasets", Dataset),
)


@dataclass(frozen=True)
class Applied(Generic[R]):
    """One resource as applied: the validated resource and where in the cluster it lives."""

    resource: R
    namespace: str
    resource_version: str = ""
    generation: int | None = None

    def resolved(self, assets_dir: str) -> ResolvedResource:
        """The run contract's form of it (canonical spec and its sha256); relative URIs resolve in the image."""
        return ResolvedResource.from_resource(
            self.resource,
            source=f"cluster:{self.namespace}",
            namespace=self.namespace,
            resource_version=self.resource_version,
            generation=self.generation,
            base_dir=f"{assets_dir}/{ASSET_FOLDERS[self.resource.kind]}",
        )


@dataclass(frozen=True)
class ResourceCatalog:
    """The resources visible to an Evaluation; ``namespaces``: those searched, in order."""

    namespaces: tuple[str, ...]
    models: Mapping[str, Applied[Model]]
    frameworks: Mapping[str, Applied[Framework]]
    datasets: Mapping[str, Applied[Dataset]]
    invalid: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    """(kind, name) -> (namespace, problems) of objects that the core's classes refused."""

    @property
    def namespace(self) -> str:
        return self.namespaces[0]

    @classmethod
    def of(
        cls,
        namespace: str,
        models: Iterable[Model] = (),
        frameworks: Iterable[Framework] = (),
        datasets: Iterable[Dataset] = (),
    ) -> ResourceCatalog:
        """A catalog of already validated resources, all in ``namespace`` (tests, benchmarks)."""
        return cls(
            (namespace,),
            {m.name: Applied(m, namespace) for m in models},
            {f.name: Applied(f, namespace) for f in frameworks},
            {d.name: Applied(d, namespace) for d in datasets},
        )

    @classmethod
    def from_objects(cls, namespace: str, listed: Mapping[Kind, Iterable[Mapping[str, Any]]]) -> ResourceCatalog:
        """The catalog of one namespace from the objects the API listed (server-set metadata and status ignored)."""
        tables: dict[Kind, dict[str, Any]] = {kind: {} for kind, _, _ in KINDS}
        invalid: dict[tuple[str, str], tuple[str, str]] = {}
        for kind, _, resource_class in KINDS:
            for raw in listed.get(kind, ()):
                metadata = raw.get("metadata") or {}
                name = str(metadata.get("name"))
                document = {
                    "apiVersion": raw.get("apiVersion", API_VERSION),
                    "kind": kind,
                    "metadata": {"name": name, "labels": metadata.get("labels") or {}},
                    "spec": raw.get("spec"),
                }
                try:
                    resource = resource_class.model_validate(document)
                except ValidationError as e:
                    invalid[(kind, name)] = (namespace, _problems(e))
                    continue
                generation = metadata.get("generation")
                tables[kind][name] = Applied(
                    resource,
                    namespace,
                    resource_version=str(metadata.get("resourceVersion") or ""),
                    generation=int(generation) if isinstance(generation, int) else None,
                )
        return cls((namespace,), tables["Model"], tables["Framework"], tables["Dataset"], invalid)

    def then(self, fallback: ResourceCatalog) -> ResourceCatalog:
        """This catalog, with names it lacks (valid or not) resolved in ``fallback``."""
        if fallback.namespaces == self.namespaces:
            return self

        def layered(kind: Kind, own: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
            merged = {n: v for n, v in other.items() if (kind, n) not in self.invalid}
            merged.update(own)
            return merged

        invalid = {k: v for k, v in fallback.invalid.items() if k[1] not in self._table(k[0])}
        invalid.update(self.invalid)
        return ResourceCatalog(
            (*self.namespaces, *(n for n in fallback.namespaces if n not in self.namespaces)),
            layered("Model", self.models, fallback.models),
            layered("Framework", self.frameworks, fallback.frameworks),
            layered("Dataset", self.datasets, fallback.datasets),
            invalid,
        )

    def _table(self, kind: str) -> Mapping[str, Any]:
        return {"Model": self.models, "Framework": self.frameworks, "Dataset": self.datasets}[kind]

    def unknown(self, kind: Kind, name: str) -> str:
        """Why ``name`` cannot be used: invalid where it was found, or found in none of the namespaces searched."""
        invalid = self.invalid.get((kind, name))
        if invalid is not None:
            return f"{kind} '{name}' in namespace '{invalid[0]}' is invalid: {invalid[1]}"
        known = ", ".join(sorted(self._table(kind))) or "none"
        where = " or ".join(f"'{n}'" for n in self.namespaces)
        label = "namespace" if len(self.namespaces) == 1 else "namespaces"
        return f"unknown {kind} '{name}' in {label} {where} (known: {known})"


def _problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in error.errors())
