"""The spec of a Model: its framework constraint, artifacts, tensors, reference facts and the task they must fit.

A model's parts each have their module (``artifact_spec``, ``model_tensors``); this one puts them together and
checks what only the whole can tell: one artifact per format, and outputs that make sense for the model's task.
"""

from __future__ import annotations

from typing import Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import Field, field_validator, model_validator

from mlmodelscope.core.manifests.artifact_spec import Artifact, ArtifactFormat
from mlmodelscope.core.manifests.fields import ResourceName, StrictModel, Task
from mlmodelscope.core.manifests.model_tensors import ModelInput, ModelOutput, OutputType


def _outputs_problem(task: Task, types: list[OutputType]) -> str | None:
    """Why a model of ``task`` cannot have outputs of ``types`` (None when it can)."""
    detection = {"boxes", "scores", "classes", "detections"}
    if task == "object_detection":
        if types.count("detections") == 1 and not detection & (set(types) - {"detections"}):
            return None
        if types.count("boxes") == 1 and types.count("scores") == 1 and types.count("classes") <= 1:
            return None
        return (
            f"an object_detection model declares one 'detections' output, or one 'boxes' and one 'scores' output "
            f"(and at most one 'classes'); these outputs are {types}"
        )
    if detection & set(types):
        return f"outputs of type {sorted(detection & set(types))} belong to object_detection models, not {task}"
    if task == "semantic_segmentation" and types.count("mask") != 1:
        return f"a semantic_segmentation model declares exactly one 'mask' output; these outputs are {types}"
    if task != "semantic_segmentation" and "mask" in types:
        return f"a 'mask' output belongs to a semantic_segmentation model, not {task}"
    return None


class FrameworkConstraint(StrictModel):
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


class ModelAttributes(StrictModel):
    """Facts about the model, recorded with its results (reference accuracy, provenance); none changes a run."""

    top1: float | None = Field(default=None, ge=0, le=1, description="Reference top-1 accuracy (fraction).")
    top5: float | None = Field(default=None, ge=0, le=1, description="Reference top-5 accuracy (fraction).")
    map: float | None = Field(
        default=None, ge=0, le=1, description="Detection: reference COCO mAP@[.5:.95] on its default dataset."
    )
    map_50: float | None = Field(default=None, ge=0, le=1, description="Detection: reference COCO AP at IoU 0.50.")
    mean_iou: float | None = Field(
        default=None, ge=0, le=1, description="Segmentation: reference mean IoU on its default dataset."
    )
    training_dataset: str | None = Field(default=None, description="The data the weights were trained on.")
    weights: Literal["trained", "random"] = Field(
        default="trained", description="'random' marks seeded untrained weights, for performance work only."
    )
    kind: str | None = Field(default=None, description="Architecture family, e.g. CNN.")
    references: list[str] = Field(default_factory=list, description="Papers or pages describing the model.")
    license: str | None = Field(default=None, description="The weights' license, e.g. an SPDX identifier.")
    manifest_author: str | None = Field(default=None, description="Who wrote this manifest.")


class ModelSpec(StrictModel):
    """A model: its artifacts, its inputs and outputs with their processing, and what it was made for."""

    description: str = Field(default="", description="Free text shown in listings.")
    version: str = Field(default="1.0", description="The model's own version.")
    task: Task = Field(description="What the model does; the dataset must have the same task.")
    framework: FrameworkConstraint
    artifacts: list[Artifact] = Field(min_length=1, description="The model in one or more formats.")
    inputs: list[ModelInput] = Field(min_length=1, description="The model's input tensors, in the graph's order.")
    outputs: list[ModelOutput] = Field(
        min_length=1, description="The model's output tensors and their post-processing."
    )
    dataset: ResourceName | None = Field(default=None, description="Default Dataset to evaluate on.")
    attributes: ModelAttributes = Field(
        default_factory=ModelAttributes, description="Facts about the model (reference accuracy, provenance)."
    )
    hidden: bool = Field(default=False, description="true: left out of listings (still runnable by name).")

    @model_validator(mode="after")
    def _one_artifact_per_format(self) -> ModelSpec:
        formats = [a.format for a in self.artifacts]
        duplicated = sorted({f for f in formats if formats.count(f) > 1})
        if duplicated:
            raise ValueError(f"artifacts: more than one artifact of format {', '.join(duplicated)}")
        return self

    @model_validator(mode="after")
    def _outputs_of_its_task(self) -> ModelSpec:
        types = [o.type for o in self.outputs]
        problem = _outputs_problem(self.task, types)
        if problem:
            raise ValueError(f"outputs: {problem}")
        return self

    def output_of_type(self, *types: OutputType) -> ModelOutput | None:
        """The first output of one of ``types``, or None."""
        return next((o for o in self.outputs if o.type in types), None)

    def artifact_for(self, formats: list[ArtifactFormat]) -> Artifact | None:
        """The first artifact whose format the framework supports, in the framework's order of preference."""
        by_format = {a.format: a for a in self.artifacts}
        return next((by_format[f] for f in formats if f in by_format), None)
