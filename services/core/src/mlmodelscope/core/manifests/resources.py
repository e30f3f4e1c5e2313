"""Model, Framework and Dataset documents as pydantic models that are valid Kubernetes custom resources.

One YAML file serves both worlds: locally it is read from ``assets/``; in a cluster ``kubectl apply -f`` registers
it. These classes are the single source of truth: ``make generate`` (``scripts/generate.py``) derives the CRDs in
``crds/`` and the editors' JSON Schemas in ``assets/schemas/`` from them, and ``tests/deploy/test_generated_files.py``
fails when a committed copy is stale. Unknown fields are errors everywhere (``extra="forbid"``), so a typo never
silently changes what is evaluated.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from mlmodelscope.core.manifests.dataset_spec import DatasetSpec
from mlmodelscope.core.manifests.fields import ObjectMeta, StrictModel
from mlmodelscope.core.manifests.framework_spec import FrameworkSpec
from mlmodelscope.core.manifests.model_spec import ModelSpec


class _Resource(StrictModel):
    api_version: Literal["mlmodelscope.org/v1alpha1"] = Field(alias="apiVersion")
    metadata: ObjectMeta

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def name(self) -> str:
        return self.metadata.name


class Model(_Resource):
    """A model to evaluate: artifacts pinned by sha256, tensors and their processing."""

    kind: Literal["Model"]
    spec: ModelSpec


class Framework(_Resource):
    """A framework that runs models: the formats it loads and the agent images that run it."""

    kind: Literal["Framework"]
    spec: FrameworkSpec


class Dataset(_Resource):
    """A dataset models are evaluated on: image files (a folder or archive, COCO), an npz file, or seeded synthetic
    samples."""

    kind: Literal["Dataset"]
    spec: DatasetSpec


Resource = Model | Framework | Dataset
RESOURCE_KINDS: dict[str, type[Model] | type[Framework] | type[Dataset]] = {
    "Model": Model,
    "Framework": Framework,
    "Dataset": Dataset,
}
