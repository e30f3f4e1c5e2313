"""The run contract: one pydantic model for what one run executes, written by the CLI (local mode), the collector's
launcher (web UI) and the operator (a Job's ``MLMODELSCOPE_RUN_SPEC``), read by the agent.

The spec carries the *resolved* Model, Framework and Dataset resources as they were applied (their names, where
they came from, the cluster's resourceVersion/generation and a sha256 of each spec), so the agent evaluates exactly
what was declared and re-resolves nothing: no asset folder is needed wherever the artifacts are reachable by URI.
Relative artifact URIs resolve against each resource's ``base_dir`` (the manifest's folder locally; in a cluster,
the folder of the agent image's built-in assets of that kind).

One canonical form of a spec, so that every writer gives the same sha256 for the same spec: the spec as the core's
pydantic resource validated it, ``resource.spec.model_dump(mode="json", exclude_defaults=True)``
(``canonical_spec``). Local mode validates the manifest file, the operator the cluster object, with the same
classes; an explicit default and an omitted one digest alike, and the form validates back to the same spec (a plain
dump does not: a Dataset source refuses the fields of its other kind). Writers build resources with
``ResolvedResource.from_resource``; ``spec_sha256`` of that dict is what results and the Evaluation status record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlmodelscope.core.evaluation.settings import EvaluationSettings
from mlmodelscope.core.manifests.resources import API_VERSION, Accelerator, Resource
from mlmodelscope.core.messages import RunId
from mlmodelscope.core.tracing.spans import TraceLevel

SPOOL_FOLDER = "unpublished"
ResourceKind = Literal["Model", "Framework", "Dataset"]


def spec_sha256(spec: dict[str, Any]) -> str:
    """sha256 of a resource's spec in canonical JSON (sorted keys, no whitespace): equal specs, equal digests,
    however they were written (YAML file, kubectl apply, the API server's re-serialisation)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_spec(resource: Resource) -> dict[str, Any]:
    """The spec of a validated resource in the run contract's one canonical form (see the module docstring)."""
    return resource.spec.model_dump(mode="json", exclude_defaults=True)


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

    def checksums(self) -> dict[str, str]:
        """{'model': sha256, 'framework': ..., 'dataset': ...}: what the Evaluation status shows per run."""
        pairs = (("model", self.model), ("framework", self.framework), ("dataset", self.dataset))
        return {k: v.sha256 for k, v in pairs if v is not None}


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


__all__ = ["SPOOL_FOLDER", "ResolvedResource", "ResolvedResources", "RunSpec", "canonical_spec", "spec_sha256"]
