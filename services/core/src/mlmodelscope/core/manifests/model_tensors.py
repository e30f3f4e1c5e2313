"""A Model's input and output tensors: their shapes and types, and how each is pre- or post-processed.

The outputs carry most of the schema (detection boxes and columns, SSD anchor grids, segmentation masks) and the
rules that keep an output's type, encoding and post-processing steps consistent; the model as a whole
(``model_spec``) checks only that its outputs fit its task.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from mlmodelscope.core.manifests.fields import FileRef, StrictModel, TensorDtype
from mlmodelscope.core.processing.steps import PostprocessStep, PreprocessStep, Size


class TensorSpec(StrictModel):
    name: str = Field(min_length=1, description="The tensor's name in the model graph.")
    shape: list[Annotated[int, Field(ge=-1)]] = Field(
        description="Shape of ONE sample, without the batch axis; -1 marks a dynamic axis."
    )
    dtype: TensorDtype = Field(default="float32", description="Element type of the tensor.")


class ModelInput(TensorSpec):
    type: Literal["image", "tensor"] = Field(default="tensor", description="What one dataset sample is.")
    preprocess: list[PreprocessStep] = Field(
        default_factory=list, description="Ordered pre-processing steps turning a dataset sample into this tensor."
    )


OutputType = Literal["classification", "raw", "boxes", "scores", "classes", "detections", "mask"]
BoxFormat = Literal["xyxy", "xywh", "cxcywh", "yxyx"]
BoxCoordinates = Literal["normalized", "pixels"]
MaskFormat = Literal["logits", "ids"]
_DETECTION_STEPS = frozenset({"sigmoid", "top_k", "score_threshold", "nms"})
_CLASSIFICATION_STEPS = frozenset({"softmax", "top_k"})
_STEPS_OF_TYPE: dict[str, frozenset[str]] = {
    "classification": _CLASSIFICATION_STEPS,
    "raw": frozenset(),
    "boxes": _DETECTION_STEPS,
    "detections": _DETECTION_STEPS,
    "scores": frozenset(),
    "classes": frozenset(),
    "mask": frozenset(),
}


class DetectionColumns(StrictModel):
    """Where the values of one detection sit in a combined ``detections`` tensor's last axis."""

    box: int = Field(default=0, ge=0, description="Index of the first of the 4 box values (in `box_format` order).")
    score: int = Field(default=4, ge=0, description="Index of the score.")
    class_: int | None = Field(
        default=5, ge=0, alias="class", description="Index of the class id; null: a one-class detector (class 0)."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


BoxEncoding = Literal["direct", "anchor_offsets"]


class AnchorLayer(StrictModel):
    """One feature map of an SSD anchor grid: its cells and how many anchors each cell holds."""

    stride: PositiveInt = Field(description="Model-input pixels per feature-map cell (the map is ceil(size/stride)).")
    per_cell: PositiveInt = Field(description="Anchors per cell, all at the cell's centre (BlazeFace: 2 and 6).")


class AnchorGrid(StrictModel):
    """SSD anchors as MediaPipe's SsdAnchorsCalculator makes them with a fixed anchor size.

    Layer by layer, row by row, column by column, ``per_cell`` anchors per cell, each centred at
    ``((x + offset) / map_width, (y + offset) / map_height)`` (normalized to the input) with width and height
    ``fixed_size``. The anchor count is the sum over layers of cells x per_cell and must equal the boxes' N.
    """

    input_size: Size = Field(description="[height, width] of the model input the grid covers, in pixels.")
    layers: list[AnchorLayer] = Field(min_length=1, description="The feature maps, in the model's output order.")
    offset: float = Field(default=0.5, ge=0, le=1, description="Anchor centre within its cell (0.5: the middle).")
    fixed_size: PositiveFloat = Field(
        default=1.0, description="Width and height of every anchor, normalized to the input (MediaPipe: 1.0)."
    )

    @property
    def count(self) -> int:
        """How many anchors the grid has."""
        height, width = self.input_size
        return sum(-(-height // a.stride) * -(-width // a.stride) * a.per_cell for a in self.layers)


class ModelOutput(TensorSpec):
    """One output tensor: what it holds (its type) and how it is post-processed.

    Detection models declare either one ``detections`` tensor (batch, N, K) with ``columns``, or a ``boxes``
    tensor (batch, N, 4) plus a ``scores`` tensor ((batch, N), or (batch, N, C) per-class scores) and, unless the
    scores are per class, a ``classes`` tensor (batch, N). The detection post-processing steps go on the
    ``boxes``/``detections`` output; boxes are always mapped back to the original image by inverting the input's
    resize/crop/pad steps. Segmentation models declare one ``mask`` tensor: (batch, C, H, W) logits (``layout``
    CHW, or (batch, H, W, C) with HWC) or (batch, H, W) class ids.
    """

    type: OutputType = Field(
        default="classification",
        description="classification: class scores (top-1/top-5 against the dataset's labels); raw: kept as is; "
        "boxes / scores / classes / detections: an object detector's outputs (COCO mAP); mask: per-pixel classes "
        "(mean IoU).",
    )
    postprocess: list[PostprocessStep] = Field(default_factory=list, description="Ordered post-processing steps.")
    labels: FileRef | None = Field(default=None, description="One label per line, index i names class i.")
    box_format: BoxFormat = Field(
        default="xyxy",
        description="boxes/detections: the order of the 4 box values: xyxy (corners), xywh (top-left corner, "
        "width, height), cxcywh (centre, width, height), yxyx (TensorFlow's corners).",
    )
    box_coordinates: BoxCoordinates = Field(
        default="pixels",
        description="boxes/detections: pixels of the model input, or normalized to [0, 1] of its width/height.",
    )
    columns: DetectionColumns | None = Field(
        default=None, description="detections: where box, score and class sit in the last axis."
    )
    class_offset: int = Field(
        default=0,
        description="boxes/classes/detections/mask: subtracted from the model's class ids to get the dataset's "
        "class index (1 when the model's class 0 is a background class the dataset does not have).",
    )
    mask_format: MaskFormat = Field(default="logits", description="mask: per-class logits, or class ids per pixel.")
    layout: Literal["CHW", "HWC"] = Field(default="CHW", description="mask logits: class axis first (CHW) or last.")
    box_encoding: BoxEncoding = Field(
        default="direct",
        description="boxes: direct (the values are the boxes) or anchor_offsets (SSD regressors: centre = anchor "
        "centre + value / scale x anchor size, size = value / scale x anchor size; needs `anchors`, box_format "
        "cxcywh, box_coordinates normalized; values past the first 4 of the last axis, e.g. keypoints, are ignored).",
    )
    anchors: AnchorGrid | None = Field(default=None, description="boxes with anchor_offsets: the SSD anchor grid.")
    anchor_scale: list[PositiveFloat] = Field(
        default_factory=lambda: [1.0, 1.0, 1.0, 1.0],
        min_length=4,
        max_length=4,
        description="anchor_offsets: [x, y, w, h] divisors of the raw values (MediaPipe's x/y/w/h_scale; "
        "BlazeFace: the input size, 128).",
    )

    @model_validator(mode="after")
    def _anchors_of_its_encoding(self) -> ModelOutput:
        if self.box_encoding == "direct":
            if self.anchors is not None:
                raise ValueError("anchors: only an output with box_encoding anchor_offsets uses anchors")
            return self
        if self.type != "boxes" or self.anchors is None:
            raise ValueError("box_encoding anchor_offsets: needs a 'boxes' output with `anchors` (the SSD grid)")
        if self.box_format != "cxcywh" or self.box_coordinates != "normalized":
            raise ValueError(
                "box_encoding anchor_offsets: decodes to anchor-relative centres and sizes: set box_format cxcywh "
                "and box_coordinates normalized"
            )
        if self.shape and self.shape[0] not in (-1, self.anchors.count):
            raise ValueError(
                f"anchors: the grid has {self.anchors.count} anchors but output '{self.name}' declares "
                f"{self.shape[0]} boxes (shape {self.shape}); fix the layers (stride, per_cell) or the shape"
            )
        return self

    @model_validator(mode="after")
    def _steps_of_its_type(self) -> ModelOutput:
        allowed = _STEPS_OF_TYPE[self.type]
        wrong = sorted({step.kind for step in self.postprocess} - allowed)
        if wrong:
            raise ValueError(
                f"postprocess: {', '.join(wrong)} cannot post-process an output of type '{self.type}' (it takes "
                f"{', '.join(sorted(allowed)) or 'no steps'})"
            )
        if self.type == "detections" and self.columns is None:
            raise ValueError("columns: required for a 'detections' output (where box, score and class sit)")
        if self.type != "detections" and self.columns is not None:
            raise ValueError(f"columns: only a 'detections' output has columns, not '{self.type}'")
        return self
