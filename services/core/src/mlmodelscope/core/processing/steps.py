"""The declarative pre- and post-processing steps a Model manifest lists, as pydantic models.

A manifest never carries code: it names steps (``decode``, ``resize``, ``crop``, ...) in the order they apply, and
the core runs them the same way for every framework, so frameworks are compared on identical tensors. Each list
item is an object with exactly ONE key set. That shape (an object whose properties are all optional, validated to
hold exactly one) is a *structural* Kubernetes CRD schema, unlike a tagged union, so the same YAML is valid both
locally and under ``kubectl apply``. The JSON Schema of these models (with their ``Field`` descriptions) is the CRD's
documentation; unknown keys are errors everywhere.

    preprocess:
      - decode: {color_mode: RGB}
      - resize: {size: [256, 256], method: bilinear, keep_aspect_ratio: true}
      - crop: {method: center, size: [224, 224]}
      - normalize: {mean: [123.675, 116.28, 103.53], scale: [58.395, 57.12, 57.375]}
      - layout: CHW
      - dtype: float32
    postprocess:
      - softmax: {}
      - top_k: {k: 5}
"""

from __future__ import annotations

from typing import Annotated, Literal, Self, cast

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, PositiveInt, WithJsonSchema, model_validator
from pydantic.config import JsonDict

ColorMode = Literal["RGB", "BGR", "GRAY"]
Layout = Literal["HWC", "CHW"]
DType = Literal["float32", "float16", "float64", "uint8", "int8", "int32", "int64"]
PreprocessKind = Literal["decode", "resize", "crop", "pad", "color_mode", "normalize", "layout", "dtype"]
PostprocessKind = Literal["softmax", "sigmoid", "top_k", "score_threshold", "nms"]

# A (height, width) pair. Pydantic would describe a tuple with `prefixItems`, which a structural CRD schema cannot
# hold; the schema below says the same thing (two positive integers) in the form Kubernetes accepts.
Size = Annotated[
    tuple[PositiveInt, PositiveInt],
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "minItems": 2,
            "maxItems": 2,
            "description": "[height, width] in pixels.",
        }
    ),
]
PerChannel = FiniteFloat | Annotated[list[FiniteFloat], Field(min_length=1)]

_ONE_KEY_SCHEMA: JsonDict = {"minProperties": 1, "maxProperties": 1}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DecodeStep(_Strict):
    """Decode encoded image bytes (JPEG, PNG, ...) into an HWC uint8 array."""

    color_mode: ColorMode = Field(
        default="RGB", description="Channel order of the decoded image: RGB, BGR, or GRAY (one channel, ITU-R 601-2)."
    )


class ResizeStep(_Strict):
    """Resize an HWC image with Pillow (its bilinear filter is antialiased when downscaling)."""

    size: Size = Field(description="Target [height, width] in pixels.")
    method: Literal["bilinear", "nearest"] = Field(default="bilinear", description="Pillow resampling filter.")
    keep_aspect_ratio: bool = Field(
        default=False,
        description=(
            "false: resize to exactly `size`. true: scale uniformly so the image covers `size` (the binding side "
            "gets its target exactly, the other side is floored and is at least its target); the result is not "
            "cropped, so a crop step usually follows (torchvision's Resize(256) + CenterCrop(224))."
        ),
    )
    fit: Literal["cover", "contain"] = Field(
        default="cover",
        description=(
            "With keep_aspect_ratio: cover (the image covers `size`, as above) or contain (the image fits inside "
            "`size`: the binding side gets its target, the other is floored; a `pad` step then letterboxes it)."
        ),
    )


class CropStep(_Strict):
    """Cut a window out of an HWC image; give exactly one of `size` and `ratio`."""

    method: Literal["center", "top_left"] = Field(
        default="center",
        description=(
            "center: offsets (int(round((H - h) / 2)), int(round((W - w) / 2))), round half to even, as "
            "torchvision's CenterCrop; top_left: offsets (0, 0)."
        ),
    )
    size: Size | None = Field(default=None, description="Window [height, width] in pixels.")
    ratio: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description=(
            "A square window of side round(min(H, W) * ratio): after a shorter-side resize to 256, 0.875 cuts "
            "224 x 224 (timm's crop_pct)."
        ),
    )

    @model_validator(mode="after")
    def _size_xor_ratio(self) -> Self:
        if (self.size is None) == (self.ratio is None):
            raise ValueError("crop takes exactly one of `size` ([height, width]) and `ratio` (0 < ratio <= 1)")
        return self


class PadStep(_Strict):
    """Pad an HWC image to `size` (a letterbox after `resize: {keep_aspect_ratio: true, fit: contain}`)."""

    size: Size = Field(description="Target [height, width] in pixels; the image must not be larger.")
    value: FiniteFloat = Field(default=0.0, description="The padding value of every channel (YOLO uses 114).")
    position: Literal["center", "top_left"] = Field(
        default="center",
        description="center: the image sits in the middle (offsets (H - h) // 2, (W - w) // 2); top_left: at (0, 0).",
    )


class NormalizeStep(_Strict):
    """Compute (x - mean) / scale in float32, per channel (a list) or for all channels (a number)."""

    mean: PerChannel = Field(default=0.0, description="Subtracted first: one number, or one per channel.")
    scale: PerChannel = Field(
        default=1.0, description="Divides next (often the standard deviation): one non-zero number, or one per channel."
    )

    @model_validator(mode="after")
    def _valid_scale(self) -> Self:
        scales = self.scale if isinstance(self.scale, list) else [self.scale]
        if any(s == 0 for s in scales):
            raise ValueError(f"normalize scale must not contain 0 (got {self.scale}); it divides")
        if isinstance(self.mean, list) and isinstance(self.scale, list) and len(self.mean) != len(self.scale):
            raise ValueError(
                f"normalize mean has {len(self.mean)} values but scale has {len(self.scale)}; give one per channel"
            )
        return self


def _keys_set(model: BaseModel) -> list[str]:
    return [name for name in type(model).model_fields if getattr(model, name) is not None]


def _exactly_one(model: BaseModel, what: str) -> None:
    keys = _keys_set(model)
    if len(keys) != 1:
        found = ", ".join(keys) if keys else "none"
        allowed = ", ".join(type(model).model_fields)
        raise ValueError(
            f"a {what} step must set exactly one of {allowed}; this one sets {found} "
            "(write each step as its own list item; a key with no value counts as unset, write `key: {}`)"
        )


class PreprocessStep(_Strict):
    """One pre-processing step: an object with exactly one of these keys."""

    model_config = ConfigDict(json_schema_extra=_ONE_KEY_SCHEMA)

    decode: DecodeStep | None = Field(default=None, description="Bytes (JPEG/PNG) to an HWC uint8 image; first step.")
    resize: ResizeStep | None = Field(default=None, description="Resize the HWC image.")
    crop: CropStep | None = Field(default=None, description="Crop the HWC image.")
    pad: PadStep | None = Field(default=None, description="Pad the HWC image to a size (letterbox).")
    color_mode: ColorMode | None = Field(
        default=None,
        description=(
            "Convert the HWC image's channels to RGB, BGR or GRAY. The current mode is the decode step's, "
            "or RGB for array samples."
        ),
    )
    normalize: NormalizeStep | None = Field(default=None, description="(x - mean) / scale in float32.")
    layout: Layout | None = Field(
        default=None, description="CHW transposes HWC to CHW (an (H, W) image becomes (1, H, W)); HWC is a no-op."
    )
    dtype: DType | None = Field(
        default=None,
        description="Cast to this element type; casts to integer types round and saturate to the type's range.",
    )

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        _exactly_one(self, "preprocess")
        return self

    @property
    def kind(self) -> PreprocessKind:
        """The name of the one key that is set, e.g. ``"resize"``."""
        return cast(PreprocessKind, _keys_set(self)[0])


class SoftmaxStep(_Strict):
    """Turn logits into probabilities with a numerically stable softmax."""

    axis: int = Field(default=-1, description="Axis of the (batch, classes) output to normalise; -1 is classes.")


class TopKStep(_Strict):
    """Keep the k most probable classes of each row."""

    k: int = Field(default=5, ge=1, description="How many classes to report; capped at the number of classes.")


class SigmoidStep(_Strict):
    """Turn per-box score logits into probabilities (detection scores)."""


class ScoreThresholdStep(_Strict):
    """Drop detections whose score is below a threshold."""

    threshold: float = Field(default=0.05, ge=0, le=1, description="Smallest score kept (COCO practice: 0.05).")


class NmsStep(_Strict):
    """Greedy non-maximum suppression of overlapping boxes, highest score first."""

    iou_threshold: float = Field(
        default=0.5, gt=0, le=1, description="A box whose IoU with a kept box exceeds this is dropped."
    )
    class_aware: bool = Field(default=True, description="true: boxes suppress only boxes of their own class.")


class PostprocessStep(_Strict):
    """One post-processing step: an object with exactly one of these keys."""

    model_config = ConfigDict(json_schema_extra=_ONE_KEY_SCHEMA)

    softmax: SoftmaxStep | None = Field(
        default=None, description="Apply softmax (omit it when the model already outputs probabilities)."
    )
    sigmoid: SigmoidStep | None = Field(
        default=None, description="detection: apply a sigmoid to the scores (when the model outputs logits)."
    )
    top_k: TopKStep | None = Field(
        default=None,
        description="classification: number of top classes to report (default 5); detection: the most "
        "detections kept per image, by score (default 100).",
    )
    score_threshold: ScoreThresholdStep | None = Field(
        default=None, description="detection: drop detections scored below the threshold."
    )
    nms: NmsStep | None = Field(default=None, description="detection: non-maximum suppression.")

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        _exactly_one(self, "postprocess")
        return self

    @property
    def kind(self) -> PostprocessKind:
        """The name of the one key that is set, e.g. ``"softmax"``."""
        return cast(PostprocessKind, _keys_set(self)[0])
