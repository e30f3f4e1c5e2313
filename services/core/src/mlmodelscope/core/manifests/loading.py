"""Reading resource documents from YAML files, with errors a person can act on.

Every problem is reported as a ``ManifestError`` naming the file (and document index for multi-document files),
the field path in dotted form (``spec.inputs[0].shape``), what was expected and what was found. All problems of a
document are reported together, so a user fixes a file in one pass instead of one error per run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mlmodelscope.core.errors import ManifestError
from mlmodelscope.core.manifests.resources import API_VERSION, RESOURCE_KINDS, Resource

_MAX_VALUE_CHARS = 60
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "tuple", "none"})


@dataclass(frozen=True)
class LoadedResource:
    """A validated resource and where it came from."""

    resource: Resource
    path: Path
    document_index: int


def format_location(loc: Sequence[int | str]) -> str:
    """('spec', 'inputs', 0, 'shape') -> 'spec.inputs[0].shape'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(document)"


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _explain(error: Any) -> str:
    """One line per pydantic error: path, what is expected, what was found."""
    # Union members add their type to the location ('float', 'list[float]'); keep only the document path.
    loc = [p for p in error["loc"] if not (isinstance(p, str) and (p in _TYPE_TAGS or "[" in p))]
    where = format_location(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown field (remove it or check its spelling)"
    if kind == "missing":
        return f"{where}: required field is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}; found {_describe(error.get('input'))}"


def parse_document(data: Any, *, source: str) -> Resource:
    """Validate one already-parsed YAML document into a resource."""
    if not isinstance(data, dict):
        raise ManifestError(
            f"{source}: expected a mapping with apiVersion, kind, metadata and spec; found {type(data).__name__}.",
            hint="Each YAML document must be one resource.",
        )
    kind = data.get("kind")
    api_version = data.get("apiVersion")
    if api_version != API_VERSION:
        raise ManifestError(
            f"{source}: apiVersion: expected '{API_VERSION}'; found {_describe(api_version)}.",
            hint="Set apiVersion: mlmodelscope.org/v1alpha1.",
        )
    resource_type = RESOURCE_KINDS.get(str(kind))
    if resource_type is None:
        raise ManifestError(
            f"{source}: kind: expected one of {', '.join(RESOURCE_KINDS)}; found {_describe(kind)}.",
        )
    try:
        return resource_type.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(_explain(err) for err in e.errors())
        raise ManifestError(
            f"{source}: invalid {kind}: {problems}.",
            hint="See docs/manifests.md for the fields of each kind.",
        ) from e


def read_documents(path: Path) -> Iterator[tuple[int, Any]]:
    """The YAML documents of one file, skipping empty ones."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the file: {e.strerror}.") from e
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ManifestError(f"{path}: malformed YAML{where}: {problem}.", hint="Fix the YAML syntax.") from e
    for index, document in enumerate(documents):
        if document is not None:
            yield index, document


def load_file(path: Path) -> list[LoadedResource]:
    """All resources in one YAML file."""
    loaded = []
    for index, document in read_documents(path):
        source = str(path) if index == 0 else f"{path} (document {index + 1})"
        loaded.append(LoadedResource(parse_document(document, source=source), path, index))
    return loaded


def iter_manifest_files(root: Path) -> Iterator[Path]:
    """YAML files under the asset folders (models/, frameworks/, datasets/) of one assets root, sorted."""
    for sub in ("models", "frameworks", "datasets"):
        folder = root / sub
        if folder.is_dir():
            yield from sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
