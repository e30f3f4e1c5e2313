"""A Model's artifacts: the pinned files (with their sidecars) or built-in zoo models that hold its weights.

Where the weights come from is its own concern: the artifact store and the zoo read these specs, and the rules that
tie ``uri``, ``sha256``, ``archive``, ``entrypoint`` and ``sidecars`` together are checked here, once.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlmodelscope.core.manifests.fields import MAX_SEED, ResourceName, Sha256, StrictModel, relative_path

ZOO_SCHEME = "zoo:"
_ZOO_URI = re.compile(r"zoo:(?P<name>[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)(?:\?seed=(?P<seed>0|[1-9][0-9]{0,9}))?")
ArtifactFormat = Literal["onnx", "torchscript", "torch_export", "savedmodel", "keras", "mxnet", "tflite"]


class ZooRef(StrictModel):
    """A model of the built-in zoo named by an artifact URI ``zoo:<name>`` or ``zoo:<name>?seed=<N>``."""

    name: ResourceName
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="Seed of the random weights.")


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
    if seed > MAX_SEED:
        raise ValueError(f"'{uri}': the seed must be at most {MAX_SEED}")
    return ZooRef(name=match["name"], seed=seed)


class Sidecar(StrictModel):
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
        return None if value is None else relative_path(value, what="the sidecar name")

    @field_validator("uri")
    @classmethod
    def _not_zoo(cls, value: str) -> str:
        if value.startswith(ZOO_SCHEME):
            raise ValueError(f"'{value}': a sidecar is a fetched file; zoo: URIs name whole models")
        return value


class Artifact(StrictModel):
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
        return None if value is None else relative_path(value, what="the entrypoint")

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
