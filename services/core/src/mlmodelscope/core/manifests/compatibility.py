"""Whether a model can consume a dataset, decided from the two manifests alone: "which models fit my dataset".

The CLI (``models list --dataset``, the checks ``evaluate`` makes before it starts anything) and the web UI's
catalog ask the same question, so the rules live here, pure and without I/O (no file is read, nothing fetched).
Each rule that fails adds one reason: a sentence that names the model, the dataset and what differs, so a list of
reasons is the whole answer. What can only be known by reading the data (an npz file's shapes, a labels file's
length, the categories of a COCO JSON, whether its annotations carry segmentation polygons) is left to the run,
which checks it again with the data at hand.

The rules:

- task: a ``coco`` dataset serves ``object_detection`` and ``semantic_segmentation`` (decided statically: a COCO
  instances file has boxes for every annotation and, in the common case, polygons or RLE masks; a COCO file without
  segmentations fails the segmentation run with a precise error), besides the task it declares; ``folder``, ``npz``
  and ``synthetic`` datasets serve the one task they declare.
- input type: image files (``folder``, ``coco``) are encoded bytes, so the model's input must start with a ``decode``
  step; array datasets (``npz``, ``synthetic``) hold decoded arrays, so it must not have one.
- shape: for ``synthetic`` datasets, the sample shape after the pre-processing steps (where every step's effect on
  the shape is known: resize to a fixed size, crop, pad, layout, normalize, dtype) must match the input's declared
  shape (-1 matches any size), rank included.
- classes: a ``synthetic`` dataset's labels go up to ``classes - 1``; a classification output of a fixed size must
  have at least that many classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlmodelscope.core.manifests.fields import Task
from mlmodelscope.core.manifests.model_tensors import ModelInput
from mlmodelscope.core.manifests.resources import Dataset, Model
from mlmodelscope.core.processing.steps import PreprocessStep

IMAGE_FILE_KINDS = frozenset({"folder", "coco"})
COCO_TASKS: tuple[Task, ...] = ("object_detection", "semantic_segmentation")


@dataclass(frozen=True)
class Fit:
    """The answer: ``ok`` when no rule failed; otherwise one sentence per failed rule."""

    ok: bool
    reasons: list[str] = field(default_factory=list)


def served_tasks(dataset: Dataset) -> tuple[Task, ...]:
    """The tasks a model may have to be evaluated on this dataset."""
    declared = dataset.spec.task
    if dataset.spec.source.kind == "coco":
        return (declared, *(task for task in COCO_TASKS if task != declared))
    return (declared,)


def fit(model: Model, dataset: Dataset) -> Fit:
    """Whether ``model`` can be evaluated on ``dataset``, with the reasons it cannot."""
    reasons = [
        *_task_reasons(model, dataset),
        *_input_reasons(model, dataset),
        *_shape_reasons(model, dataset),
        *_class_reasons(model, dataset),
    ]
    return Fit(ok=not reasons, reasons=reasons)


def _task_reasons(model: Model, dataset: Dataset) -> list[str]:
    tasks = served_tasks(dataset)
    if model.spec.task in tasks:
        return []
    return [
        f"model '{model.name}' is {_article(model.spec.task)} {model.spec.task} model, but dataset '{dataset.name}' "
        f"(kind {dataset.spec.source.kind}) serves {' and '.join(tasks)}."
    ]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _input_reasons(model: Model, dataset: Dataset) -> list[str]:
    kind = dataset.spec.source.kind
    reasons = []
    first = model.spec.inputs[0]
    decodes = [index for index, step in enumerate(first.preprocess) if step.decode is not None]
    if kind in IMAGE_FILE_KINDS and not (first.preprocess and first.preprocess[0].decode is not None):
        reasons.append(
            f"dataset '{dataset.name}' (kind {kind}) holds encoded image files, but input '{first.name}' of model "
            f"'{model.name}' does not start with a `decode` step (add `- decode: {{color_mode: RGB}}` first)."
        )
    if kind not in IMAGE_FILE_KINDS and decodes:
        reasons.append(
            f"dataset '{dataset.name}' (kind {kind}) holds decoded arrays, but input '{first.name}' of model "
            f"'{model.name}' has a `decode` step (step {decodes[0]}), which takes encoded image bytes."
        )
    if len(model.spec.inputs) > 1:
        names = ", ".join(f"'{i.name}'" for i in model.spec.inputs)
        reasons.append(
            f"model '{model.name}' has {len(model.spec.inputs)} inputs ({names}), but dataset '{dataset.name}' "
            "gives one sample per item."
        )
    return reasons


def _shape_reasons(model: Model, dataset: Dataset) -> list[str]:
    source = dataset.spec.source
    if source.kind != "synthetic" or source.shape is None:
        return []
    first = model.spec.inputs[0]
    shape = shape_after(tuple(source.shape), first.preprocess)
    if shape is None or _matches(shape, first.shape):
        return []
    steps = ", ".join(step.kind for step in first.preprocess) or "none"
    return [
        f"the samples of dataset '{dataset.name}' have shape {list(source.shape)}, which pre-processing (steps: "
        f"{steps}) turns into {list(shape)}, but input '{first.name}' of model '{model.name}' takes shape "
        f"{first.shape}{_rank_note(shape, first)}."
    ]


def _rank_note(shape: tuple[int, ...], model_input: ModelInput) -> str:
    if len(shape) == len(model_input.shape):
        return ""
    return f" (rank {len(shape)} vs {len(model_input.shape)})"


def _matches(shape: tuple[int, ...], declared: list[int]) -> bool:
    return len(shape) == len(declared) and all(d in (-1, s) for s, d in zip(shape, declared, strict=True))


def shape_after(shape: tuple[int, ...], steps: list[PreprocessStep]) -> tuple[int, ...] | None:
    """The shape of an array sample after ``steps`` (HWC images, as the pre-processor reads them), or None when
    a step's effect on the shape cannot be known without the data (an aspect-keeping resize, a colour change, a
    decode) or the steps do not apply to an array of this rank."""
    for step in steps:
        if step.normalize is not None or step.dtype is not None or step.layout == "HWC":
            continue
        if len(shape) not in (2, 3):
            return None
        if step.layout == "CHW":
            shape = (1, *shape) if len(shape) == 2 else (shape[2], shape[0], shape[1])
        elif step.resize is not None and not step.resize.keep_aspect_ratio:
            shape = (*step.resize.size, *shape[2:])
        elif step.crop is not None and step.crop.size is not None:
            shape = (*step.crop.size, *shape[2:])
        elif step.crop is not None and step.crop.ratio is not None:
            side = round(min(shape[0], shape[1]) * step.crop.ratio)
            shape = (side, side, *shape[2:])
        elif step.pad is not None:
            shape = (*step.pad.size, *shape[2:])
        else:
            return None
    return shape


def _class_reasons(model: Model, dataset: Dataset) -> list[str]:
    classes = dataset.spec.source.classes if dataset.spec.source.kind == "synthetic" else None
    output = model.spec.output_of_type("classification")
    if classes is None or output is None or not output.shape or output.shape[-1] == -1:
        return []
    outputs = output.shape[-1]
    if classes <= outputs:
        return []
    return [
        f"dataset '{dataset.name}' has labels in 0..{classes - 1} ({classes} classes), but output '{output.name}' of "
        f"model '{model.name}' scores {outputs} classes."
    ]
