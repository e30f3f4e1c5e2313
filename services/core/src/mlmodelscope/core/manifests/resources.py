"""Model, Framework and Dataset documents as pydantic models that are valid Kubernetes custom resources.

One YAML file serves both worlds: locally it is read from ``assets/``; in a cluster ``kubectl apply -f`` registers
it. These classes are the single source of truth: ``make generate`` (``scripts/generate.py``) derives the CRDs in
``crds/`` and the editors' JSON Schemas in ``assets/schemas/`` from them, and ``tests/deploy/test_generated_files.py``
fails when a committed copy is stale. Unknown fields are errors everywhere (``extra="forbid"``), so a typo never
silently changes what is evaluated.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator, model_validator

from mlmodelscope.core.processing.steps import PostprocessStep, PreprocessStep, Size

API_GROUP = "mlmodelscope.org"
API_VERSION = f"{API_GROUP}/v1alpha1"

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_SHA256 = r"^[0-9a-f]{64}$"
ZOO_SCHEME = "zoo:"
_ZOO_URI = re.compile(r"zoo:(?P<name>[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)(?:\?seed=(?P<seed>0|[1-9][0-9]{0,9}))?")
_MAX_SEED = 2**32 - 1

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
ArtifactFormat = Literal["onnx", "torchscript", "torch_export", "savedmodel", "keras", "mxnet", "tflite"]
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


class ZooRef(_Strict):
    """A model of the built-in zoo named by an artifact URI ``zoo:<name>`` or ``zoo:<name>?seed=<N>``."""

    name: ResourceName
    seed: int = Field(default=0, ge=0, le=_MAX_SEED, description="Seed of the random weights.")


def parse_zoo_uri(uri: str) -> ZooRef | None:
    """The zoo model a ``zoo:`` URI names; None for any other URI; ValueError for a malformed ``zoo:`` URI."""
    if not uri.startswith(ZOO_SCHEME):
        return None
    match = _ZOO_URI.fullmatch(uri)
    if match is None:
        raise ValueError(
            f"'{uri}' is not a zoo URI; expected zoo:<name> or zoo:<name>?seed=<N> (name: lower-case letters, "
            "digits and '-'; N: a decimal integer without leading zeros)"
        )
    seed = int(match["seed"]) if match["seed"] is not None else 0
    if seed > _MAX_SEED:
        raise ValueError(f"'{uri}': the seed must be at most {_MAX_SEED}")
    return ZooRef(name=match["name"], seed=seed)


def _relative_path(name: str, *, what: str) -> str:
    """``name`` as a clean relative POSIX path inside a folder (no '..' escapes); ValueError otherwise."""
    if not name or name.strip() != name:
        raise ValueError(f"{what} '{name}' is empty or has surrounding blanks")
    if "\\" in name or "\x00" in name:
        raise ValueError(f"{what} '{name}' holds a backslash or NUL; write a relative path with '/'")
    if name.startswith("/") or posixpath.isabs(name):
        raise ValueError(f"{what} '{name}' is absolute; give a path relative to the folder")
    parts = name.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        raise ValueError(f"{what} '{name}' has an empty, '.' or '..' component; give a plain relative path")
    return name


class Sidecar(_Strict):
    """A file the artifact's file refers to by a relative name, fetched and placed beside it (ONNX external data)."""

    uri: str = Field(min_length=1, description="Where the sidecar is, as for any artifact uri (not zoo:).")
    sha256: Sha256
    name: str | None = Field(
        default=None,
        min_length=1,
        description="Its path relative to the artifact's file, as that file names it (ONNX: the external data "
        "`location`, e.g. model.onnx.data); default: the uri's last path segment.",
    )

    @field_validator("name")
    @classmethod
    def _relative_name(cls, value: str | None) -> str | None:
        return None if value is None else _relative_path(value, what="the sidecar name")

    @field_validator("uri")
    @classmethod
    def _not_zoo(cls, value: str) -> str:
        if value.startswith(ZOO_SCHEME):
            raise ValueError(f"'{value}': a sidecar is a fetched file; zoo: URIs name whole models")
        return value


class Artifact(_Strict):
    """One serialisation of the model's weights: a file pinned by its sha256, or a zoo model built locally."""

    uri: str = Field(
        min_length=1,
        description="file:///abs, a path relative to the manifest's folder, http(s)://host/path, s3://bucket/key, "
        "or zoo:<name>[?seed=N] (a built-in model with seeded random weights, built on first use).",
    )
    sha256: Sha256 | None = Field(
        default=None, description="Lower-case hex sha256 of the file's bytes; required unless the URI is zoo:."
    )
    format: ArtifactFormat = Field(description="Serialisation format; a framework runs the formats it lists.")
    archive: bool = Field(default=False, description="The file is a .tar(.gz)/.zip to extract (e.g. a SavedModel).")
    entrypoint: str | None = Field(
        default=None,
        min_length=1,
        description="archive only: the file or folder inside the unpacked archive that the framework loads, "
        "relative to its root (e.g. model.onnx beside its model.onnx.data); default: the archive's root folder.",
    )
    sidecars: list[Sidecar] = Field(
        default_factory=list,
        description="Files the artifact's file opens by a relative name (an ONNX model's external data, mandatory "
        "above 2 GB), each fetched, verified and placed beside it under its name.",
    )

    @field_validator("uri")
    @classmethod
    def _valid_zoo_uri(cls, value: str) -> str:
        parse_zoo_uri(value)
        return value

    @field_validator("entrypoint")
    @classmethod
    def _relative_entrypoint(cls, value: str | None) -> str | None:
        return None if value is None else _relative_path(value, what="the entrypoint")

    @model_validator(mode="after")
    def _pinned_unless_zoo(self) -> Artifact:
        if self.entrypoint is not None and not self.archive:
            raise ValueError(
                "entrypoint: names a file inside an archive; set `archive: true` (with a .tar/.tar.gz/.zip uri), "
                "or remove it"
            )
        if self.sidecars and self.archive:
            raise ValueError(
                "sidecars: an archive carries its own files; put the sidecar files in the archive and name the "
                "model file with `entrypoint`, or remove `archive: true`"
            )
        if self.zoo is None:
            if self.sha256 is None:
                raise ValueError(
                    f"sha256: required for '{self.uri}' (only zoo: artifacts, built locally, have none to pin)"
                )
            return self
        if self.sha256 is not None:
            raise ValueError(
                "sha256: a zoo: artifact is built locally, so there is nothing to pin (its sha256 is recorded in "
                "the result); remove it"
            )
        if self.archive:
            raise ValueError("archive: a zoo: artifact is built as the file or folder its framework loads; remove it")
        if self.sidecars:
            raise ValueError("sidecars: a zoo: artifact is built with everything it needs; remove them")
        return self

    @property
    def zoo(self) -> ZooRef | None:
        """The zoo model this artifact names, or None for a fetched file."""
        return parse_zoo_uri(self.uri)


class TensorSpec(_Strict):
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


class DetectionColumns(_Strict):
    """Where the values of one detection sit in a combined ``detections`` tensor's last axis."""

    box: int = Field(default=0, ge=0, description="Index of the first of the 4 box values (in `box_format` order).")
    score: int = Field(default=4, ge=0, description="Index of the score.")
    class_: int | None = Field(
        default=5, ge=0, alias="class", description="Index of the class id; null: a one-class detector (class 0)."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


BoxEncoding = Literal["direct", "anchor_offsets"]


class AnchorLayer(_Strict):
    """One feature map of an SSD anchor grid: its cells and how many anchors each cell holds."""

    stride: PositiveInt = Field(description="Model-input pixels per feature-map cell (the map is ceil(size/stride)).")
    per_cell: PositiveInt = Field(description="Anchors per cell, all at the cell's centre (BlazeFace: 2 and 6).")


class AnchorGrid(_Strict):
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


class ModelSpec(_Strict):
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


class Container(_Strict):
    """The agent image that runs this framework on one kind of node."""

    arch: Architecture = Field(description="Node CPU architecture (the kubernetes.io/arch label).")
    accelerator: Accelerator = Field(description="cpu, gpu or fpga.")
    image: str = Field(min_length=1, description="The agent image (registry/name:tag or @sha256 digest).")


class LocalRuntime(_Strict):
    """How local mode runs this framework's agent."""

    python: str | None = Field(
        default=None, description="Interpreter that runs this framework's agent locally; default: the CLI's own."
    )


class FrameworkSpec(_Strict):
    """A framework: its version, the formats it loads, the accelerators it uses and its agent images."""

    description: str = Field(default="", description="Free text shown in listings.")
    version: str = Field(min_length=1, description="The framework version this resource describes (PEP 440).")
    predictor: str = Field(min_length=1, description="Name of the predictor entry point that runs it.")
    formats: list[ArtifactFormat] = Field(min_length=1, description="Supported artifact formats, preferred first.")
    accelerators: list[Accelerator] = Field(
        default_factory=lambda: list[Accelerator](["cpu"]), description="Accelerators this framework can run on."
    )
    containers: list[Container] = Field(
        default_factory=list, description="Agent images per (arch, accelerator); the operator's Jobs run these."
    )
    device_resources: dict[Accelerator, str] = Field(
        default_factory=dict, description="Kubernetes extended resource per accelerator, e.g. gpu: nvidia.com/gpu."
    )
    runtime: LocalRuntime = Field(default_factory=LocalRuntime, description="How local mode runs the agent.")


_NPZ_FIELDS = frozenset({"uri", "sha256", "images_key", "labels_key"})
_SYNTHETIC_FIELDS = frozenset({"shape", "dtype", "distribution", "low", "high", "mean", "std", "classes", "seed"})
_FOLDER_FIELDS = frozenset({"uri", "sha256", "root", "labels", "labels_file"})
_COCO_FIELDS = frozenset({"uri", "sha256", "root", "images_dir", "annotations_file"})
_FIELDS_OF_KIND: dict[str, frozenset[str]] = {
    "npz": _NPZ_FIELDS,
    "synthetic": _SYNTHETIC_FIELDS,
    "folder": _FOLDER_FIELDS,
    "coco": _COCO_FIELDS,
}
_ALL_SOURCE_FIELDS = frozenset().union(*_FIELDS_OF_KIND.values())
DatasetSourceKind = Literal["npz", "synthetic", "folder", "coco"]
FolderLabels = Literal["subfolders", "file", "none"]
ARCHIVE_URI_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def is_archive_uri(uri: str) -> bool:
    """Whether a folder/coco source's ``uri`` names an archive to fetch and extract (rather than a folder)."""
    path = uri.split("?", 1)[0].lower()
    return path.endswith(ARCHIVE_URI_SUFFIXES) or uri.startswith(("http://", "https://", "s3://"))


class DatasetSource(_Strict):
    """Where the samples come from: image files (``folder``, ``coco``), an ``npz`` file, or ``synthetic`` seeded
    random arrays (nothing fetched).

    One flat object with a ``kind`` rather than a tagged union, so that it stays a structural CRD schema (as the
    processing steps do); each kind accepts only its own fields.
    """

    kind: DatasetSourceKind = Field(
        description="folder: image files (class sub-folders or a labels file); coco: images plus a COCO instances "
        "JSON; npz: arrays 'images' (N, ...) and 'labels' (N,) in a file; synthetic: seeded random samples."
    )
    uri: str | None = Field(
        default=None,
        min_length=1,
        description="npz: the file, as for any artifact. folder/coco: a folder (relative to the manifest's folder, "
        "or file:///abs), or an archive (.tar, .tar.gz, .tgz, .zip; file, http(s):// or s3://) extracted into the "
        "cache.",
    )
    sha256: Sha256 | None = Field(
        default=None, description="npz, and folder/coco archives: sha256 of the file (a plain folder has none)."
    )
    root: str | None = Field(
        default=None,
        min_length=1,
        description="folder/coco: the folder inside `uri` (or the extracted archive) that holds the dataset; "
        "default: `uri` itself.",
    )
    labels: FolderLabels = Field(
        default="subfolders",
        description="folder: subfolders: one sub-folder per class (ImageNet train layout), classes in sorted "
        "order unless spec.labels names them; file: `labels_file` lists `relative/path label` lines (ImageNet "
        "val layout; label: a class index, or a class name from spec.labels); none: unlabelled images.",
    )
    labels_file: str | None = Field(
        default=None, min_length=1, description="folder, labels: file: the labels file, relative to the root."
    )
    images_dir: str = Field(
        default="images", min_length=1, description="coco: the folder of images, relative to the root."
    )
    annotations_file: str = Field(
        default="annotations.json",
        min_length=1,
        description="coco: the COCO instances JSON (images, categories, annotations), relative to the root.",
    )
    images_key: str = Field(default="images", description="npz: the array of samples.")
    labels_key: str = Field(default="labels", description="npz: the array of integer labels.")
    shape: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, min_length=1, description="synthetic: shape of one sample, e.g. [3, 224, 224]."
    )
    dtype: TensorDtype | None = Field(default=None, description="synthetic: element type of the samples.")
    distribution: Literal["normal", "uniform"] = Field(
        default="uniform",
        description="synthetic: normal(mean, std) (floats only) or uniform in [low, high) (integers: low..high-1).",
    )
    low: float = Field(default=0.0, description="synthetic, uniform: smallest value.")
    high: float = Field(default=1.0, description="synthetic, uniform: values stay below this.")
    mean: float = Field(default=0.0, description="synthetic, normal: mean.")
    std: float = Field(default=1.0, gt=0, description="synthetic, normal: standard deviation.")
    classes: int | None = Field(default=None, ge=1, description="synthetic: labels are uniform in 0..classes-1.")
    seed: int = Field(default=0, ge=0, le=_MAX_SEED, description="synthetic: seed of samples and labels.")

    @field_validator("root", "labels_file", "images_dir", "annotations_file")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        return None if value is None else _relative_path(value, what="the path")

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> DatasetSource:
        own = _FIELDS_OF_KIND[self.kind]
        stray = sorted((self.model_fields_set & _ALL_SOURCE_FIELDS) - own)
        if stray:
            raise ValueError(f"{', '.join(stray)}: not a field of kind '{self.kind}' (its fields: {sorted(own)})")
        if self.kind == "npz":
            missing = [name for name in ("uri", "sha256") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"{', '.join(missing)}: required for kind 'npz'")
            return self
        if self.kind in ("folder", "coco"):
            if self.uri is None:
                raise ValueError(f"uri: required for kind '{self.kind}' (a folder, or an archive with its sha256)")
            if is_archive_uri(self.uri) and self.sha256 is None:
                raise ValueError(f"sha256: required for the archive '{self.uri}' (a plain folder needs none)")
            if self.kind == "folder" and (self.labels == "file") != (self.labels_file is not None):
                raise ValueError("labels_file: give it exactly when `labels: file` (a `relative/path label` list)")
            return self
        missing = [name for name in ("shape", "dtype", "classes") if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{', '.join(missing)}: required for kind 'synthetic'")
        integer = self.dtype not in ("float16", "float32", "float64")
        if integer and self.distribution == "normal":
            raise ValueError(f"distribution: 'normal' needs a float dtype, not {self.dtype} (use 'uniform')")
        if self.distribution == "uniform":
            if not self.low < self.high:
                raise ValueError(f"low, high: need low < high, got [{self.low}, {self.high})")
            if integer and not (self.low.is_integer() and self.high.is_integer()):
                raise ValueError(f"low, high: integer dtype {self.dtype} needs whole numbers")
        return self


class DatasetSpec(_Strict):
    """A dataset: where its samples and labels come from, and how many there are."""

    description: str = Field(default="", description="Free text shown in listings.")
    task: Task = Field(description="What the samples are for; a model of the same task evaluates on it.")
    source: DatasetSource
    size: int = Field(ge=1, description="Number of samples; checked against the data when loaded.")
    split: str = Field(default="test", description="Which split of the original data this is, and how it was made.")
    labels: FileRef | None = Field(default=None, description="Class names, one per line (index i names class i).")


class _Resource(_Strict):
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


def is_valid_name(name: str) -> bool:
    return re.fullmatch(_DNS_LABEL, name) is not None and len(name) <= 63
