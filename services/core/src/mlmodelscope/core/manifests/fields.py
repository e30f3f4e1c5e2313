"""The vocabulary every manifest kind shares: API group, names, checksums, the closed value sets and the strict base.

Model, Framework and Dataset specs (and the operator's Evaluation) are built from these pieces, so a name, a sha256 or
a task means the same thing in every document; the kinds themselves live in their own modules
(``model_spec``, ``framework_spec``, ``dataset_spec``) and ``resources`` wraps them as Kubernetes objects.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

API_GROUP = "mlmodelscope.org"
API_VERSION = f"{API_GROUP}/v1alpha1"

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_SHA256 = r"^[0-9a-f]{64}$"
MAX_SEED = 2**32 - 1

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


class StrictModel(BaseModel):
    """The base of every manifest part: an unknown field is an error and a parsed document never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectMeta(StrictModel):
    """The part of Kubernetes' ObjectMeta that a manifest may carry."""

    name: ResourceName
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class FileRef(StrictModel):
    """A file fetched through the artifact store and pinned by its sha256."""

    uri: str = Field(
        min_length=1,
        description="file:///abs, a path relative to the manifest's folder, http(s)://host/path or s3://bucket/key.",
    )
    sha256: Sha256


def relative_path(name: str, *, what: str) -> str:
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


def is_valid_name(name: str) -> bool:
    """Whether ``name`` can name a resource (a DNS-1123 label)."""
    return re.fullmatch(_DNS_LABEL, name) is not None and len(name) <= 63
