"""The spec of a Dataset: where its samples come from (image folders, COCO, npz files or seeded synthetic arrays).

The source is one flat object whose ``kind`` decides which fields it may carry; the rules for each kind are checked
here so that the dataset readers (``mlmodelscope.core.datasets``) can trust what they are given.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from mlmodelscope.core.manifests.fields import MAX_SEED, FileRef, Sha256, StrictModel, Task, TensorDtype, relative_path

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


class DatasetSource(StrictModel):
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
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="synthetic: seed of samples and labels.")

    @field_validator("root", "labels_file", "images_dir", "annotations_file")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        return None if value is None else relative_path(value, what="the path")

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


class DatasetSpec(StrictModel):
    """A dataset: where its samples and labels come from, and how many there are."""

    description: str = Field(default="", description="Free text shown in listings.")
    task: Task = Field(description="What the samples are for; a model of the same task evaluates on it.")
    source: DatasetSource
    size: int = Field(ge=1, description="Number of samples; checked against the data when loaded.")
    split: str = Field(default="test", description="Which split of the original data this is, and how it was made.")
    labels: FileRef | None = Field(default=None, description="Class names, one per line (index i names class i).")
