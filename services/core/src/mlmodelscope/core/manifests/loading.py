"""Reading resource documents from YAML files, with errors a person can act on.

Every problem is reported as a ``ManifestError`` naming the file (and document index for multi-document files),
the field path in dotted form (``spec.inputs[0].shape``), what was expected and what was found. All problems of a
document are reported together, so a user fixes a file in one pass instead of one error per run.

``read_documents`` is the one YAML reader of the product (manifests, Evaluation files for ``mlmodelscope validate``).
It refuses duplicate keys: YAML parsers silently keep the last one, so a second ``uri:`` or ``sha256:`` would
quietly change what is evaluated.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from mlmodelscope.core.errors import ManifestError
from mlmodelscope.core.manifests.fields import API_VERSION
from mlmodelscope.core.manifests.resources import RESOURCE_KINDS, Resource

_MAX_VALUE_CHARS = 60
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "tuple", "none"})
_MERGE_TAG = "tag:yaml.org,2002:merge"

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class LoadedResource:
    """A validated resource and where it came from: a manifest file (``path``), or a run spec that carried it
    (``path`` None; ``origin``, ``base_dir`` and ``sha256`` are then the run spec's)."""

    resource: Resource
    path: Path | None
    document_index: int = 0
    origin: str = ""
    base_dir: Path | None = None
    sha256: str = ""

    @property
    def where(self) -> str:
        """For messages and the result's record: the manifest file, else where the run spec says it came from."""
        return str(self.path) if self.path is not None else self.origin or "the run spec"

    @property
    def folder(self) -> Path | None:
        """What relative artifact URIs resolve against: the manifest's folder, else the run spec's base_dir."""
        return self.path.parent if self.path is not None else self.base_dir


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


def document_kind(data: Any, *, source: str, kinds: Mapping[str, type[M]]) -> type[M]:
    """The model class of one parsed document, from its ``apiVersion`` and ``kind`` (one of ``kinds``)."""
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
    model_type = kinds.get(str(kind))
    if model_type is None:
        raise ManifestError(
            f"{source}: kind: expected one of {', '.join(kinds)}; found {_describe(kind)}.",
        )
    return model_type


def validate_document(
    model_type: type[M], data: Any, *, source: str, hint: str = "See docs/manifests.md for the fields of each kind."
) -> M:
    """``data`` as a ``model_type``, or one ManifestError listing every problem (path, expected, found)."""
    try:
        return model_type.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(_explain(err) for err in e.errors())
        kind = data.get("kind") if isinstance(data, dict) else model_type.__name__
        raise ManifestError(
            f"{source}: invalid {kind}: {problems}.",
            hint=hint,
        ) from e


def parse_document(data: Any, *, source: str) -> Resource:
    """Validate one already-parsed YAML document into a resource."""
    resource_type = document_kind(data, source=source, kinds=RESOURCE_KINDS)
    resource: Resource = validate_document(resource_type, data, source=source)
    return resource


class DuplicateKeyError(ConstructorError):
    """A mapping names the same key twice (YAML would silently keep the last one)."""

    def __init__(self, key: Hashable, first: Node, second: Node) -> None:
        super().__init__(None, None, f"duplicate key {_describe(key)}", second.start_mark)
        self.key = key
        self.first_line = first.start_mark.line + 1
        self.second_line = second.start_mark.line + 1


if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:  # libyaml's parser where PyYAML was built with it: several times faster, the same documents and marks
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):
    """PyYAML's safe loader (libyaml's parser where PyYAML has it), refusing a key that a mapping already holds
    (merge keys ``<<`` may be overridden)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Hashable, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise DuplicateKeyError(key, seen[key], key_node)
            if isinstance(key, Hashable):
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def read_documents(path: Path) -> Iterator[tuple[int, Any]]:
    """The YAML documents of one file, skipping empty ones."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the file: {e.strerror}.") from e
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text (byte {e.start}).", hint="Save the file as UTF-8.") from e
    try:
        documents = list(yaml.load_all(text, Loader=_UniqueKeyLoader))
    except DuplicateKeyError as e:
        raise ManifestError(
            f"{path}: duplicate key {_describe(e.key)} at line {e.second_line} (first at line {e.first_line}).",
            hint="Keep one of the two: YAML would silently use the last and ignore the first.",
        ) from e
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
