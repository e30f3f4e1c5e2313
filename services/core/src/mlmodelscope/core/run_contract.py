"""The run contract: one pydantic model for what one run executes, written by the CLI (local mode), the collector's
launcher (web UI) and the operator (a Job's ``MLMODELSCOPE_RUN_SPEC``), read by the agent.

The spec carries the *resolved* Model, Framework and Dataset resources as they were applied (their names, where
they came from, the cluster's resourceVersion/generation and a sha256 of each spec), so the agent evaluates exactly
what was declared and re-resolves nothing: no asset folder is needed wherever the artifacts are reachable by URI.
Relative artifact URIs resolve against each resource's ``base_dir`` (the manifest's folder locally; in a cluster,
the folder of the agent image's built-in assets of that kind).

One canonical form of a spec, so that every writer gives the same sha256 for the same spec: the spec as the core's
pydantic resource validated it, ``resource.spec.model_dump(mode="json", exclude_defaults=True)``
(``canonical_spec``, in ``core.manifests.canonical``). Local mode validates the manifest file, the operator the
cluster object, with the same classes; an explicit default and an omitted one digest alike, and the form validates
back to the same spec (a plain dump does not: a Dataset source refuses the fields of its other kind). Writers build
resources with ``ResolvedResource.from_resource`` (or ``ResolvedResources.from_registry``); ``spec_sha256`` of that
dict is what results and the Evaluation status record. The agent turns the resources back into a registry with
``ResolvedResources.registry``, validating each spec with the same classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlmodelscope.core.artifacts.locations import is_relative_path
from mlmodelscope.core.errors import ManifestError
from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests.artifact_spec import ZOO_SCHEME
from mlmodelscope.core.manifests.canonical import canonical_spec, spec_sha256
from mlmodelscope.core.manifests.fields import API_VERSION, Accelerator
from mlmodelscope.core.manifests.loading import LoadedResource, format_location, parse_document
from mlmodelscope.core.manifests.registry import Registry
from mlmodelscope.core.manifests.resources import Resource
from mlmodelscope.core.messages import RunId, run_id_for
from mlmodelscope.core.tracing.spans import TraceLevel

SPOOL_FOLDER = "unpublished"
ResourceKind = Literal["Model", "Framework", "Dataset"]


class ResolvedResource(BaseModel):
    """One Model, Framework or Dataset exactly as the run uses it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ResourceKind
    name: str = Field(min_length=1, max_length=253)
    labels: dict[str, str] = Field(default_factory=dict)
    spec: dict[str, Any] = Field(description="The resource's spec as applied (validated by the agent).")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="spec_sha256(spec): what results record.")
    source: str = Field(
        default="",
        description="Where it was resolved: the manifest file locally, 'cluster:<namespace>' in a cluster.",
    )
    namespace: str = Field(default="", description="The cluster namespace it was read from; empty locally.")
    resource_version: str = Field(default="", description="metadata.resourceVersion in the cluster.")
    generation: int | None = Field(default=None, description="metadata.generation in the cluster.")
    base_dir: str = Field(default="", description="Folder that relative artifact URIs resolve against.")

    @model_validator(mode="after")
    def _digest_matches(self) -> ResolvedResource:
        actual = spec_sha256(self.spec)
        if actual != self.sha256:
            raise ValueError(
                f"{self.kind} '{self.name}': sha256 {self.sha256} does not match its spec ({actual}); "
                "the run spec was altered after it was written"
            )
        return self

    @classmethod
    def of(cls, kind: ResourceKind, name: str, spec: dict[str, Any], **where: Any) -> ResolvedResource:
        return cls(kind=kind, name=name, spec=spec, sha256=spec_sha256(spec), **where)

    @classmethod
    def from_resource(cls, resource: Resource, **where: Any) -> ResolvedResource:
        """A validated Model, Framework or Dataset in canonical form; ``where``: source, namespace,
        resource_version, generation, base_dir."""
        return cls.of(
            resource.kind, resource.name, canonical_spec(resource), labels=dict(resource.metadata.labels), **where
        )

    def document(self) -> dict[str, Any]:
        """The resource as a manifest document (what the core's pydantic resources validate)."""
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {"name": self.name, "labels": dict(self.labels)},
            "spec": self.spec,
        }


class ResolvedResources(BaseModel):
    """The three resources of one run (a dataset-less run, e.g. the null predictor on synthetic input, has none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ResolvedResource
    framework: ResolvedResource
    dataset: ResolvedResource | None = None

    @model_validator(mode="after")
    def _kinds(self) -> ResolvedResources:
        for field_name, kind in (("model", "Model"), ("framework", "Framework"), ("dataset", "Dataset")):
            value = getattr(self, field_name)
            if value is not None and value.kind != kind:
                raise ValueError(f"resources.{field_name} is a {value.kind}, expected a {kind}")
        return self

    @property
    def dataset_name(self) -> str | None:
        """The name a RunSpec's ``dataset`` must have for these resources."""
        return self.dataset.name if self.dataset is not None else None

    def checksums(self) -> dict[str, str]:
        """{'model': sha256, 'framework': ..., 'dataset': ...}: what the Evaluation status shows per run."""
        return {k: v.sha256 for k, v in self._fields()}

    def _fields(self) -> Iterator[tuple[str, ResolvedResource]]:
        pairs = (("model", self.model), ("framework", self.framework), ("dataset", self.dataset))
        yield from ((k, v) for k, v in pairs if v is not None)

    @classmethod
    def from_registry(
        cls, registry: Registry, model: str, framework: str, dataset: str | None = None
    ) -> ResolvedResources:
        """The resources of one run from a registry of manifest files (local mode, the collector's launcher):
        source = the manifest, base_dir = its folder. ``dataset`` None: the model's default dataset, if any."""
        model_resource = registry.model(model)
        dataset_name = dataset or model_resource.spec.dataset

        def resolved(kind: str, name: str) -> ResolvedResource:
            loaded = registry.entry(kind, name)
            folder = loaded.folder
            return ResolvedResource.from_resource(
                loaded.resource, source=loaded.where, base_dir=str(folder.resolve()) if folder is not None else ""
            )

        return cls(
            model=resolved("Model", model),
            framework=resolved("Framework", framework),
            dataset=resolved("Dataset", dataset_name) if dataset_name is not None else None,
        )

    def registry(self, source: str) -> Registry:
        """An in-memory registry of exactly these resources, each validated by the core's pydantic classes;
        ``source`` names the run spec in errors (ManifestError naming it, the resource and the field)."""
        registry = Registry()
        for field_name, carried in self._fields():
            where = f"{source}: resources.{field_name}"
            resource = parse_document(carried.document(), source=where)
            base_dir = Path(carried.base_dir) if carried.base_dir else None
            if base_dir is None:
                _refuse_relative_uris(resource, where)
            registry.add(
                LoadedResource(resource, None, origin=carried.source or where, base_dir=base_dir, sha256=carried.sha256)
            )
        return registry


def _refuse_relative_uris(resource: Resource, where: str) -> None:
    """A resource without a base folder cannot name artifacts by relative path: say so before anything starts."""
    for location, uri in _uris(resource.spec.model_dump(mode="json"), ("spec",)):
        if not uri.startswith(ZOO_SCHEME) and is_relative_path(uri):
            raise ManifestError(
                f"{where}: {resource.kind} '{resource.name}' has the relative artifact URI '{uri}' "
                f"({format_location(location)}) but no base folder to resolve it against (base_dir is empty).",
                hint="Give the artifact an absolute URI (https://host/path or s3://bucket/key) with its sha256, "
                "or set the resource's base_dir to the folder holding it.",
            )


def _uris(data: Any, location: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "uri" and isinstance(value, str):
                yield (*location, key), value
            else:
                yield from _uris(value, (*location, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _uris(value, (*location, index))


class RunSpec(BaseModel):
    """Everything one run needs; the agent evaluates exactly ``resources`` and reads no asset folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: RunId
    evaluation_id: str = Field(min_length=1, max_length=128)
    model: str
    framework: str
    dataset: str | None = None
    resources: ResolvedResources
    device: Accelerator = "cpu"
    intra_op_threads: int | None = Field(
        default=None, ge=1, description="None: from the container's CPU limit (cgroup cpu.max), else the CPUs."
    )
    trace_level: TraceLevel = TraceLevel.MODEL
    settings: EvaluationSettings = Field(default_factory=EvaluationSettings)
    nats_url: str = Field(default="", description="Empty: evaluate without publishing (debugging).")
    cache_dir: Path
    output_dir: Path = Field(description="LoadGen logs and framework profiles go here.")
    progress_interval_s: float = Field(default=0.5, gt=0)
    give_up_after_s: float = Field(default=60.0, gt=0, description="How long NATS may stay unreachable.")
    cancel_grace_s: float = Field(
        default=20.0, gt=0, description="On SIGTERM: how long publishing the cancelled run may take (< pod grace)."
    )
    run_dir: Path | None = Field(
        default=None,
        description="The run folder: messages NATS never took are kept in <run_dir>/unpublished. Default: the "
        "folder of the spec file, else output_dir.",
    )

    @model_validator(mode="after")
    def _names_match_resources(self) -> RunSpec:
        resources = self.resources
        pairs = [("model", self.model, resources.model), ("framework", self.framework, resources.framework)]
        if self.dataset is not None or resources.dataset is not None:
            dataset_name = resources.dataset.name if resources.dataset is not None else None
            if self.dataset != dataset_name:
                raise ValueError(f"dataset is {self.dataset!r} but resources.dataset is {dataset_name!r}")
        for field_name, name, resource in pairs:
            if name != resource.name:
                raise ValueError(f"{field_name} is '{name}' but resources.{field_name} is '{resource.name}'")
        return self

    @property
    def spool_dir(self) -> Path:
        return (self.run_dir or self.output_dir) / SPOOL_FOLDER


def run_matrix(
    registry: Registry,
    evaluation_id: str,
    model: str,
    frameworks: Sequence[str],
    batch_sizes: Sequence[int],
    *,
    dataset: str | None,
    settings: EvaluationSettings,
    cache_dir: Path,
    output_dir: Callable[[str, str, int | None], Path],
    device: Accelerator = "cpu",
    intra_op_threads: int | None = None,
    trace_level: TraceLevel = TraceLevel.MODEL,
    nats_url: str = "",
) -> list[RunSpec]:
    """The runs of one evaluation from manifest files (local mode, the collector's launcher): one RunSpec per batch
    size and framework, in the order they run (batch sizes outer), each with its resources resolved from
    ``registry`` (``ResolvedResources.from_registry``) and ``settings`` at its batch size.

    A run's id is ``run_id_for(evaluation_id, framework, batch size)``, the batch size only in a sweep (more than
    one); ``output_dir(run_id, framework, that batch size or None)`` is where its LoadGen logs go."""
    resources = {name: ResolvedResources.from_registry(registry, model, name, dataset) for name in frameworks}
    sweep = len(batch_sizes) > 1
    specs: list[RunSpec] = []
    for size in batch_sizes:
        swept = size if sweep else None
        for name in frameworks:
            run_id = run_id_for(evaluation_id, name, swept)
            specs.append(
                RunSpec(
                    run_id=run_id,
                    evaluation_id=evaluation_id,
                    model=model,
                    framework=name,
                    dataset=resources[name].dataset_name,
                    resources=resources[name],
                    device=device,
                    intra_op_threads=intra_op_threads,
                    trace_level=trace_level,
                    settings=settings.model_copy(update={"batch_size": size}),
                    nats_url=nats_url,
                    cache_dir=cache_dir,
                    output_dir=output_dir(run_id, name, swept),
                )
            )
    return specs


__all__ = [
    "SPOOL_FOLDER",
    "ResolvedResource",
    "ResolvedResources",
    "RunSpec",
    "canonical_spec",
    "run_matrix",
    "spec_sha256",
]
