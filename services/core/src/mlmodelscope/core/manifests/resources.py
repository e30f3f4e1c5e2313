"""Model, Framework and Dataset documents as pydantic models that are valid Kubernetes custom resources.

One YAML file serves both worlds: locally it is read from ``assets/``; in a cluster ``kubectl apply -f`` registers
it. These classes are the single source of truth: the CRDs and JSON Schemas are generated from them. Unknown fields
are errors everywhere (``extra="forbid"``), so a typo never silently changes what is evaluated.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlmodelscope.core.processing.steps import PostprocessStep, PreprocessStep

API_GROUP = "mlmodelscope.org"
API_VERSION = f"{API_GROUP}/v1alpha1"

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_SHA256 = r"^[0-9a-f]{64}$"

ResourceName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=_DNS_LABEL,
        description="A DNS-1123 label: lower-case letters, digits and '-', starting and ending alphanumeric.",
    ),
]
Sha256 = Annotated[str, Field(pattern=_SHA256, description="Lower-case hex sha256 of the file's bytes.")]
ArtifactFormat = Literal["onnx", "torchscript", "torch_export", "savedmodel", "keras", "mxnet"]
TensorDtype = Literal["float32", "float16", "float64", "uint8", "int8", "int32", "int64", "bool"]
Architecture = Literal["amd64", "arm64", "ppc64le"]
Accelerator = Literal["cpu", "gpu", "fpga"]
Task = Literal[
    "image_classification",
    "object_detection",
    "semantic_segmentation",
    "instance_segmentation",
    "image_enhancement",
    "raw",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectMeta(_Strict):
    """The part of Kubernetes' ObjectMeta that a manifest may carry."""

    name: ResourceName
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class FileRef(_Strict):
    """A file fetched through the artifact store and pinned by its sha256."""

    uri: str = Field(
        min_length=1,
        description="file:///abs, a path relative to the manifest's folder, http(s)://host/path or s3://bucket/key.",
    )
    sha256: Sha256


class Artifact(FileRef):
    """One serialisation of the model's weights."""

    format: ArtifactFormat = Field(description="Serialisation format; a framework runs the formats it lists.")
    archive: bool = Field(default=False, description="The file is a .tar(.gz)/.zip to extract (e.g. a SavedModel).")


class TensorSpec(_Strict):
    name: str = Field(min_length=1, description="The tensor's name in the model graph.")
    shape: list[Annotated[int, Field(ge=-1)]] = Field(
        description="Shape of ONE sample, without the batch axis; -1 marks a dynamic axis."
    )
    dtype: TensorDtype = "float32"


class ModelInput(TensorSpec):
    type: Literal["image", "tensor"] = Field(default="tensor", description="What one dataset sample is.")
    preprocess: list[PreprocessStep] = Field(
        default_factory=list, description="Ordered pre-processing steps turning a dataset sample into this tensor."
    )


class ModelOutput(TensorSpec):
    type: Literal["classification", "raw"] = "classification"
    postprocess: list[PostprocessStep] = Field(default_factory=list, description="Ordered post-processing steps.")
    labels: FileRef | None = Field(default=None, description="One label per line, index i names class i.")


class FrameworkConstraint(_Strict):
    """The framework the model was made for. Other frameworks may run it too when they support one of its
    artifact formats; the version constraint applies to this one."""

    name: ResourceName = Field(description="Name of a Framework resource.")
    version: str = Field(default="", description="PEP 440 version specifier, e.g. '>=1.17,<2'; empty means any.")

    @field_validator("version")
    @classmethod
    def _valid_specifier(cls, value: str) -> str:
        try:
            SpecifierSet(value)
        except InvalidSpecifier as e:
            raise ValueError(f"'{value}' is not a PEP 440 version specifier (example: '>=1.17,<2')") from e
        return value

    @property
    def specifier(self) -> SpecifierSet:
        return SpecifierSet(self.version)


class ModelAttributes(_Strict):
    top1: float | None = Field(default=None, ge=0, le=1, description="Reference top-1 accuracy (fraction).")
    top5: float | None = Field(default=None, ge=0, le=1, description="Reference top-5 accuracy (fraction).")
    training_dataset: str | None = None
    weights: Literal["trained", "random"] = Field(
        default="trained", description="'random' marks seeded untrained weights, for performance work only."
    )
    kind: str | None = Field(default=None, description="Architecture family, e.g. CNN.")
    references: list[str] = Field(default_factory=list)
    license: str | None = None
    manifest_author: str | None = None


class ModelSpec(_Strict):
    description: str = ""
    version: str = Field(default="1.0", description="The model's own version.")
    task: Task
    framework: FrameworkConstraint
    artifacts: list[Artifact] = Field(min_length=1, description="The model in one or more formats.")
    inputs: list[ModelInput] = Field(min_length=1)
    outputs: list[ModelOutput] = Field(min_length=1)
    dataset: ResourceName | None = Field(default=None, description="Default Dataset to evaluate on.")
    attributes: ModelAttributes = Field(default_factory=ModelAttributes)
    hidden: bool = False

    @model_validator(mode="after")
    def _one_artifact_per_format(self) -> ModelSpec:
        formats = [a.format for a in self.artifacts]
        duplicated = sorted({f for f in formats if formats.count(f) > 1})
        if duplicated:
            raise ValueError(f"artifacts: more than one artifact of format {', '.join(duplicated)}")
        return self

    def artifact_for(self, formats: list[ArtifactFormat]) -> Artifact | None:
        """The first artifact whose format the framework supports, in the framework's order of preference."""
        by_format = {a.format: a for a in self.artifacts}
        return next((by_format[f] for f in formats if f in by_format), None)


class Container(_Strict):
    arch: Architecture
    accelerator: Accelerator
    image: str = Field(min_length=1)


class LocalRuntime(_Strict):
    python: str | None = Field(
        default=None, description="Interpreter that runs this framework's agent locally; default: the CLI's own."
    )


class FrameworkSpec(_Strict):
    description: str = ""
    version: str = Field(min_length=1, description="The framework version this resource describes (PEP 440).")
    predictor: str = Field(min_length=1, description="Name of the predictor entry point that runs it.")
    formats: list[ArtifactFormat] = Field(min_length=1, description="Supported artifact formats, preferred first.")
    accelerators: list[Accelerator] = Field(default_factory=lambda: list[Accelerator](["cpu"]))
    containers: list[Container] = Field(default_factory=list)
    device_resources: dict[Accelerator, str] = Field(
        default_factory=dict, description="Kubernetes extended resource per accelerator, e.g. gpu: nvidia.com/gpu."
    )
    runtime: LocalRuntime = Field(default_factory=LocalRuntime)


class DatasetSource(FileRef):
    kind: Literal["npz"] = Field(description="npz: arrays 'images' (N, ...) and 'labels' (N,).")
    images_key: str = "images"
    labels_key: str = "labels"


class DatasetSpec(_Strict):
    description: str = ""
    task: Task
    source: DatasetSource
    size: int = Field(ge=1, description="Number of samples; checked against the data when loaded.")
    split: str = Field(default="test", description="Which split of the original data this is, and how it was made.")
    labels: FileRef | None = None


class _Resource(_Strict):
    api_version: Literal["mlmodelscope.org/v1alpha1"] = Field(alias="apiVersion")
    metadata: ObjectMeta

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def name(self) -> str:
        return self.metadata.name


class Model(_Resource):
    kind: Literal["Model"]
    spec: ModelSpec


class Framework(_Resource):
    kind: Literal["Framework"]
    spec: FrameworkSpec


class Dataset(_Resource):
    kind: Literal["Dataset"]
    spec: DatasetSpec


Resource = Model | Framework | Dataset
RESOURCE_KINDS: dict[str, type[Model] | type[Framework] | type[Dataset]] = {
    "Model": Model,
    "Framework": Framework,
    "Dataset": Dataset,
}


def is_valid_name(name: str) -> bool:
    return re.fullmatch(_DNS_LABEL, name) is not None and len(name) <= 63
